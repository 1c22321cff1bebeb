"""The Label Studio reader: published values from Label Studio's own exports, and hostile input.

Third-party files (``../shared/thirdparty``, skipped when absent):
HumanSignal/label-studio-sdk (Apache-2.0) ``tests/custom/converter/data`` and
HumanSignal/label-studio-evalme (MIT) ``evalme/tests/test_data``; the expected values
are those the upstream tests publish (quoted in ``../shared/thirdparty/README.md``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.formats import LoadError, detect_format, load_batch
from annogate.formats.labelstudio import (
    FORMAT,
    decode_brush_rle,
    load_labelstudio,
    looks_like_labelstudio,
    ls_rectangle_to_model,
)
from annogate.model import SEG_POLYGON, SEG_RLE, Batch

DATA = Path(__file__).parent / "data"
VALID = DATA / "valid" / "labelstudio"
INVALID = sorted((DATA / "invalid" / "labelstudio").glob("*.json"))
SDK = Path("label-studio-sdk/tests/custom/converter/data")
EVALME = Path("label-studio-evalme/evalme/tests/test_data")


def _rule(p: Path) -> str:
    return p.stem.split("__")[0]


def _rows_by(b: Batch, key: str) -> Counter[Any]:
    a = b.annotations
    if key == "annotator_image":
        return Counter((b.annotator_name(i), b.image_name(i)) for i in range(len(a)))
    return Counter(b.category_name(i) for i in range(len(a)))


def _corners(b: Batch, i: int) -> list[tuple[float, float]]:
    """The model's rotated box (clockwise about the centre) as TL, TR, BR, BL pixel corners."""
    x, y, w, h = b.annotations.bbox[i].tolist()
    r = 0.0 if b.annotations.rotation is None else float(b.annotations.rotation[i])
    c, s = math.cos(math.radians(r)), math.sin(math.radians(r))
    cx, cy = x + w / 2, y + h / 2
    return [
        (cx + dx * c - dy * s, cy + dx * s + dy * c)
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    ]


def _row_of_region(path: Path, b: Batch, region: str) -> int:
    doc = json.loads(path.read_text())
    for i in range(len(b.annotations)):
        node: Any = doc
        for part in str(b.pointer(i)).strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        if node.get("id") == region:
            return i
    raise AssertionError(region)


# -- conformance against Label Studio's own exports ------------------------------------------
def test_sdk_coco_export_rectangle(thirdparty: Path) -> None:
    b = load_batch(thirdparty / SDK / "test_export_coco" / "data.json")
    assert b.format == "labelstudio"
    i = next(i for i in range(len(b.annotations)) if b.category_name(i) == "rectangle_label")
    np.testing.assert_allclose(b.annotations.bbox[i], [159.709619, 13.163121, 31.760436, 31.773050], rtol=1e-6)
    assert b.images.file_name.tolist() == ["test_image1.jpg"]
    assert (b.images.width[0], b.images.height[0]) == (500, 320)
    assert Counter(int(k) for k in b.annotations.seg_kind) == Counter({SEG_POLYGON: 1, 0: 3})
    # no completed_by in this export: the annotator is its last creator, and that is said
    assert b.annotators == ("308",)
    assert b.meta["labelstudio"]["annotator_from"] == {"last_created_by": 1}
    assert b.problems == []
    # the two standalone keypoints are points, not zero-size boxes
    pts = [i for i in range(len(b.annotations)) if b.annotations.num_keypoints[i] == 1]
    assert len(pts) == 2 and np.isnan(b.annotations.bbox[pts]).all()


