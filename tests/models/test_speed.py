"""How long one CPU training step of the default detector takes (printed, never asserted)."""

import statistics
import time

import torch

from ablate.models import build_model
from ablate.study.schema import TrialConfig


def test_print_train_step_time_of_tiny_retinanet(capsys, make_batch):
    config = TrialConfig()  # the defaults: retinanet, tiny backbone, fpn, 64 channels, 192 px
    torch.manual_seed(0)
    model = build_model(config, num_classes=3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = make_batch(sizes=((192, 192),) * 8)

    def step():
        start = time.perf_counter()
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        return time.perf_counter() - start

    step()  # warm-up: oneDNN picks its kernels on the first call
    seconds = statistics.median(step() for _ in range(3))
    with capsys.disabled():
        print(f"\n[timing] tiny RetinaNet train step, batch 8 x 192 px, {torch.get_num_threads()} thread(s): "
              f"{seconds * 1000:.0f} ms")
