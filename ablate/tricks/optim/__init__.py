"""Optimisers and the training-loop regularisers: EMA, SWA, clipping, AMP.

Everything wraps torch: ``torch.optim`` for the optimisers (``optimizers``),
``torch.optim.swa_utils.AveragedModel`` for EMA and SWA, ``clip_grad_norm_`` for
clipping, ``torch.autocast`` + ``GradScaler`` for AMP (``regularisers``).  What
ablate adds is the parameter grouping (no weight decay on norm and bias
parameters, as torchvision's classification references allow) and a clear notice
when AMP is asked for on a CPU.
"""

from ablate.tricks.optim.params import (
    AdamParams,
    AdamWParams,
    AmpParams,
    ClipParams,
    EmaParams,
    SgdParams,
    SwaParams,
)
from ablate.tricks.registry import Trick

OPT = "ablate.tricks.optim.optimizers:"
REG = "ablate.tricks.optim.regularisers:"

OPTIMIZERS: dict[str, Trick] = {
    "sgd": Trick(OPT + "sgd", SgdParams, "Stochastic gradient descent with (Nesterov) momentum."),
    "adam": Trick(OPT + "adam", AdamParams, "Adam (Kingma & Ba) with L2 weight decay."),
    "adamw": Trick(OPT + "adamw", AdamWParams, "AdamW: Adam with decoupled weight decay."),
}

# Regularisers and loop options: study sections (train.ema, ...), one entry each.
REGULARISERS: dict[str, Trick] = {
    "ema": Trick(REG + "ema", EmaParams, "Exponential moving average of the weights, evaluated instead of the raw weights."),
    "swa": Trick(REG + "swa", SwaParams, "Stochastic weight averaging over the last epochs (Izmailov et al.)."),
    "clip_grad": Trick(REG + "clip_grad", ClipParams, "Clip the global gradient norm before each optimiser step."),
    "amp": Trick(REG + "amp", AmpParams, "Automatic mixed precision (fp16 with loss scaling, or bf16) on CUDA."),
}
