"""Pascal VOC XML -> the same validated COCO form as ``coco.py``, so evaluation is identical.

Two layouts: a folder of XML files (``load_voc``), or a VOCdevkit year folder with its split
lists ``ImageSets/Main/<split>.txt`` (``load_voc_sets``; several year folders for VOC07+12).
One XML file per image (``filename``, ``size/width``, ``size/height``, ``object``s with
``name``, ``bndbox/{xmin,ymin,xmax,ymax}`` and an optional ``difficult``).  VOC boxes
are 1-based inclusive pixel indices; like detectron2 we subtract 1 from ``xmin`` and
``ymin`` so a box covers ``[xmin - 1, xmax)`` in 0-based continuous coordinates.
``difficult`` objects become ``iscrowd: 1``: ignored by COCO evaluation, never trained on,
as VOC's own evaluation ignores them.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.data.coco import Annotations, from_coco_dict
from ablate.errors import DataError, did_you_mean

_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based)
    difficult: bool


@dataclass(frozen=True)
class VocImage:
    xml: Path
    filename: str
    width: int
    height: int
    objects: list[VocObject]


def load_voc(ann_dir: Path, image_dir: Path, *, classes: list[str] | None = None) -> Annotations:
    """Load every ``*.xml`` in ``ann_dir`` (sorted by name; image ids 1..N in that order).

    Args:
        classes: names in label order; an object of another class is an error.
            None: the sorted set of names found in the files.
    """
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    if not ann_dir.is_dir():
        raise DataError(f"VOC annotation folder not found: {ann_dir}")
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise DataError(f"{ann_dir}: no .xml files")
    parsed = [parse_xml(f) for f in files]
    _check_files(parsed, image_dir, ann_dir)
    return _annotations(parsed, [p.filename for p in parsed], image_dir, classes, source=ann_dir)


def load_voc_sets(roots: list[Path], split: str, *, classes: list[str] | None = None) -> Annotations:
    """Load split ``split`` of VOCdevkit year folders, as torchvision's ``VOCDetection`` and mmdetection read them.

    Each root holds ``Annotations/<id>.xml``, ``JPEGImages/`` and ``ImageSets/Main/<split>.txt`` (one image id
    per line); the images are taken in the split files' order, root after root (image ids 1..N).
    """
    parsed, names = [], []
    roots = [Path(r) for r in roots]
    image_dir = Path(os.path.commonpath([str(r / "JPEGImages") for r in roots]))
    for root in roots:
        if not (root / "Annotations").is_dir():
            raise DataError(f"{root}: not a VOC year folder: no Annotations/ in it (a VOCdevkit year folder "
                            "such as VOCdevkit/VOC2007 holds Annotations/, JPEGImages/ and ImageSets/Main/)")
        ids = read_split(root, split)
        images = [parse_xml(root / "Annotations" / f"{i}.xml") for i in ids]
        _check_files(images, root / "JPEGImages", root / "ImageSets" / "Main" / f"{split}.txt")
        parsed += images
        names += [os.path.relpath(root / "JPEGImages" / p.filename, image_dir) for p in images]
    source = roots[0] / "ImageSets" / "Main" / f"{split}.txt" if len(roots) == 1 else \
        f"{split} of {', '.join(map(str, roots))}"
    return _annotations(parsed, names, image_dir, classes, source=source)


def read_split(root: Path, split: str) -> list[str]:
    """The image ids ``ImageSets/Main/<split>.txt`` lists, each checked to have its ``Annotations/<id>.xml``."""
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem) if path.parent.is_dir() else []
        raise DataError(f"{path}: split file not found; " + (f"splits in {path.parent}: {', '.join(found)}" if found
                        else f"{path.parent} holds no split files (train.txt, val.txt, trainval.txt, test.txt)"))
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 1 and fields[1] not in ("1", "0", "-1"):
            raise DataError(f"{path}: line {n}: expected one image id per line, got {line.strip()!r}")
        if len(fields) > 1 and fields[1] == "-1":  # a class file (<class>_<split>.txt): -1 is "not in it"
            continue
        if not (root / "Annotations" / f"{fields[0]}.xml").is_file():
            raise DataError(f"{path}: line {n}: image id '{fields[0]}' has no annotation file "
                            f"{root / 'Annotations' / (fields[0] + '.xml')}; each id must name an XML file there")
        ids.append(fields[0])
    if not ids:
        raise DataError(f"{path}: empty split: it lists no image id (one id per line, e.g. 000005)")
    return ids


def _annotations(parsed: list[VocImage], names: list[str], image_dir: Path, classes: list[str] | None,
                 *, source: Path | str) -> Annotations:
    if classes is None:
        classes = sorted({o.name for p in parsed for o in p.objects})
        if not classes:
            raise DataError(f"{source}: no objects in any XML file; give data.classes")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise DataError(f"classes: {dupes} listed more than once")
    _check_classes(parsed, classes)
    data = to_coco(parsed, classes)
    for image, name in zip(data["images"], names):
        image["file_name"] = name
    return from_coco_dict(data, image_dir, source=str(source))


def to_coco(parsed: list[VocImage], classes: list[str]) -> dict[str, Any]:
    """COCO dict: image ids 1..N, category ids 1..C in ``classes`` order, annotation ids 1..M."""
    cat_of = {name: k + 1 for k, name in enumerate(classes)}
    images, anns = [], []
    for iid, p in enumerate(parsed, start=1):
        images.append({"id": iid, "file_name": p.filename, "width": p.width, "height": p.height})
        for o in p.objects:
            xmin, ymin, xmax, ymax = o.box
            x, y = xmin - 1, ymin - 1
            w, h = xmax - x, ymax - y
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cat_of[o.name],
                         "bbox": [x, y, w, h], "area": max(w, 0) * max(h, 0), "iscrowd": int(o.difficult)})
    categories = [{"id": cat_of[name], "name": name} for name in classes]
    return {"images": images, "annotations": anns, "categories": categories}


def parse_xml(path: Path) -> VocImage:
    """One annotation file; a missing or malformed field is a ``DataError`` naming the file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: unparsable XML: {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    filename = _text(root, "filename", path)
    width, height = (_number(root, f"size/{k}", path, integer=True) for k in ("width", "height"))
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k}"
        name = _text(obj, "name", path, where)
        box = tuple(_number(obj, f"bndbox/{c}", path, where) for c in _COORDS)
        difficult = obj.findtext("difficult", "0").strip().lower() in ("1", "true")
        objects.append(VocObject(name, box, difficult))
    return VocImage(path, filename, width, height, objects)


