"""Mem on CPU: the tensors a training step holds, the same whatever the process ran before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from ablate.engine.memory import TensorPeak
from ablate.engine.trial import run_trial

ROOT = Path(__file__).resolve().parents[2]


def test_a_step_counts_parameters_gradients_optimiser_state_saved_activations_and_the_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters())
    peak = TensorPeak(model, optimizer)
    x = torch.randn(4, 8)
    for _ in range(2):  # the second step has Adam's state
        with peak.step([x]):
            model(x).sum().backward()
        optimizer.step()
    n_params = sum(p.numel() for p in model.parameters())  # 8*16+16+16+1 = 161
    # saved for backward: the input x (Linear 1), its output after ReLU (ReLU and Linear 2); the weights are
    # parameters and counted once; the input batch x is counted as the batch
    saved = x.nbytes + 4 * 16 * 4
    adam = 2 * n_params * 4 + 4 * 4  # exp_avg and exp_avg_sq, and a scalar step per parameter tensor
    assert peak.peak_bytes == n_params * 4 * 2 + adam + saved + x.nbytes


def _mem(config_json: str, tmp: str) -> list[float]:
    from ablate.study.config import TrialConfig

    result = run_trial(TrialConfig.model_validate_json(config_json), seed=0, out_dir=tmp, log=lambda m: None)
    return [row["peak_mem_mb"] for row in result.history]


def test_the_same_trial_reads_the_same_mem_first_in_a_process_or_after_another(tiny, tmp_path):
    config = tiny(train={"epochs": 1})
    other = tiny(train={"epochs": 1}, model={"neck": "bifpn"}, loss={"box": "diou"})
    run_trial(other, seed=0, out_dir=tmp_path / "other", log=lambda m: None)  # warms this process's allocator
    after = [row["peak_mem_mb"] for row in run_trial(config, seed=0, out_dir=tmp_path / "after",
                                                     log=lambda m: None).history]
    code = ("import json, sys, torch; torch.set_num_threads(1); from tests.engine.test_memory import _mem; "
            "print(json.dumps(_mem(sys.argv[1], sys.argv[2])))")
    fresh = subprocess.run([sys.executable, "-c", code, config.model_dump_json(), str(tmp_path / "fresh")],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    assert json.loads(fresh) == after and after[0] > 1.0
