"""Datasets and loaders: COCO json, Pascal VOC (XML folders or VOCdevkit splits), Ultralytics YOLO and
the built-in synthetic ``shapes`` set, each read into the same validated ``Annotations``.

``build.build_data(config, seed=..., device=...)`` is the entry point; the loaders below it
(``coco.load_coco``, ``voc.load_voc``, ``voc.load_voc_sets``, ``yolo.load_yolo``, ``shapes.ensure_shapes``)
take keyword arguments only.  ``splits.py`` reads both splits without torch (the driver of ``ablate run``
checks a study's data through it and ``check.py``, so this package imports nothing itself); ``subset.py``
cuts a train split to ``data.train_subset``; ``summary.py`` says what a dataset holds (``ablate data``).
"""
