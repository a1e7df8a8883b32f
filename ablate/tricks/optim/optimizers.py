"""Optimisers (``torch.optim``) over parameter groups: no weight decay on norm and bias
parameters when asked, as torchvision's classification references allow."""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, norm_bias_decay: bool) -> list[dict]:
    """One group with weight decay and, unless ``norm_bias_decay``, one without it."""
    if norm_bias_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    exempt: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS) or name == "bias":
                exempt.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in exempt], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]


def sgd(*, lr, weight_decay, norm_bias_decay, momentum, nesterov, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.SGD(groups, lr=lr_effective, momentum=momentum, nesterov=nesterov)


def adam(*, lr, weight_decay, norm_bias_decay, betas, eps, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.Adam(groups, lr=lr_effective, betas=betas, eps=eps)


def adamw(*, lr, weight_decay, norm_bias_decay, betas, eps, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.AdamW(groups, lr=lr_effective, betas=betas, eps=eps)
