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
from ablate.tricks.registry import Lazy, Trick


def _optimizers():  # imported when a trial builds one of its entries
    from ablate.tricks.optim import optimizers

    return optimizers


def _regularisers():  # imported when a trial builds one of its entries
    from ablate.tricks.optim import regularisers

    return regularisers


OPTIMIZERS: dict[str, Trick] = {
    "sgd": Trick(Lazy(lambda: _optimizers().sgd), SgdParams, "Stochastic gradient descent with (Nesterov) momentum."),
    "adam": Trick(Lazy(lambda: _optimizers().adam), AdamParams, "Adam (Kingma & Ba) with L2 weight decay."),
    "adamw": Trick(Lazy(lambda: _optimizers().adamw), AdamWParams, "AdamW: Adam with decoupled weight decay."),
}

# Regularisers and loop options: study sections (train.ema, ...), one entry each.
REGULARISERS: dict[str, Trick] = {
    "ema": Trick(Lazy(lambda: _regularisers().ema), EmaParams, "Exponential moving average of the weights, evaluated instead of the raw weights."),
    "swa": Trick(Lazy(lambda: _regularisers().swa), SwaParams, "Stochastic weight averaging over the last epochs (Izmailov et al.)."),
    "clip_grad": Trick(Lazy(lambda: _regularisers().clip_grad), ClipParams, "Clip the global gradient norm before each optimiser step."),
    "amp": Trick(Lazy(lambda: _regularisers().amp), AmpParams, "Automatic mixed precision (fp16 with loss scaling, or bf16) on CUDA."),
}
