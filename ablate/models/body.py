"""A backbone body with the study's options: ``model.norm``, ``activation``, ``plugins``, ``context``.

``with_options`` runs after the body's weights are loaded: norm and activation layers are
swapped in place (loaded affine and statistics carried over), block plugins change residual
blocks in place, and output plugins and the context block wrap the body.  With the defaults
the body comes back unchanged, so its parameter names stay those of torchvision.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ablate.tricks.blocks import ACTIVATIONS, CONTEXT, NORMS, PLUGINS
from ablate.tricks.blocks.surgery import replace_modules
from ablate.tricks.registry import build_selected


class PluggedBody(nn.Module):
    """``body`` then, on each of its levels, the plugins' modules in list order; ``context`` on C5 first.

    Plugins run on C3-C5 only; a ``c2`` output (a P2 pyramid) passes through as the body gave it.
    """

    def __init__(self, body: nn.Module, after: dict[str, list[nn.Module]], context: nn.Module):
        super().__init__()
        self.body, self.context = body, context
        self.after = nn.ModuleDict({level: nn.Sequential(*mods) for level, mods in after.items() if mods})

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        levels = OrderedDict(self.body(x))  # [c2,] c3, c4, c5
        levels["c5"] = self.context(levels["c5"])
        for level, blocks in self.after.items():
            levels[level] = blocks(levels[level])
        return levels


def with_options(body: nn.Module, channels: list[int], m) -> nn.Module:
    """Apply ``m.norm``, ``m.activation``, ``m.plugins`` and ``m.context`` (the model section) to ``body``.

    ``channels``: of C3, C4, C5 (a body that also returns C2 passes its last three).
    """
    if m.norm.name != "bn":
        replace_modules(body, nn.BatchNorm2d, build_selected(NORMS, m.norm, "norm"))
    if m.activation.name != "relu":
        replace_modules(body, nn.ReLU, lambda _: build_selected(ACTIVATIONS, m.activation, "activation"))
    after: dict[str, list[nn.Module]] = {"c3": [], "c4": [], "c5": []}
    for plugin in m.plugins:
        for level, module in build_selected(PLUGINS, plugin, "plugin", body=body, channels=channels).items():
            after[level].append(module)
    context = build_selected(CONTEXT, m.context, "context", channels=channels[-1])
    if m.context.name == "none" and not any(after.values()):
        return body
    return PluggedBody(body, after, context)
