"""ablate: ablation studies for object-detection training tricks."""

from ablate import ray_env

ray_env.apply()  # before anything of ablate's imports Ray: some of its switches are read at Ray's import
