"""Pascal VOC XML -> the COCO form: exact conversion of two files, and errors that name the XML."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.data.voc import load_voc
from ablate.errors import DataError


def _xml(filename="a.jpg", size=(50, 40), objects=(("dog", (1, 1, 10, 20), 0),)) -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, diff in objects
    )
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


@pytest.fixture
def voc(tmp_path, png):
    """``voc({"x.xml": text, ...})`` writes the XML folder and a PNG per named image; -> (xml_dir, image_dir)."""

    def _voc(files: dict[str, str], images: dict[str, tuple[int, int]] | None = None):
        xml_dir = tmp_path / "Annotations"
        xml_dir.mkdir(exist_ok=True)
        for name, text in files.items():
            (xml_dir / name).write_text(text)
        for name, (w, h) in (images or {"a.jpg": (50, 40), "b.jpg": (60, 30)}).items():
            png(f"JPEGImages/{name}", w, h)
        return xml_dir, tmp_path / "JPEGImages"

    return _voc


def test_two_files_convert_to_the_expected_coco_dict(voc):
    xml_dir, images = voc({
        # sorted by file name: 1.xml is image 1 whatever the order they were written in
        "2.xml": _xml("b.jpg", (60, 30), [("person", (11, 6, 30, 25), 0), ("cat", (31, 1, 60, 30), 1)]),
        "1.xml": _xml("a.jpg", (50, 40), [("dog", (1, 1, 10, 20), 0)]),
    })
    data = load_voc(xml_dir, images)
    assert data.gt == {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 50, "height": 40},
            {"id": 2, "file_name": "b.jpg", "width": 60, "height": 30},
        ],
        "annotations": [
            # 1-based inclusive VOC pixels -> [xmin - 1, ymin - 1, w, h]
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10.0, 5.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [30.0, 0.0, 30.0, 30.0], "area": 900.0, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "person"}],
    }
    assert data.classes == ["cat", "dog", "person"] and data.cat_ids == [1, 2, 3]
    # the difficult cat is evaluated as a crowd region but never trained on
    np.testing.assert_array_equal(data.records[1].boxes, [[10, 5, 30, 25]])
    np.testing.assert_array_equal(data.records[1].labels, [2])


def test_given_classes_set_the_label_order(voc):
    xml_dir, images = voc({"1.xml": _xml("a.jpg", objects=[("dog", (1, 1, 10, 20), 0)])})
    data = load_voc(xml_dir, images, classes=["person", "dog"])
    assert data.classes == ["person", "dog"] and data.records[0].labels.tolist() == [1]


def test_box_past_the_edge_is_clipped_and_counted(voc):
    xml_dir, images = voc({"1.xml": _xml("a.jpg", (50, 40), [("dog", (41, 1, 55, 20), 0)])})
    data = load_voc(xml_dir, images)
    assert data.repairs == {"boxes clipped to the image": 1}
    np.testing.assert_array_equal(data.records[0].boxes, [[40, 0, 50, 20]])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_xml().replace("<filename>a.jpg</filename>", ""), r"missing <filename>"),
        (_xml().replace("<width>50</width>", ""), r"missing <size/width>"),
        (_xml().replace("<height>40</height>", "<height>forty</height>"), r"<size/height> must be a number"),
        (_xml().replace("<name>dog</name>", ""), r"object 0: missing <name>"),
        (_xml().replace("<ymax>20</ymax>", ""), r"object 0: missing <bndbox/ymax>"),
        (_xml().replace("<xmin>1</xmin>", "<xmin>one</xmin>"), r"object 0: <bndbox/xmin> must be a number"),
        (_xml()[:-5], r"unparsable XML: .*line 1"),
    ],
)
def test_broken_xml_names_the_file(voc, text, match):
    xml_dir, images = voc({"1.xml": _xml(), "bad.xml": text})
    with pytest.raises(DataError, match=match) as e:
        load_voc(xml_dir, images)
    assert str(xml_dir / "bad.xml") in str(e.value)


def test_unknown_class_names_the_file_and_suggests(voc):
    xml_dir, images = voc({"1.xml": _xml(objects=[("dgo", (1, 1, 10, 20), 0)])})
    with pytest.raises(DataError, match=r"1\.xml: object 0: unknown class 'dgo' \(did you mean 'dog'\?\)"):
        load_voc(xml_dir, images, classes=["cat", "dog"])


def test_missing_image_names_the_xml(voc):
    xml_dir, images = voc({"1.xml": _xml("gone.jpg")})
    with pytest.raises(DataError, match=r"gone\.jpg' \(from 1\.xml\)"):
        load_voc(xml_dir, images)