def test_sdk_yolo_export_boxes_and_annotators(thirdparty: Path) -> None:
    b = load_batch(thirdparty / SDK / "test_export_yolo" / "data.json")
    published = {
        "C7oHaRDVVC": (0.39253187613843354, 0.7304189435336975, 0.04189435336976321, 0.04735883424408015),
        "9GLz8g9skg": (0.5969531379367445, 0.6519291273389635, 0.03808577579069383, 0.04636529226693169),
        "ipBS_GBGZp": (0.39799635701275043, 0.7404371584699453, 0.03825136612021857, 0.04553734061930784),
    }
    path = thirdparty / SDK / "test_export_yolo" / "data.json"
    for region, yolo in published.items():
        i = _row_of_region(path, b, region)
        x, y, w, h = b.annotations.bbox[i].tolist()
        np.testing.assert_allclose([(x + w / 2) / 2800, (y + h / 2) / 2800, w / 2800, h / 2800], yolo, rtol=1e-12)
    assert _rows_by(b, "annotator_image") == Counter({("1", "image1"): 2, ("1", "image2"): 2, ("2", "image1"): 2})


def test_sdk_obb_corners_from_centre_rotation(thirdparty: Path) -> None:
    path = thirdparty / SDK / "test_export_yolo" / "data_obb.json"
    b = load_batch(path)
    assert Counter(b.image_name(i) for i in range(len(b.annotations))) == Counter(
        {"image1": 23, "image2": 1, "image3": 1}
    )
    published = {
        "TSpc2wAqVz": [
            (0.32940009098188566, 0.7738909168266751),
            (0.4078648636432219, 0.7579911558782483),
            (0.43217208011269465, 0.830475727539231),
            (0.35370730745135837, 0.8463754884876579),
        ],
        "1hosi4rK9f": [
            (0.16814074232397513, 0.5743596079245723),
            (0.29990750552628187, 0.6721650332758418),
            (0.24395249444460837, 0.7177171056620688),
            (0.11218573124230163, 0.6199116803107994),
        ],
    }
    for region, corners in published.items():
        i = _row_of_region(path, b, region)
        assert b.annotations.rotation is not None and b.annotations.rotation[i] != 0
        got = [(px / 597, py / 768) for px, py in _corners(b, i)]
        np.testing.assert_allclose(got, corners, rtol=0, atol=1e-9)
    # labels are kept as written: the file says 'Butterfly' where the config says 'butterfly'
    assert "Butterfly" in b.categories.name.tolist()


def test_ls_rectangle_conversion_unit() -> None:
    # a 20x10 box at (100, 50) rotated 90 deg clockwise about its top-left corner occupies
    # x in [90, 100], y in [50, 70]: centre (95, 60), so the unrotated box is at (85, 55)
    (x, y, w, h), r = ls_rectangle_to_model(100, 50, 20, 10, 90)
    np.testing.assert_allclose([x, y, w, h, r], [85, 55, 20, 10, 90], atol=1e-12)
    assert ls_rectangle_to_model(1.5, 2.5, 3, 4, 360) == ((1.5, 2.5, 3, 4), 0.0)


def test_sdk_polygon(thirdparty: Path) -> None:
    b = load_batch(thirdparty / SDK / "test_export_yolo" / "data_polygons.json")
    assert len(b.annotations) == 1 and b.category_name(0) == "Airplane"
    ring = b.annotations.rings(0)[0]
    assert ring.size == 74
    assert ring[0] == pytest.approx(60 * 640 / 100) and ring[1] == pytest.approx(19.55922865013774 * 426 / 100)


def test_sdk_keypoints_tied_to_their_box(thirdparty: Path) -> None:
    b = load_batch(thirdparty / SDK / "test_export_yolo" / "data_keypoints.json")
    assert len(b.annotations) == 1 and b.category_name(0) == "person"
    assert b.categories.keypoints[0] == ("nose", "left_eye", "right_eye")
    kp = b.annotations.keypoints_of(0)
    np.testing.assert_allclose(kp[0], [64.44444444444444 * 2.16, 39.290780141843975 * 1.74, 2])
    assert b.meta["labelstudio"]["relations"] == 5
    assert b.annotators == ("1",)
    assert b.meta["labelstudio"]["annotator_emails"] == {"1": "sergei@heartex.test"}


