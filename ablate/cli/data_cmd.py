"""``ablate data TARGET``: what a dataset holds, before any training (ablate/data/summary.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.markup import escape
from rich.table import Table

from ablate.cli.wording import out
from ablate.errors import DataError
from ablate.study.config import Data


def data_of(target: Path, overrides: list[str], image_size: int | None,
            images: Path | None = None) -> tuple[Data, dict[str, str]]:
    """The ``data`` section ``target`` stands for, and the splits to summarise (name -> train | val).

    A study file: its baseline's data.  An Ultralytics data.yaml, a COCO json (one split) or a
    VOCdevkit year folder (trainval and test, else train and val): as ``ablate`` would read them.
    """
    size = {"image_size": image_size} if image_size else {}
    if target.is_dir():
        splits = [s for s in ("trainval", "test", "train", "val") if (target / "ImageSets" / "Main" / f"{s}.txt").is_file()]
        pair = ("trainval", "test") if {"trainval", "test"} <= set(splits) else ("train", "val")
        if not set(pair) <= set(splits):
            raise DataError(f"{target}: a folder must be a VOCdevkit year folder with ImageSets/Main/"
                            f"{pair[0]}.txt and {pair[1]}.txt (found: {', '.join(splits) or 'none'})")
        return Data(dataset="voc", root=str(target), train_split=pair[0], val_split=pair[1], **size), \
            {pair[0]: "train", pair[1]: "val"}
    if not target.is_file():
        raise DataError(f"{target}: not found; give a study file, an Ultralytics data.yaml, a COCO json or a "
                        "VOCdevkit year folder")
    if target.suffix == ".json":
        folders = {"train_images": str(images), "val_images": str(images)} if images else {}
        return Data(dataset="coco", train_ann=str(target), val_ann=str(target), **folders, **size), \
            {"annotations": "train"}
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raw = None
    if isinstance(raw, dict) and "names" in raw and "train" in raw and "name" not in raw:
        return Data(dataset="yolo", yaml=str(target), **size), {"train": "train", "val": "val"}
    from ablate.study import expand, load_study

    data = expand(load_study(target, overrides))[0].config.data
    return (data.model_copy(update=size) if size else data), {"train": "train", "val": "val"}


def summary_of(data: Data, splits: dict[str, str]) -> dict:
    from ablate.data.splits import load_splits
    from ablate.data.summary import summarize

    train, val = load_splits(data)
    loaded = {"train": train, "val": val}
    return summarize({name: loaded[which] for name, which in splits.items()}, image_size=data.image_size,
                     dataset=data.dataset)


def print_summary(s: dict) -> None:
    out.print(f"[bold]{s['dataset']}[/]: {len(s['classes'])} classes; object sizes after the resize to "
              f"{s['image_size']} px", highlight=False)
    names = list(s["splits"])
    table = Table(title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    splits = [s["splits"][n] for n in names]
    rows = [("images", [x["images"] for x in splits]), ("boxes", [x["boxes"] for x in splits]),
            ("ignored (crowd, difficult)", [x["ignored_boxes"] for x in splits])]
    rows += [(f"  class {escape(c)}", [x["boxes_per_class"][c] for x in splits]) for c in s["classes"]]
    rows += [("boxes per image: mean / max", [f"{x['boxes_per_image']['mean']:g} / {x['boxes_per_image']['max']}"
                                              for x in splits]),
             ("images without boxes", [x["boxes_per_image"]["images_without_boxes"] for x in splits])]
    rows += [(f"{k} after resize / as scored", [f"{x['sizes_after_resize'][k]} / {x['sizes_scored'][k]}" for x in splits])
             for k in ("small", "medium", "large")]
    rows += [("image sizes: distinct", [x["image_sizes"]["distinct"] for x in splits]),
             ("width min / median / max", ["{} / {:g} / {}".format(*x["image_sizes"]["width"]) for x in splits]),
             ("height min / median / max", ["{} / {:g} / {}".format(*x["image_sizes"]["height"]) for x in splits])]
    kinds = sorted({k for x in splits for k in x["repairs"]})
    rows += [(f"repair: {k}", [x["repairs"].get(k, 0) for x in splits]) for k in kinds]
    for label, values in rows:
        table.add_row(label, *map(str, values))
    out.print(table)
    d = s["duplicates"]
    out.print(f"duplicate files: {d['files']} in {d['groups']} group(s), {d['across_splits']} across splits"
              + (f" (e.g. {', '.join(d['examples'][0])})" if d["examples"] else ""), highlight=False)
    for w in s["warnings"]:
        out.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
