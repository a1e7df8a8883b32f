"""One small set written three ways (COCO json, a VOCdevkit year folder with ImageSets, Ultralytics YOLO)
reads as the same data: the same `ablate data --json` summary and, trained with the same seed, the
same losses and mAP.  Also VOC07+12 (a list of year folders), YOLO's own forms, and train_subset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.data.shapes import ensure_shapes
from ablate.data.splits import load_splits
from ablate.data.yolo import label_file
from ablate.engine.trial import run_trial
from ablate.study.config import Data, TrialConfig
from ablate.study.paths import merge


def _write_forms(root: Path, source: Path) -> dict[str, dict]:
    """The shapes set at ``source`` as COCO, VOC and YOLO under ``root``; the ``data`` section of each."""
    coco, voc, yolo = root / "coco", root / "VOCdevkit" / "VOC2007", root / "yolo"
    for folder in (coco, voc / "Annotations", voc / "JPEGImages", voc / "ImageSets" / "Main"):
        folder.mkdir(parents=True, exist_ok=True)
    classes = None
    for split in ("train", "val"):
        data = json.loads((source / f"{split}.json").read_text())
        classes = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        by_image = {i["id"]: [] for i in data["images"]}
        for a in data["annotations"]:
            by_image[a["image_id"]].append(a)
        ids = []
        (yolo / "images" / split).mkdir(parents=True)
        (yolo / "labels" / split).mkdir(parents=True)
        for image in data["images"]:
            name = f"{split}_{image['file_name']}"
            stem = name.rsplit(".", 1)[0]
            ids.append(stem)
            shutil.copy(source / split / image["file_name"], voc / "JPEGImages" / name)
            shutil.copy(source / split / image["file_name"], yolo / "images" / split / name)
            w, h = image["width"], image["height"]
            objects, lines = [], []
            for a in by_image[image["id"]]:
                x, y, bw, bh = a["bbox"]
                objects.append(f"<object><name>{classes[a['category_id'] - 1]}</name><difficult>0</difficult><bndbox>"
                               f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + bw}</xmax><ymax>{y + bh}</ymax>"
                               "</bndbox></object>")
                lines.append(f"{a['category_id'] - 1} {(x + bw / 2) / w!r} {(y + bh / 2) / h!r} {bw / w!r} {bh / h!r}")
            (voc / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3"
                f"</depth></size>{''.join(objects)}</annotation>")
            (yolo / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            image["file_name"] = name
        (coco / f"{split}.json").write_text(json.dumps(data))
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        shutil.copytree(yolo / "images" / split, coco / split)
    (yolo / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                    "names": dict(enumerate(classes))}))
    return {
        "coco": {"dataset": "coco", "root": str(coco), "train_ann": "train.json", "val_ann": "val.json",
                 "train_images": "train", "val_images": "val"},
        "voc": {"dataset": "voc", "root": str(voc), "train_split": "train", "val_split": "val", "classes": classes},
        "yolo": {"dataset": "yolo", "yaml": str(yolo / "data.yaml")},
    }


@pytest.fixture
def forms(tmp_path, cache):
    source = ensure_shapes(train_images=48, val_images=16, image_size=96, seed=3, cache_dir=cache)
    return _write_forms(tmp_path / "sets", source)


def test_coco_voc_and_yolo_give_the_same_summary_and_the_same_training(forms, tiny_raw, tmp_path):
    summaries = {}
    for form, data in forms.items():
        study = tmp_path / f"{form}.yaml"
        study.write_text(yaml.safe_dump({"name": form, **merge(tiny_raw, {"data": {**data, "image_size": 96}})}))
        result = CliRunner().invoke(app, ["data", str(study), "--json"])
        assert result.exit_code == 0, result.output
        summaries[form] = json.loads(result.output)
    for form, s in summaries.items():
        assert s.pop("dataset") == form
        s["duplicates"].pop("examples")
    assert summaries["coco"]["splits"]["train"]["images"] == 48 and summaries["coco"]["splits"]["val"]["boxes"] > 16
    assert summaries["voc"] == summaries["coco"] and summaries["yolo"] == summaries["coco"]
    # the data files themselves, as a user points `ablate data` at them: the same numbers
    for target in (forms["yolo"]["yaml"], forms["voc"]["root"]):
        result = CliRunner().invoke(app, ["data", target, "--image-size", "96", "--json"])
        assert result.exit_code == 0, result.output
        direct = json.loads(result.output)
        assert direct["splits"] == summaries["coco"]["splits"], target
    coco = Path(forms["coco"]["root"])
    result = CliRunner().invoke(app, ["data", str(coco / "train.json"), "--images", str(coco / "train"),
                                      "--image-size", "96", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["splits"] == {"annotations": summaries["coco"]["splits"]["train"]}

    histories = {}
    for form, data in forms.items():
        config = TrialConfig.model_validate(merge(tiny_raw, {"data": {**data, "image_size": 96},
                                                             "train": {"epochs": 2}}))
        histories[form] = run_trial(config, seed=0, out_dir=tmp_path / "trials" / form, log=lambda m: None).history
    coco = histories["coco"]
    assert coco[-1]["loss"] < coco[0]["loss"] and coco[-1]["mAP"] > 0, coco  # it learned: a real comparison
    for form in ("voc", "yolo"):
        for ours, theirs in zip(histories[form], coco):
            for metric in ("loss", "mAP", "AP50", "APs", "APm", "APl"):
                assert ours[metric] == pytest.approx(theirs[metric], abs=1e-6, nan_ok=True), (form, metric)


def test_voc07_plus_12_trains_on_every_year_folder_and_evaluates_on_the_first(forms, tmp_path):
    first = Path(forms["voc"]["root"])
    second = tmp_path / "sets" / "VOCdevkit" / "VOC2012"
    shutil.copytree(first, second)
    both = Data.model_validate({**forms["voc"], "root": [str(first), str(second)]})
    train, val = load_splits(both)
    one_train, one_val = load_splits(Data.model_validate(forms["voc"]))
    assert len(train.records) == 2 * len(one_train.records) and len(val.records) == len(one_val.records)
    assert {Path(r.path).parent for r in train.records} == {first / "JPEGImages", second / "JPEGImages"}
    assert len({r.image_id for r in train.records}) == len(train.records)  # ids 1..N over both folders


def test_a_list_of_roots_is_only_for_voc_splits():
    with pytest.raises(ValueError, match="a list of roots is for voc with train_split"):
        Data(dataset="coco", root=["a", "b"], train_ann="t.json", val_ann="v.json")


def test_yolo_from_folders_a_txt_list_and_names_as_a_list(forms, tmp_path):
    yolo = Path(forms["yolo"]["yaml"]).parent
    reference, _ = load_splits(Data.model_validate(forms["yolo"]))
    names = yaml.safe_load((yolo / "data.yaml").read_text())["names"]
    folders = Data(dataset="yolo", root=str(yolo), train_images="images/train", val_images="images/val",
                   classes=[names[k] for k in sorted(names)])
    from_folders, _ = load_splits(folders)
    listed = sorted((yolo / "images" / "train").iterdir())
    (yolo / "train.txt").write_text("\n".join(f"./images/train/{p.name}" for p in listed))
    (yolo / "list.yaml").write_text(yaml.safe_dump({"path": str(yolo), "train": "train.txt", "val": "images/val",
                                                    "names": [names[k] for k in sorted(names)], "nc": len(names)}))
    from_list, _ = load_splits(Data(dataset="yolo", yaml=str(yolo / "list.yaml")))
    for other in (from_folders, from_list):
        assert [r.boxes.tolist() for r in other.records] == [r.boxes.tolist() for r in reference.records]
        assert [r.labels.tolist() for r in other.records] == [r.labels.tolist() for r in reference.records]


def test_yolo_label_paths_follow_ultralytics_and_a_box_outside_is_a_counted_repair(tmp_path, png):
    assert label_file(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")
    assert label_file(Path("/d/images/a.b.png")) == Path("/d/labels/a.b.txt")
    png("y/images/a.png", 40, 30)
    png("y/images/b.png", 40, 30)  # no label file: an image without objects
    (tmp_path / "y" / "labels").mkdir()
    (tmp_path / "y" / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n0 0.95 0.5 0.2 0.2\n1 1.5 1.5 0.1 0.1\n")
    (tmp_path / "y" / "data.yaml").write_text("train: images\nval: images\nnames: [dog, cat]\n")
    train, _ = load_splits(Data(dataset="yolo", yaml=str(tmp_path / "y" / "data.yaml")))
    assert train.records[0].boxes.tolist() == [[10.0, 7.5, 30.0, 22.5], [34.0, 12.0, 40.0, 18.0]]
    assert len(train.records[1].boxes) == 0
    assert train.repairs == {"boxes clipped to the image": 1, "boxes outside the image dropped": 1}


def test_train_subset_is_stratified_exact_stable_and_part_of_the_trial_id(tiny_raw):
    from ablate.study.expand import trial_id

    base = Data(shapes={"train_images": 60, "val_images": 4, "seed": 0}, image_size=64)
    full, _ = load_splits(base)
    cut = lambda **s: load_splits(Data.model_validate({**base.model_dump(), "train_subset": {"seed": 0, **s}}))[0]  # noqa: E731
    a, again, other = cut(images=20), cut(images=20), cut(images=20, seed=5)
    assert len(a.records) == 20 and len(cut(fraction=0.25).records) == 15
    assert [r.image_id for r in a.records] == [r.image_id for r in again.records]
    assert [r.image_id for r in a.records] != [r.image_id for r in other.records]
    assert {a["image_id"] for a in a.gt["annotations"]} <= {r.image_id for r in a.records}

    def share(split) -> dict[int, float]:  # the images whose rarest class is each class, as a share
        from collections import Counter
        freq = Counter(int(x) for r in full.records for x in r.labels)
        rarest = Counter(min(set(r.labels.tolist()), key=lambda c: (freq[c], c)) for r in split.records)
        return {c: n / len(split.records) for c, n in rarest.items()}

    for c, p in share(full).items():
        assert abs(share(a).get(c, 0) - p) <= 1 / 20 + 1e-9, (c, p, share(a))  # each stratum within one image
    with pytest.raises(Exception, match="has 60 images"):
        cut(images=61)
    with pytest.raises(ValueError, match="give fraction"):
        Data(train_subset={"fraction": 0.5, "images": 3})
    plain = TrialConfig.model_validate(tiny_raw)
    sub = TrialConfig.model_validate(merge(tiny_raw, {"data": {"train_subset": {"fraction": 0.5}}}))
    assert trial_id(plain, 0) != trial_id(sub, 0)


def test_yolo_with_a_data_yaml_takes_its_names_not_classes():
    with pytest.raises(ValueError, match="takes the class names from its names"):
        Data(dataset="yolo", yaml="d.yaml", classes=["a"])
    with pytest.raises(ValueError, match="needs data.yaml, or data.train_images, data.val_images and data.classes"):
        Data(dataset="yolo")