def test_sdk_csv_export_predictions_ignored_unless_asked(thirdparty: Path) -> None:
    path = thirdparty / SDK / "test_export_csv" / "csv_test.json"
    b = load_batch(path)
    assert len(b.annotations) == 3 and np.isnan(b.annotations.score).all()
    assert b.images.file_name.tolist() == ["0030019819f25b28.jpg", "00155094b7acc33b.jpg"]
    assert b.meta["labelstudio"]["predictions"] == 2
    bp = load_labelstudio(path, predictions=True)
    scored = np.flatnonzero(~np.isnan(bp.annotations.score))
    assert len(bp.annotations) == 5 and scored.size == 2
    assert {bp.annotator_name(int(i)) for i in scored} == {"model:model 0"}
    np.testing.assert_allclose(sorted(bp.annotations.score[scored]), [0.23053804129850775, 0.2962464632651445])


def test_evalme_three_annotators(thirdparty: Path) -> None:
    b = load_batch(thirdparty / EVALME / "test_bbox.json")
    assert len(b.images) == 5 and b.annotators == ("1", "2", "3")
    assert _rows_by(b, "category") == Counter({"Car": 54, "Road": 22, "Obstacle": 15})
    assert len({(b.annotator_name(i), b.image_name(i)) for i in range(len(b.annotations))}) == 15
    bp = load_labelstudio(thirdparty / EVALME / "test_bbox.json", predictions=True)
    assert len(bp.annotations) == 91 + 30
    assert set(bp.annotations.score[~np.isnan(bp.annotations.score)].tolist()) == {0.95}


def test_evalme_legacy_layout(thirdparty: Path) -> None:
    b = load_batch(thirdparty / EVALME / "test_old_format.json")
    ch = b.meta["labelstudio"]["choices"]
    assert [c["choices"] for c in ch] == [["Neutral"], ["Evil"], ["Evil", "Neutral"]]
    assert [c["pointer"] for c in ch] == [f"/0/completions/{j}/result/0/0" for j in range(3)]
    assert b.skip_reason is not None and "not an image batch" in b.skip_reason


def test_sniff_claims_label_studio_and_not_coco(thirdparty: Path) -> None:
    ls = [*sorted((thirdparty / SDK).rglob("*.json")), *sorted((thirdparty / EVALME).glob("*.json"))]
    assert len(ls) == 8
    for p in ls:
        assert looks_like_labelstudio(p, p.read_bytes()[: 1 << 20]), p
        assert detect_format(p) is FORMAT or detect_format(p).name == "labelstudio", p  # type: ignore[union-attr]
    coco = [
        thirdparty / "cocoapi/results/instances_val2014_fakebbox100_results.json",
        thirdparty / "faster_coco_eval/tests/dataset/dt_dataset.json",
        thirdparty / "faster_coco_eval/tests/dataset/gt_dataset.json",
    ]
    for p in coco:
        assert not looks_like_labelstudio(p, p.read_bytes()[: 1 << 20]), p


# -- the project's own fixtures ---------------------------------------------------------------
def test_multi_annotator_fixture() -> None:
    path = VALID / "multi_annotator.json"
    b = load_batch(path)
    a = b.annotations
    assert b.images.file_name.tolist() == ["5f2a9c1e-street.jpg", "side view.png"]
    assert load_labelstudio(path, image_name="upload").images.file_name.tolist()[0] == "street.jpg"
    # annotation 12 was cancelled; 13 submitted nothing but still covers the image
    assert b.annotators == ("7", "8")
    assert load_labelstudio(path, annotator="email").annotators == ("7", "ann@example.com")
    assert b.meta["labelstudio"]["cancelled_annotations"] == 1
    assert b.meta["labelstudio"]["coverage"]["9"] == ["5f2a9c1e-street.jpg"]
    # rows in source order: car, person (with head+foot), car, road, sign, pole
    assert [b.category_name(i) for i in range(len(a))] == ["car", "person", "car", "road", "sign", "pole"]
    assert a.bbox[0].tolist() == [20.0, 20.0, 60.0, 40.0]
    person = 1
    assert b.categories.keypoints[b.categories.index_by_name()["person"]] == ("head", "foot")
    assert a.keypoints_of(person).tolist() == [[110.0, 15.0, 2.0], [120.0, 25.0, 2.0]]
    assert a.rotation is not None and a.rotation[person] == 90
    assert a.seg_kind[3] == SEG_POLYGON and a.rings(3)[0].tolist() == [0, 0, 20, 0, 20, 10]
    assert a.area[4] == pytest.approx(math.pi * 20 * 20)
    assert a.attributes is not None and a.attributes[4] == {"shape": "ellipse"}
    assert b.image_name(5) == "side view.png" and a.keypoints_of(5).tolist() == [[10.0, 5.0, 2.0]]
    assert b.meta["labelstudio"]["choices"][0]["choices"] == ["day"]
    assert b.problems == []
    assert b.meta["labelstudio"]["other_result_types"] == {"textarea": 1}
    assert np.isnan(a.bbox[5]).all()
    # every row's line is its result's opening brace, and its pointer names the same object
    text = path.read_text().split("\n")
    doc = json.loads(path.read_text())
    for i in range(len(a)):
        assert text[int(a.line[i]) - 1].strip() == "{"
        node: Any = doc
        for part in str(b.pointer(i)).strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        rid = next(t for t in text[int(a.line[i]) :] if '"id"' in t)
        assert f'"{node["id"]}"' in rid


