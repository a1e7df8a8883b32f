"""`ablate train` as a user runs it: shapes, a COCO json folder and a VOC folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.data.shapes import ensure_shapes

runner = CliRunner(env={"COLUMNS": "200"})


def _study(tmp_path: Path, base: dict, **data) -> Path:
    study = {"name": "tiny", **base, "seeds": [0],
             "scheduler": {"grace_period": 1}}
    study["train"]["epochs"] = 1
    study["data"].update(data)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _train(path: Path, out: Path, *args: str):
    result = runner.invoke(app, ["train", str(path), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_on_shapes_prints_metrics_json_last(tmp_path, tiny_raw):
    final = _train(_study(tmp_path, tiny_raw), tmp_path / "out")
    assert final["status"] == "completed" and final["variant"] == 0 and final["seed"] == 0
    for key in ("trial_id", "mAP", "AP50", "APs", "APm", "APl", "AR100", "loss", "lr", "imgs_per_s", "peak_mem_mb"):
        assert key in final


def test_train_on_a_coco_json_folder(tmp_path, tiny_raw):
    root = ensure_shapes(train_images=24, val_images=8, image_size=128, seed=3, cache_dir=Path(os.environ["ABLATE_CACHE"]))
    path = _study(tmp_path, tiny_raw, dataset="coco", root=str(root), train_ann="train.json", train_images="train",
                  val_ann="val.json", val_images="val")
    final = _train(path, tmp_path / "out")
    assert final["status"] == "completed" and 0 <= final["mAP"] <= 1


def _to_voc(root: Path, split: str, target: Path) -> None:
    """Write Pascal VOC XML files for a shapes split (one XML per image)."""
    data = json.loads((root / f"{split}.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    (target / "Annotations").mkdir(parents=True, exist_ok=True)
    for image in data["images"]:
        xml = ET.Element("annotation")
        ET.SubElement(xml, "filename").text = image["file_name"]
        size = ET.SubElement(xml, "size")
        for key in ("width", "height"):
            ET.SubElement(size, key).text = str(image[key])
        ET.SubElement(size, "depth").text = "3"
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            obj = ET.SubElement(xml, "object")
            ET.SubElement(obj, "name").text = names[ann["category_id"]]
            ET.SubElement(obj, "difficult").text = "0"
            box = ET.SubElement(obj, "bndbox")
            x, y, w, h = ann["bbox"]
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h), strict=True):
                ET.SubElement(box, key).text = str(value)
        ET.ElementTree(xml).write(target / "Annotations" / (Path(image["file_name"]).stem + ".xml"))


def test_train_on_a_voc_folder(tmp_path, tiny_raw):
    root = ensure_shapes(train_images=24, val_images=8, image_size=128, seed=3, cache_dir=Path(os.environ["ABLATE_CACHE"]))
    for split in ("train", "val"):
        _to_voc(root, split, tmp_path / "voc" / split)
    path = _study(tmp_path, tiny_raw, dataset="voc", root=str(tmp_path / "voc"), train_ann="train/Annotations",
                  train_images=str(root / "train"), val_ann="val/Annotations", val_images=str(root / "val"))
    final = _train(path, tmp_path / "out")
    assert final["status"] == "completed" and 0 <= final["mAP"] <= 1


def test_train_a_failed_trial_exits_non_zero_with_the_reason(tmp_path, tiny_raw):
    path = _study(tmp_path, tiny_raw)
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "out"),
                                 "-o", "train.optimizer={name: sgd, lr: 1.0e6}", "-o", "train.warmup=none"])
    assert result.exit_code == 1
    assert "trial failed" in result.stderr and "non-finite" in result.stderr



def test_a_truncated_image_read_in_a_worker_is_a_clear_error(tmp_path, tiny_raw):
    import shutil

    source = ensure_shapes(train_images=24, val_images=8, image_size=128, seed=3,
                           cache_dir=Path(os.environ["ABLATE_CACHE"]))
    root = tmp_path / "coco"
    shutil.copytree(source, root)
    victim = sorted((root / "train").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    path = _study(tmp_path, tiny_raw, dataset="coco", root=str(root), train_ann="train.json", train_images="train",
                  val_ann="val.json", val_images="val", num_workers=1)
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Original Traceback" not in result.stderr and "DataError:" not in result.stderr
    assert f"cannot read image '{victim}' (image id 1)" in result.stderr.replace("\n", "")
