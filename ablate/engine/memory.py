"""Peak training memory of a trial, the same whatever its process ran before.

On CUDA it is the caching allocator's ``max_memory_allocated`` (reset every epoch).  On CPU
there is no such counter, and the process's RSS depends on what the allocator kept from
earlier trials of a reused Ray worker (the first trial of a fresh worker read 132 MiB, the
same model after it 37-52 MiB).  So on CPU the tensors are counted instead, as CUDA's
counter does: per training step, the distinct storages of the parameters, their gradients
and the optimiser's state, plus every tensor autograd saves for the backward pass
(``torch.autograd.graph.saved_tensors_hooks``), plus the batch.  The step's total is an upper
bound of what it holds at once (activations and gradients are counted together), in bytes,
identical for the same configuration and seed on any run.  What autograd saves depends on the
batch's image sizes, so it is counted once per distinct set of sizes (a hook on every saved
tensor of every step cost 4% of the step time); the loss's few matched-anchor tensors, which
vary with the targets, are taken from the first batch of those sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

MIB = 2**20


class TensorPeak:
    """Counts a CPU training step's tensor bytes; ``peak_mb`` is the largest step so far."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        self.peak_bytes = 0
        self._seen: set[int] = set()
        self._saved = 0
        self._saved_by_shape: dict[tuple, int] = {}
        self._held_key: tuple[int, int] | None = None  # (optimiser states, gradients) when _held_bytes was counted
        self._held_bytes = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._seen:  # a weight saved for backward is counted once, as a parameter
            self._seen.add(storage.data_ptr())
            self._saved += storage.nbytes()
        return tensor

    @contextlib.contextmanager
    def step(self, images: list[torch.Tensor]) -> Iterator[None]:
        """Around one forward and backward: counts what autograd saves, then the step's total."""
        shapes = tuple(tuple(image.shape) for image in images)
        if shapes in self._saved_by_shape:
            yield
            self._saved = self._saved_by_shape[shapes]
        else:
            self._seen = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
            self._saved = 0
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
                yield
            self._saved_by_shape[shapes] = self._saved
        self.peak_bytes = max(self.peak_bytes, self._held() + self._saved + _bytes(images))

    def _held(self) -> int:
        """Parameters, gradients and optimiser state; recounted only while the state is still growing."""
        key = (len(self.optimizer.state), sum(p.grad is not None for p in self.model.parameters()))
        if key != self._held_key:
            held = _bytes(self.model.parameters()) + _bytes(p.grad for p in self.model.parameters())
            held += _bytes(v for state in self.optimizer.state.values() for v in state.values())
            self._held_key, self._held_bytes = key, held
        return self._held_bytes

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MIB


def _bytes(tensors) -> int:
    """Bytes of the distinct storages among ``tensors`` (non-tensors and None skipped)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