def test_legacy_completions_fixture() -> None:
    b = load_batch(VALID / "legacy_completions.json")
    assert b.images.file_name.tolist() == ["a.jpg"] and b.annotators == ("4",)
    assert b.pointer(0) == "/0/completions/0/result/0/0" and b.category_name(0) == "cat"
    assert b.meta["labelstudio"]["choices"][0]["choices"] == ["indoor"]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture(path: Path) -> None:
    rule = _rule(path)
    if rule == "unreadable":
        with pytest.raises(LoadError) as e:
            load_labelstudio(path)
        assert str(path) in str(e.value)
        return
    b = load_labelstudio(path)
    hits = [p for p in b.problems if p.rule == rule]
    assert hits, [p.message for p in b.problems]
    for p in hits:
        assert p.pointer is None or p.pointer.startswith("/")
    if rule in ("schema", "brush_mask"):
        # a bad region is reported and not converted into a row with made-up geometry
        assert all(math.isfinite(v) for v in b.annotations.bbox.ravel())


@pytest.mark.parametrize(
    ("width", "bad"), [(2**70, True), (1e308, True), (2**31 + 1, True), (2**31, False), (-80, True)]
)
def test_absurd_original_size_is_a_problem(width: float, bad: bool, tmp_path: Path) -> None:
    """An ``original_width`` no image has (2**70, -80) turns percent into absurd pixels: reported, region not read."""
    doc = json.loads((DATA / "invalid" / "labelstudio" / "schema__zero_image_width.json").read_text())
    doc[0]["annotations"][0]["result"][0]["original_width"] = width
    p = tmp_path / "size.json"
    p.write_text(json.dumps(doc))
    b = load_labelstudio(p)
    hits = [q for q in b.problems if q.rule == "schema" and "original_width" in q.message]
    assert len(hits) == int(bad) and len(b.annotations) == int(not bad)
    if not bad:
        assert b.images.width[0] == 2**31 and b.annotations.bbox[0, 0] == pytest.approx(0.01 * 2**31)


def test_hostile_huge_strings_are_problems(tmp_path: Path) -> None:
    big = "x" * (8 << 20)
    doc = [
        {
            "id": 1,
            "data": {"image": big},
            "annotations": [
                {
                    "completed_by": 1,
                    "result": [
                        {
                            "type": "rectanglelabels",
                            "original_width": 10,
                            "original_height": 10,
                            "value": {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": [big]},
                        }
                    ],
                }
            ],
        }
    ]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(doc))
    b = load_labelstudio(p)
    assert b.images.file_name.tolist() == ["task-1"]
    assert len(b.annotations) == 0
    assert all(len(pr.message) < 1000 for pr in b.problems)
    assert {pr.rule for pr in b.problems} == {"schema"}


def test_size_limit_is_a_load_error(tmp_path: Path) -> None:
    p = VALID / "legacy_completions.json"
    with pytest.raises(LoadError, match="max_bytes"):
        load_labelstudio(p, max_bytes=100)


