"""LabelMe JSON reader: shapes, groups, ignore regions, lines/pointers, bad files, conformance."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import annogate.formats.labelme as labelme
from annogate.formats import LoadError, detect_format, load_batch
from annogate.formats.labelme import CIRCLE_VERTICES, FORMAT, load_labelme, looks_like_labelme, shape_lines
from annogate.model import SEG_NONE, SEG_POLYGON

DATA = Path(__file__).parent / "data"
VALID = DATA / "valid" / "labelme"
INVALID = DATA / "invalid" / "labelme"


def _shape(label: str, pts: list[list[float]], kind: str | None = "rectangle", **extra: Any) -> dict[str, Any]:
    return {"label": label, "points": pts, "group_id": None, "shape_type": kind, "flags": {}, **extra}


def _doc(shapes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "version": "5.0.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": "x.jpg",
        "imageData": None,
        "imageHeight": 100,
        "imageWidth": 100,
        **extra,
    }


def test_shapes_groups_ignore_and_attributes() -> None:
    b = load_labelme(VALID / "shapes")
    assert b.format == "labelme" and b.problems == []
    assert list(b.images.file_name) == ["a.jpg", "b.png"]  # "..\\images\\a.jpg": backslash is a separator
    assert (b.images.width[0], b.images.height[0]) == (500, 400)
    a = b.annotations
    names = [b.category_name(i) for i in range(len(a))]
    assert names == ["box", "car", "wheel", "eye", "nose", "brow", 'crease {"shapes": [', None, "blob", "dog"]
    np.testing.assert_allclose(
        a.bbox,
        [
            [10, 20, 20, 20],  # rectangle drawn bottom-right to top-left: normalised
            [100, 90, 120, 50],  # group 1 "car": two polygons and a rectangle, one object
            [105, 125, 10, 10],  # group 1 "wheel": another label, another object
            [40, 50, 20, 20],  # circle: centre (50, 60), rim point 10 px away
            [5, 6, 0, 0],
            [1, 2, 8, 1],
            [0, 0, 8, 4],
            [300, 300, 50, 50],
            [1, 1, 1, 1],
            [1.5, 2.5, 10, 20],
        ],
    )
    # exact lines of each (first) shape's opening brace, and its JSON pointer
    assert list(a.line) == [8, 26, 66, 98, 114, 126, 142, 163, 187, 5]
    assert [b.pointer(i) for i in range(len(a))][:4] == ["/shapes/0", "/shapes/1", "/shapes/3", "/shapes/5"]
    assert [b.source_file(i) for i in (0, 9)] == ["a.json", "sub/b.json"]
    # merged group: 3 rings, the rectangle as a 4-corner ring
    car = a.rings(1)
    assert len(car) == 3 and list(car[2]) == [210, 90, 220, 90, 220, 95, 210, 95]
    assert list(a.seg_kind[[0, 1, 3, 4]]) == [SEG_NONE, SEG_POLYGON, SEG_POLYGON, SEG_NONE]
    # circle: a polygon of CIRCLE_VERTICES points all on the rim
    (ring,) = a.rings(3)
    xy = np.asarray(ring).reshape(-1, 2)
    assert len(xy) == CIRCLE_VERTICES
    np.testing.assert_allclose(np.hypot(xy[:, 0] - 50, xy[:, 1] - 60), 10)
    # point / line / linestrip: vertices as visible keypoints
    assert a.keypoints_of(4).tolist() == [[5, 6, 2]]
    assert a.keypoints_of(6).tolist() == [[0, 0, 2], [4, 4, 2], [8, 0, 2]]
    # __ignore__: an ignore region with no class
    assert a.iscrowd.tolist() == [False] * 7 + [True] + [False] * 2
    assert a.attributes is not None
    attrs = list(a.attributes)
    assert attrs[0] == {"shape_type": "rectangle", "occluded": True}
    assert attrs[1] == {"group_id": 1, "shape_type": ("polygon", "polygon", "rectangle")}
    assert attrs[6] == {"shape_type": "linestrip", "description": "a tricky label"}
    assert attrs[7] == {"shape_type": "polygon", "ignore": True}
    assert attrs[8] == {"shape_type": "polygon", "flag:shape_type": "x"}  # null shape_type is a polygon


def test_image_data_is_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: Any, **_k: Any) -> bytes:
        raise AssertionError("imageData decoded")

    for mod, name in ((base64, "b64decode"), (binascii, "a2b_base64"), (base64, "standard_b64decode")):
        monkeypatch.setattr(mod, name, boom)
    assert len(load_labelme(VALID / "shapes").annotations) == 10


def test_every_problem_has_file_line_pointer_and_rule() -> None:
    b = load_labelme(INVALID / "mixed")
    got = [(p.file, p.line, p.pointer, p.rule) for p in b.problems]
    assert got == [
        ("b_bad.json", 1, "/imagePath", "schema"),
        ("b_bad.json", 1, "/imageWidth", "image_size"),
        ("b_bad.json", 5, "/shapes/0/points/0", "schema"),  # [1, "2"]
        ("b_bad.json", 17, "/shapes/1/points", "schema"),  # circle with 3 points
        ("b_bad.json", 37, "/shapes/2/shape_type", "schema"),  # "mask": not read, said so
        ("b_bad.json", 49, "/shapes/3/label", "schema"),  # label null
        ("b_bad.json", 65, "/shapes/4/group_id", "schema"),  # group_id "one"
        ("c_truncated.json", 9, None, "syntax"),
        ("d_latin1.json", 1, None, "encoding"),
        ("e_coco.json", 1, None, "schema"),  # not a LabelMe file
    ]
    assert "imagePath" in b.problems[-1].message and "shapes" in b.problems[-1].message
    # the bad shapes are not silently dropped: rows for the readable ones, problems for the rest
    assert [b.category_name(i) for i in range(len(b.annotations))] == ["cat", None, "cat", "cat"]


def test_absurd_image_size_is_a_problem_and_unknown() -> None:
    """``imageWidth: 2**70`` and ``imageHeight: -80`` are sizes no image has: reported by pointer, size unknown."""
    b = load_labelme(INVALID / "image_size__huge_and_negative.json")
    got = [(p.line, p.pointer, p.rule) for p in b.problems]
    assert got == [(1, "/imageWidth", "image_size"), (1, "/imageHeight", "image_size")]
    assert "2147483648" in b.problems[0].message and "not positive" in b.problems[1].message
    assert math.isnan(b.images.width[0]) and math.isnan(b.images.height[0])
    assert len(b.annotations) == 1  # the shape is still gated


@pytest.mark.parametrize(("value", "bad"), [(1e308, True), (2**31 + 1, True), (2**31, False), ("wide", True)])
def test_image_side_bounds(value: object, bad: bool, tmp_path: Path) -> None:
    doc = {"imagePath": "x.jpg", "shapes": [], "imageWidth": value, "imageHeight": 9}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    b = load_labelme(tmp_path / "x.json")
    assert [q.rule for q in b.problems] == (["image_size"] if bad else [])
    assert math.isnan(b.images.width[0]) is bad


def test_nothing_readable_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"no \.json files"):
        load_labelme(tmp_path)
    (tmp_path / "x.json").write_bytes(b'{"imagePath": "a.jpg", "shapes": [')
    with pytest.raises(LoadError, match=r"none of the 1 JSON files.*x\.json:1: .*\[syntax\]"):
        load_labelme(tmp_path)
    with pytest.raises(LoadError, match=r"\[syntax\]"):
        load_labelme(tmp_path / "x.json")


@pytest.mark.parametrize(
    "doc,claimed",
    [
        (_doc([_shape("a", [[0, 0], [1, 1]])]), True),
        ({"imageData": "A" * (2 << 20), "imagePath": "a.jpg", "shapes": []}, True),  # shapes beyond the first MB
        ({"images": [], "annotations": [], "categories": []}, False),  # COCO
        ({"name": "pkg", "version": "1.0.0"}, False),  # package.json
        ([{"id": 1, "data": {"image": "a.jpg"}, "annotations": []}], False),  # Label Studio
        ({"shapes": []}, False),
    ],
)
def test_sniff_by_content(doc: Any, claimed: bool, tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    p.write_text(json.dumps(doc, indent=1))
    assert looks_like_labelme(p, p.read_bytes()[: 1 << 20]) is claimed
    assert looks_like_labelme(tmp_path, b"") is claimed


def test_single_file_detection_and_format() -> None:
    f = VALID / "shapes" / "sub" / "b.json"
    fmt = detect_format(f)
    assert fmt is not None and fmt.name == "labelme"
    b = load_batch(f)
    assert b.format == "labelme" and b.files == ("b.json",) and len(b.annotations) == 1
    assert FORMAT.folder and FORMAT.suffixes == (".json",)


@pytest.mark.parametrize("indent", [None, 1, 2, 4])
def test_shape_lines_match_a_text_walk(indent: int | None) -> None:
    shapes = [
        _shape('}"shapes": [{', [[1, 2], [3, 4]], flags={"shapes": [{"x": "]"}]}),
        _shape("b\\", [[1, 2]], "point", description='{"a": [}'),
        _shape("c", [[1, 2], [3, 4], [5, 6]], "polygon"),
    ]
    doc = {"flags": {"shapes": [{}]}, "imageData": '"[{' * 1000, **_doc(shapes)}
    text = json.dumps(doc, indent=indent)
    got = shape_lines(text.encode())
    if indent is None:
        assert got == []  # one line: every shape is on line 1, its pointer locates it
        return
    lines = text.split("\n")
    start = lines.index(" " * indent + '"shapes": [')
    end = lines.index(" " * indent + "],", start)
    want = [i + 1 for i in range(start + 1, end) if lines[i] == " " * (2 * indent) + "{"]
    assert len(want) == 3 and got == want


def test_hostile_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "good.json").write_text(json.dumps(_doc([_shape("a", [[0, 0], [1, 1]])]), indent=1))
    (tmp_path / "deep.json").write_bytes(b'{"imagePath": "d.jpg", "shapes": ' + b"[" * 3000 + b"]" * 3000 + b"}")
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "utf16.json").write_bytes(json.dumps(_doc([])).encode("utf-16"))
    (tmp_path / "shapes_obj.json").write_text(json.dumps(_doc({"0": {}})))  # type: ignore[arg-type]
    (tmp_path / "nan.json").write_text(json.dumps(_doc([_shape("a", [[float("nan"), 1], [2, 3]])])))
    (tmp_path / "zbig.json").write_bytes(b" " * 20_000)
    monkeypatch.setattr(labelme, "MAX_FILE_BYTES", 10_000)
    b = load_labelme(tmp_path)
    rules = {p.file: p.rule for p in b.problems}
    assert rules == {
        "deep.json": "syntax",
        "empty.json": "syntax",
        "utf16.json": "encoding",
        "shapes_obj.json": "schema",
        "nan.json": "syntax",  # NaN is not JSON
        "zbig.json": "limit",
    }
    assert len(b.annotations) == 1


# -- conformance ----------------------------------------------------------------------


def test_labelme_rs_mandrill_stats(thirdparty: Path) -> None:
    root = thirdparty / "labelme-rs"
    snap = (root / "lmrs/src/snapshots/lmrs__stats__tests__Mandrill.snap").read_text()
    want = json.loads(snap.split("---", 2)[2])
    b = load_labelme(root / "tests/data/Mandrill.json")
    assert b.problems == [] and list(b.images.file_name) == ["Mandrill.jpg"]
    a = b.annotations
    assert a.attributes is not None
    got: dict[str, Counter[str]] = {}
    for i in range(len(a)):
        got.setdefault(a.attributes[i]["shape_type"], Counter())[str(b.category_name(i))] += 1
    assert {k: dict(v) for k, v in got.items()} == want
    # one-line file: every line is 1, the pointer tells the shapes apart
    assert set(a.line.tolist()) == {1} and b.pointer(14) == "/shapes/14"


def test_labelme_rs_small_files(thirdparty: Path) -> None:
    tests = thirdparty / "labelme-rs/lmrs/tests"
    bs = load_labelme(tests / "backslash.json")
    assert list(bs.images.file_name) == ["stem.jpg"]  # "parent\\stem.jpg"
    assert bs.annotations.keypoints_of(0).tolist() == [[0, 1, 2]]
    t = load_labelme(tests / "test.json")
    assert [t.category_name(i) for i in range(4)] == ["TL", "TR", "BL", "BR"]
    assert list(t.annotations.line) == [8, 20, 32, 44]
    assert len({tuple(t.annotations.keypoints_of(i).ravel()) for i in range(4)}) == 1  # 4 coincident points
    s = load_labelme(tests / "sort.json")
    a = s.annotations
    assert a.attributes is not None
    assert [a.attributes[i]["shape_type"] for i in range(6)] == ["point"] * 4 + ["line"] * 2
    np.testing.assert_array_equal(a.bbox[4], a.bbox[5])  # a line and its reverse: same extent
    np.testing.assert_array_equal(a.keypoints_of(4)[::-1], a.keypoints_of(5))


def test_review_gts_labelme_equals_coco(thirdparty: Path) -> None:
    gts = thirdparty / "review_object_detection_metrics/data/database/gts"
    coco = json.loads((gts / "coco_format_v1/instances_default.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    want: dict[tuple[str, str], list[list[float]]] = {}
    for ann in coco["annotations"]:
        want.setdefault((files[ann["image_id"]], names[ann["category_id"]]), []).append(ann["bbox"])
    b = load_labelme(gts / "labelme_format")
    assert b.problems == [] and len(b.images) == 100
    got: dict[tuple[str, str], list[list[float]]] = {}
    for i in range(len(b.annotations)):
        got.setdefault((str(b.image_name(i)), str(b.category_name(i))), []).append(list(b.annotations.bbox[i]))
    assert got.keys() == want.keys()
    for key, boxes in want.items():
        g, w = np.array(sorted(got[key])), np.array(sorted(boxes))
        assert g.shape == w.shape and np.abs(g - w).max() <= 1.0, key
