"""Ray's switches (ablate/ray_env.py): set by importing ablate, and right even when Ray was imported first."""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_ablate_sets_the_switches_and_keeps_a_users_value():
    code = ("import os; os.environ['RAY_CHDIR_TO_TRIAL_DIR'] = '1'; import ablate; "
            "print(os.environ['RAY_ENABLE_UV_RUN_RUNTIME_ENV'], os.environ['TUNE_DISABLE_AUTO_CALLBACK_LOGGERS'], "
            "os.environ['RAY_CHDIR_TO_TRIAL_DIR'])")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_UV_RUN_RUNTIME_ENV",
                                                            "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "1", "1"]


def test_ray_imported_before_ablate_still_has_its_uv_hook_off_at_init():
    # Ray keeps the switch as a module constant read at its import; if an upgrade moves it, this fails loudly
    code = ("import ray\nfrom ray._private import ray_constants, worker\n"
            "assert ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV is True\n"
            "assert 'ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV' in open(worker.__file__).read()\n"
            "from ablate import ray_env\nray_env.uv_hook_off_in_ray()\n"
            "print(ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV)")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_UV_RUN_RUNTIME_ENV"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