# -- brush masks ------------------------------------------------------------------------------
def _encode_brush(values: list[int], sizes: tuple[int, ...] = (3, 4, 8, 16)) -> list[int]:
    """rle-pack encoder (the inverse of the SDK's decode_rle), with repeat and literal runs."""
    bits: list[int] = []

    def w(v: int, n: int) -> None:
        bits.extend((v >> (n - 1 - k)) & 1 for k in range(n))

    def size_index(n: int) -> int:
        return next(k for k, s in enumerate(sizes) if n - 1 < (1 << s))

    w(len(values), 32)
    w(7, 5)
    for s in sizes:
        w(s - 1, 4)
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i] and j - i < (1 << sizes[-1]):
            j += 1
        if j - i > 1:
            k = size_index(j - i)
            w(1, 1), w(k, 2), w(j - i - 1, sizes[k]), w(values[i], 8)
        else:  # a literal run of up to 4 values
            j = min(i + 4, len(values))
            k = size_index(j - i)
            w(0, 1), w(k, 2), w(j - i - 1, sizes[k])
            for v in values[i:j]:
                w(v, 8)
        i = j
    bits += [0] * (-len(bits) % 8)
    return [int("".join(map(str, bits[b : b + 8])), 2) for b in range(0, len(bits), 8)]


def test_brush_roundtrip_and_coco_rle(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    h, w = 7, 11
    mask = np.zeros((h, w), bool)
    mask[2:5, 3:9] = True
    mask[6, 0] = True
    mask[rng.integers(0, h, 5), rng.integers(0, w, 5)] = True
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    rgba[~mask, 0] = rng.integers(0, 3, int((~mask).sum()))  # noise outside the alpha channel
    stream = _encode_brush(rgba.ravel().tolist())
    assert (decode_brush_rle(stream, width=w, height=h) == mask).all()
    doc = [
        {
            "id": 1,
            "data": {"image": "m.png"},
            "annotations": [
                {
                    "completed_by": 1,
                    "result": [
                        {
                            "id": "m",
                            "type": "brushlabels",
                            "original_width": w,
                            "original_height": h,
                            "value": {"format": "rle", "rle": stream, "brushlabels": ["blob"]},
                        }
                    ],
                }
            ],
        }
    ]
    p = tmp_path / "brush.json"
    p.write_text(json.dumps(doc))
    b = load_batch(p)
    assert b.annotations.seg_kind[0] == SEG_RLE
    rle = b.annotations.rle[0]
    assert (mask_utils.decode(mask_utils.frPyObjects(rle, h, w)).astype(bool) == mask).all()
    assert b.annotations.area[0] == mask.sum()
    ys, xs = np.nonzero(mask)
    assert b.annotations.bbox[0].tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.mark.parametrize(
    ("stream", "width", "why"),
    [
        ([], 2, "non-empty"),
        ([0, 0, 0, 16, 56], 2, "ends inside"),
        ([0, 0, 0, 17, 56, 0, 0], 2, "header says 17"),
        ([0, 0, 0, 16, 56, "x"], 2, "not a byte"),
        ([0, 0, 0, 16, 57, 34, 0x7F, 0xFF, 0xFF], 2, "past the image"),  # a repeat run of 2^16 values
        ([0, 0, 0, 16], 1 << 20, "outside 1.."),
    ],
)
def test_brush_decoder_bounds(stream: list[Any], width: int, why: str) -> None:
    from annogate.formats.labelstudio import BrushError

    with pytest.raises(BrushError, match=why):
        decode_brush_rle(stream, width=width, height=2 if width == 2 else 1 << 20)


@pytest.mark.slow
def test_hostile_100mb_image_reference(tmp_path: Path) -> None:
    p = tmp_path / "huge.json"
    p.write_text(json.dumps([{"id": 1, "data": {"image": "x" * (100 << 20)}, "annotations": [{"completed_by": 1}]}]))
    b = load_labelstudio(p)
    assert b.images.file_name.tolist() == ["task-1"]
    assert [pr.rule for pr in b.problems] == ["schema"] and len(b.problems[0].message) < 200
