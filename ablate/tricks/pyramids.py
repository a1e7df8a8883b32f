"""Which pyramid levels the dense detectors (RetinaNet, FCOS, ATSS) predict on: ``model.pyramid``.

Level ``Pk`` has stride ``2^k``.  The body gives ``C2`` (stride 4) to ``C5`` (stride 32); the neck
fuses the body levels a pyramid names and adds the coarser ones with stride-2 convs
(``necks.common.ExtraLevels``).  ``p3_p7`` is RetinaNet's and FCOS's five levels; ``p2_p7`` adds a
P2 level at stride 4 from the body's C2 ("a P2 level for small objects", as the YOLO P2 models and
the small-object studies add); ``p2_p5`` is the YOLO "four heads for small objects" layout
(YOLOv5-P2, YOLOv8-p2: P2, P3, P4, P5; no P6/P7, so the largest objects fall on P5).

Everything that depends on the levels follows from ``Pyramid.strides``: anchor sizes (``anchor_scale x
stride``), FCOS's size ranges (``[4, 8]`` strides per level, the first from 0 and the last without
limit: with P2 that is P2 ``[0, 32]``, P3 ``[32, 64]``, ..., as FCOS's ``(-1, 64), (64, 128), ...``
shifted down one level) and ATSS's per-level candidates.  ``build()`` returns a ``Pyramid``; no
torch here.  A neck must fuse every body level a pyramid names: ``necks.ANY_LEVELS`` lists those
that do, and the study refuses another one with a message naming ``model.pyramid`` and ``model.neck``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.tricks.registry import NoParams, Trick

BODY_LEVELS = (2, 3, 4, 5)  # C2..C5: what a body can give, strides 4..32


@dataclass(frozen=True)
class Pyramid:
    """Levels ``P{first}`` .. ``P{last}``: ``first`` in 2..3 (a body level), ``last`` >= 5."""

    first: int
    last: int

    def __post_init__(self):
        if self.first not in BODY_LEVELS[:-1] or self.last < BODY_LEVELS[-1]:
            raise ValueError(f"a pyramid runs from P2 or P3 to P5 or beyond, got P{self.first}-P{self.last}")

    @property
    def body_levels(self) -> tuple[str, ...]:
        """The body outputs the neck fuses, fine -> coarse: ``("c2", "c3", "c4", "c5")`` or from ``c3``."""
        return tuple(f"c{k}" for k in range(self.first, BODY_LEVELS[-1] + 1))

    @property
    def names(self) -> tuple[str, ...]:
        """The levels the heads see: ``("p2", ..., "p7")``."""
        return tuple(f"p{k}" for k in range(self.first, self.last + 1))

    @property
    def strides(self) -> tuple[int, ...]:
        """Each level's stride in pixels: ``(4, 8, 16, 32, 64, 128)`` for P2-P7."""
        return tuple(2**k for k in range(self.first, self.last + 1))

    @property
    def extra_levels(self) -> int:
        """Levels the neck adds above C5 (``necks.common.ExtraLevels``): 2 for P6, P7."""
        return self.last - BODY_LEVELS[-1]


def _levels(first: int, last: int):
    return lambda: Pyramid(first, last)


PYRAMIDS: dict[str, Trick] = {
    "p3_p7": Trick(_levels(3, 7), NoParams, "P3-P7, strides 8-128 from C3-C5 (RetinaNet, FCOS, ATSS as published)"),
    "p2_p7": Trick(_levels(2, 7), NoParams, "a P2 level for small objects: P2-P7, strides 4-128, P2 from the "
                   "body's C2 (stride-4 maps: about 4x the head cost of P3)"),
    "p2_p5": Trick(_levels(2, 5), NoParams, "four heads for small objects, as YOLOv5-P2/YOLOv8-p2: P2-P5, "
                   "strides 4-32, no P6/P7 (the largest objects fall on P5)"),
}
DEFAULT_PYRAMID = "p3_p7"
