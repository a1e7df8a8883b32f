"""ablate: ablation studies for object-detection training tricks."""