def _text(node: ET.Element, tag: str, path: Path, where: str = "") -> str:
    text = node.findtext(tag)
    if text is None or not text.strip():
        raise DataError(f"{path}: {where + ': ' if where else ''}missing <{tag}>")
    return text.strip()


def _number(node: ET.Element, tag: str, path: Path, where: str = "", integer: bool = False) -> Any:
    text = _text(node, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: {where + ': ' if where else ''}<{tag}> must be a number, got {text!r}") from None
    if integer:
        if value <= 0 or value != int(value):
            raise DataError(f"{path}: <{tag}> must be a positive integer, got {text!r}")
        return int(value)
    return value


def _check_classes(parsed: list[VocImage], classes: list[str]) -> None:
    known = set(classes)
    for p in parsed:
        for k, o in enumerate(p.objects):
            if o.name not in known:
                raise DataError(f"{p.xml}: object {k}: unknown class '{o.name}'{did_you_mean(o.name, classes)}; "
                                f"classes: {', '.join(classes)}")


def _check_files(parsed: list[VocImage], image_dir: Path, ann_dir: Path) -> None:
    """Name the XML file for each missing image (the generic check could only name an image id)."""
    if not image_dir.is_dir():
        raise DataError(f"{ann_dir}: image folder not found: {image_dir}")
    missing = [p for p in parsed if not os.path.isfile(image_dir / p.filename)]
    if missing:
        shown = ", ".join(f"'{image_dir / p.filename}' (from {p.xml.name})" for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{ann_dir}: {len(missing)} of {len(parsed)} image files not found: {shown}{more}")
