"""CVAT XML 1.1 reader: values per shape, tracks, problems with exact lines, hostile XML, conformance."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annogate.formats import LoadError, detect_format, load_batch
from annogate.formats.cvat import (
    ELLIPSE_VERTICES,
    FORMAT,
    cvat_rle_to_coco,
    ellipse_polygon,
    load_cvat,
    looks_like_cvat,
    rotated_box_corners,
)
from annogate.model import SEG_POLYGON, SEG_RLE, Batch

DATA = Path(__file__).parent / "data"
VALID = DATA / "valid" / "cvat"
INVALID = DATA / "invalid" / "cvat"
THIRDPARTY = Path(__file__).resolve().parents[1].parent / "shared" / "thirdparty"


def _third(rel: str) -> Path:
    p = THIRDPARTY / rel
    if not p.exists():
        pytest.skip(f"third-party data not present: {p}")
    return p


def _line(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    return next(i for i, t in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in t)


def _row(b: Batch, shape: str) -> int:
    assert b.annotations.attributes is not None
    rows = [i for i, a in enumerate(b.annotations.attributes) if a and a.get("shape") == shape]
    assert len(rows) == 1, (shape, rows)
    return rows[0]


# -- values ---------------------------------------------------------------------------


def test_every_shape_kind() -> None:
    b = load_cvat(VALID / "all_shapes.xml")
    a = b.annotations
    assert b.format == "cvat" and b.problems == [] and len(b.sha256) == 64
    assert list(b.images.file_name) == ["a.jpg", "b.jpg"]
    assert list(b.categories.name) == ["car", "lane", "hand", "blob", "crate", "day"]
    assert len(a) == 8  # the <tag> is not an object
    assert b.annotators == ("alice",)  # the task's assignee, never its owner
    assert set(a.annotator.tolist()) == {0}
    assert a.attributes is not None and a.rotation is not None

    box = _row(b, "box")
    np.testing.assert_array_equal(a.bbox[box], [10, 20, 40, 20])
    assert a.rotation[box] == 30.0
    assert a.attributes[box] == {
        "shape": "box",
        "occluded": True,
        "z_order": 2,
        "source": "manual",
        "group_id": 4,
        "parked": True,
        "colour": "blue",
        "speed": 12.5,
        "plate": "007",
    }
    assert (
        a.line[box] == _line(VALID / "all_shapes.xml", '<box label="car"')
        and b.pointer(box) == "/annotations/image[1]/box[1]"
    )

    poly = _row(b, "polygon")
    assert a.seg_kind[poly] == SEG_POLYGON
    assert [r.tolist() for r in a.rings(poly)] == [[1, 1, 9, 1, 9, 9]]
    np.testing.assert_array_equal(a.bbox[poly], [1, 1, 8, 8])

    # polylines and points are keypoint-like: v = 1 when the shape is occluded
    line = _row(b, "polyline")
    assert a.keypoints_of(line).tolist() == [[0, 0, 1], [10, 10, 1], [20, 0, 1]]
    assert a.seg_kind[line] == 0 and a.rings(line) == []
    assert np.isnan(a.bbox[line]).all()  # no box: the gates read an all-nan box as absent
    pts = _row(b, "points")
    assert b.category_name(pts) is None  # unlabelled shape
    assert a.keypoints_of(pts).tolist() == [[5, 6, 2]]
    assert np.isnan(a.bbox[pts]).all()  # a single point would otherwise be a zero-size box

    # ellipse: a polygon, axis-aligned extent, rotation inside the polygon
    ell = _row(b, "ellipse")
    assert a.attributes[ell]["ellipse"] == (50.0, 40.0, 20.0, 10.0, 90.0)
    (ring,) = a.rings(ell)
    assert ring.size == 2 * ELLIPSE_VERTICES
    np.testing.assert_allclose(a.bbox[ell], [40, 20, 20, 40], atol=1e-9)  # rotated 90: 20 wide, 40 high
    assert a.rotation[ell] == 0.0

    cub = _row(b, "cuboid")
    assert a.keypoints_of(cub).shape == (8, 3)
    np.testing.assert_array_equal(a.bbox[cub], [1, 0, 3, 3])

    assert b.meta["tags"] == [
        {
            "image": "a.jpg",
            "label": "day",
            "line": _line(VALID / "all_shapes.xml", "<tag "),
            "attributes": {"shape": "tag", "occluded": False, "source": "manual"},
        }
    ]


def test_skeleton_nodes_in_declared_order_with_svg_edges() -> None:
    b = load_cvat(VALID / "all_shapes.xml")
    hand = list(b.categories.name).index("hand")
    assert b.categories.keypoints[hand] == ("wrist", "knuckle", "tip")
    assert b.categories.skeleton[hand] == ((0, 1), (1, 2))
    sk = _row(b, "skeleton")
    # XML order is tip, wrist, knuckle; wrist is outside -> (0, 0, 0); tip occluded -> v = 1
    assert b.annotations.keypoints_of(sk).tolist() == [[0, 0, 0], [20, 21, 2], [30, 31, 1]]
    assert b.annotations.num_keypoints[sk] == 2
    np.testing.assert_array_equal(b.annotations.bbox[sk], [20, 21, 10, 10])


def test_mask_rle_becomes_a_coco_rle_pycocotools_agrees() -> None:
    b = load_cvat(VALID / "all_shapes.xml")
    m = _row(b, "mask")
    a = b.annotations
    assert a.seg_kind[m] == SEG_RLE
    rle = a.rle[m]
    assert rle["size"] == [4, 6]
    # the 2x3 patch at (2, 1), row-major "1,2,2,1": rows [0 1] [1 0] [0 1]
    expected = np.zeros((4, 6), np.uint8)
    expected[1, 3] = expected[2, 2] = expected[3, 3] = 1
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 4, 6))
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(a.bbox[m], [2, 1, 2, 3])
    assert a.area[m] == 3.0


@pytest.mark.parametrize("seed", range(20))
def test_rle_conversion_against_pycocotools(seed: int) -> None:
    """Random patches, including ones spanning the full image height (runs merge across columns)."""
    rng = np.random.default_rng(seed)
    ih, iw = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    h = ih if seed % 3 == 0 else int(rng.integers(1, ih + 1))
    w = int(rng.integers(1, iw + 1))
    top, left = int(rng.integers(0, ih - h + 1)), int(rng.integers(0, iw - w + 1))
    patch = (rng.random((h, w)) < [0.0, 0.5, 1.0][seed % 3 if seed > 2 else 1]).astype(np.uint8)
    flat = patch.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0, *runs]
    rle, bbox, pixels = cvat_rle_to_coco(runs, left=left, top=top, width=w, height=h, image_width=iw, image_height=ih)
    full = np.zeros((ih, iw), np.uint8)
    full[top : top + h, left : left + w] = patch
    np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, ih, iw)), full)
    assert pixels == int(full.sum()) == int(mask_utils.area(mask_utils.frPyObjects(rle, ih, iw)))
    if pixels:
        np.testing.assert_array_equal(bbox, mask_utils.toBbox(mask_utils.frPyObjects(rle, ih, iw)))


def test_rotated_box_corners_match_dagshub_published_values() -> None:
    """DagsHub's conversion test (README): CVAT rotates clockwise (y down) about the centre."""
    cases = [
        ((122, 124, 495, 290, 45), (235, 16), (373, 166)),
        ((469, 338, 594, 393, 345), (464, 355), (125, 55)),
        ((100, 200, 300, 400, 0), (100, 200), (200, 200)),
    ]
    for (xtl, ytl, xbr, ybr, rot), corner, size in cases:
        c = rotated_box_corners(xtl, ytl, xbr - xtl, ybr - ytl, rot)
        np.testing.assert_allclose(c[0], corner, atol=1.0)
        assert (xbr - xtl, ybr - ytl) == size
        # the corners keep the box's sides
        assert math.dist(c[0], c[1]) == pytest.approx(size[0]) and math.dist(c[1], c[2]) == pytest.approx(size[1])


def test_ellipse_polygon_area_and_rotation() -> None:
    ring = np.asarray(ellipse_polygon(0, 0, 4, 2, 90)).reshape(-1, 2)
    x, y = ring[:, 0], ring[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert area == pytest.approx(math.pi * 8, rel=2e-3)
    assert x.max() == pytest.approx(2) and y.max() == pytest.approx(4)  # major axis now vertical


def test_video_tracks_outside_frames_and_skeleton_tracks() -> None:
    b = load_cvat(VALID / "video.xml")
    assert b.problems == []
    # frames 4, 6, 8 (step 2 over 4..9), named like datumaro, sized by original_size
    assert list(b.images.file_name) == ["frame_000004", "frame_000006", "frame_000008"]
    assert set(b.images.width) == {64} and set(b.images.height) == {48}
    a = b.annotations
    assert a.attributes is not None
    rows = [(b.image_name(i), b.category_name(i), a.attributes[i]["shape"]) for i in range(len(a))]
    assert rows == [
        ("frame_000004", "car", "box"),
        ("frame_000008", "car", "box"),  # frame 6 is outside: an absent object
        ("frame_000004", "pair", "skeleton"),
        ("frame_000006", "pair", "skeleton"),  # frame 8 skeleton is outside
    ]
    np.testing.assert_array_equal(a.bbox[1], [3, 2, 10, 10])
    assert a.attributes[0] == {
        "shape": "box",
        "occluded": False,
        "z_order": 0,
        "track_id": 0,
        "keyframe": True,
        "source": "manual",
        "group_id": 2,
    }
    assert a.attributes[1]["occluded"] is True
    # nodes in declared order l, r: r occluded at 4, outside from 6; l ended... kept from its keyframe at 4
    assert a.keypoints_of(2).tolist() == [[1, 1, 2], [5, 5, 1]]
    assert a.keypoints_of(3).tolist() == [[1, 1, 2], [0, 0, 0]]
    pair = list(b.categories.name).index("pair")
    assert b.categories.skeleton[pair] == ((1, 0),)
    assert b.annotators == ("bob",) and b.pointer(1) == "/annotations/track[1]/box[3]"


def test_project_export_subsets_and_annotators_per_task() -> None:
    b = load_cvat(VALID / "project_subsets.xml")
    assert b.problems == []
    assert list(b.images.file_name) == ["Train/x.jpg", "Test/x.jpg", "y.jpg"]
    assert [b.annotator_name(i) for i in range(len(b.annotations))] == ["ann", "ben"]


# -- detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head,claimed",
    [
        (b'<?xml version="1.0"?>\n<annotations>\n  <version>1.1</version>', True),
        (b"\xef\xbb\xbf<annotations><meta>", True),
        (b"<!-- exported -->\n<annotations>\n<version>1.1</version>", True),
        (b'<!DOCTYPE a [<!ENTITY x "y">]>\n<annotations><version>1.1</version>', True),  # refused on load
        ('<?xml version="1.0" encoding="utf-16"?><annotations><meta>'.encode("utf-16"), True),
        (b"<annotation><folder>VOC</folder>", False),  # Pascal VOC
        (b"<annotations><image/></annotations>", False),  # no version, no meta
        (b'{"annotations": []}', False),
    ],
)
def test_sniff(head: bytes, claimed: bool) -> None:
    assert looks_like_cvat(Path("x.xml"), head) is claimed


def test_registered_and_detected_by_content() -> None:
    f = VALID / "all_shapes.xml"
    assert FORMAT.name == "cvat" and FORMAT.suffixes == (".xml",) and not FORMAT.folder
    fmt = detect_format(f)
    assert fmt is not None and fmt.name == "cvat"
    assert load_batch(f).format == "cvat"


# -- problems -------------------------------------------------------------------------

_PROBLEM_FILES = sorted(p for p in INVALID.glob("*.xml"))


@pytest.mark.parametrize("path", _PROBLEM_FILES, ids=[p.stem for p in _PROBLEM_FILES])
def test_problem_fixture_names_rule_and_line(path: Path) -> None:
    """``<rule>__<what>.xml``: the rule is reported at the line marked ``<!-- here -->``."""
    rule = path.stem.split("__")[0]
    text = path.read_text("utf-8").splitlines()
    line = next(i for i, t in enumerate(text, 1) if "<!-- here -->" in t)
    b = load_cvat(path)
    got = [(p.rule, p.line) for p in b.problems]
    assert (rule, line) in got, got
    assert all(p.line for p in b.problems), "every problem names its line"
    # no drawn object is hidden: every shape element is still an object (or, when it is
    # somewhere CVAT never puts shapes, reported as unknown_element above)
    if rule == "unknown_element":
        return
    n_shapes = sum(len(re.findall(rf"<{t}\b", "\n".join(text))) for t in ("box", "polygon", "mask", "skeleton"))
    assert len(b.annotations) == n_shapes - (1 if rule == "duplicate_frame" else 0)


@pytest.mark.parametrize("value", ["nan", "inf", "-1e400", "ninety"])
def test_non_finite_rotation_is_a_problem_and_reads_as_zero(value: str, tmp_path: Path) -> None:
    text = (VALID / "all_shapes.xml").read_text("utf-8").replace('rotation="30"', f'rotation="{value}"')
    p = tmp_path / "rot.xml"
    p.write_text(text, "utf-8")
    b = load_cvat(p)
    box = _row(b, "box")
    assert [(q.rule, q.line) for q in b.problems] == [("bad_number", int(b.annotations.line[box]))]
    assert b.annotations.rotation is None or b.annotations.rotation[box] == 0.0
    np.testing.assert_array_equal(b.annotations.bbox[box], [10, 20, 40, 20])


@pytest.mark.parametrize(
    ("width", "height", "bad"),
    [
        (str(2**70), "-80", ("width", "height")),
        ("nan", "80", ("width",)),
        ("100", "inf", ("height",)),
        ("0", "1e308", ("width", "height")),
        (str(2**31 + 1), str(2**31), ("width",)),
    ],
)
def test_absurd_image_size_is_a_problem_and_unknown(
    width: str, height: str, bad: tuple[str, ...], tmp_path: Path
) -> None:
    """A width/height outside (0, 2**31] is an ``image_size`` problem naming the attribute and line; the size is unknown."""
    text = (VALID / "all_shapes.xml").read_text("utf-8")
    line = _line(VALID / "all_shapes.xml", 'name="a.jpg"')
    head = re.search(r'<image [^>]*name="a.jpg"[^>]*>', text)
    assert head is not None
    new = re.sub(r'width="[^"]*"', f'width="{width}"', head.group(0))
    new = re.sub(r'height="[^"]*"', f'height="{height}"', new)
    p = tmp_path / "size.xml"
    p.write_text(text.replace(head.group(0), new), "utf-8")
    b = load_cvat(p)
    got = [(q.rule, q.line, q.image) for q in b.problems]
    assert got == [("image_size", line, "a.jpg")] * len(bad)
    assert [m.message.split("=")[0] for m in b.problems] == [f"<image> {k}" for k in bad]
    i = list(b.images.file_name).index("a.jpg")
    for k in bad:
        assert math.isnan(getattr(b.images, k)[i])
    assert len(b.annotations) == 8  # no object hidden


@pytest.mark.parametrize("value", ["-5", "0", "nan", str(2**40), "wide"])
def test_absurd_task_original_size_is_a_problem(value: str, tmp_path: Path) -> None:
    """A video's ``<original_size>`` gives every frame its size: a bad one is reported, never used."""
    text = (VALID / "video.xml").read_text("utf-8")
    m = re.search(r"<original_size>\s*<width>([^<]*)</width>", text)
    assert m is not None
    p = tmp_path / "video.xml"
    p.write_text(text[: m.start(1)] + value + text[m.end(1) :], "utf-8")
    b = load_cvat(p)
    probs = [q for q in b.problems if q.rule == "image_size"]
    assert len(probs) == 1 and "<original_size><width>" in probs[0].message
    assert probs[0].line == text[: m.start(1)].count("\n") + 1
    assert np.isnan(b.images.width).all()


def test_bad_number_is_nan_not_dropped() -> None:
    b = load_cvat(INVALID / "bad_number__xtl_text.xml")
    assert len(b.annotations) == 1
    assert math.isnan(b.annotations.bbox[0, 0]) and math.isnan(b.annotations.bbox[0, 2])
    assert b.annotations.bbox[0, 1] == 1.0


def test_undeclared_label_reported_once_and_kept() -> None:
    b = load_cvat(_third("dagshub-annotation-converter/tests/cvat/res/pose_grouping.xml"))
    undeclared = [(p.category, p.line) for p in b.problems if p.rule == "undeclared_label"]
    assert undeclared == [("Pointy_1", 103), ("Pointy_2", 107), ("Pointy_3", 113), ("Pointy_misc", 127)]
    assert {p.rule for p in b.problems} == {"undeclared_label"}
    a = b.annotations
    assert a.attributes is not None
    groups: dict[int | None, list[str]] = defaultdict(list)
    for i in range(len(a)):
        groups[a.attributes[i].get("group_id")].append(f"{b.category_name(i)}:{a.attributes[i]['shape']}")
    assert groups == {
        1: ["Pointy_1:box", "Pointy_1:points"],
        2: ["Pointy_2:points", "Pointy_2:box", "Pointy_2:box"],
        3: ["Pointy_3:skeleton", "Pointy_3:box"],
        None: ["Pointy_misc:box", "Pointy_misc:skeleton", "Pointy_misc:points"],
    }
    # an undeclared skeleton takes its first instance's node order
    p3 = list(b.categories.name).index("Pointy_3")
    assert b.categories.keypoints[p3] == ("1", "2", "3", "4", "5")


# -- unreadable and hostile XML --------------------------------------------------------

_UNREADABLE = sorted((INVALID / "unreadable").glob("*.xml"))


@pytest.mark.parametrize("path", _UNREADABLE, ids=[p.stem for p in _UNREADABLE])
def test_unreadable_is_a_load_error_with_rule(path: Path) -> None:
    rule = path.stem.split("__")[0]
    with pytest.raises(LoadError) as e:
        load_cvat(path)
    assert e.value.path == path
    assert rule == "not_cvat" or f"[{rule}]" in str(e.value), str(e.value)
    if rule != "not_cvat":
        assert looks_like_cvat(path, path.read_bytes()), "claimed, so that it fails with its reason"


def _write_big_attribute(path: Path, size: int = 100 << 20) -> None:
    with open(path, "wb") as fh:
        fh.write(b'<annotations><version>1.1</version><meta/><image id="0" name="')
        block = b"a" * (1 << 20)
        for _ in range(size // len(block)):
            fh.write(block)
        fh.write(b'" width="1" height="1"/></annotations>')


@pytest.mark.slow
def test_100MB_attribute_is_a_clean_limit_failure(tmp_path: Path) -> None:
    p = tmp_path / "big.xml"
    _write_big_attribute(p)
    with pytest.raises(LoadError, match=r"\[limit\]"):
        load_cvat(p)


def test_deep_nesting_is_a_clean_limit_failure(tmp_path: Path) -> None:
    p = tmp_path / "deep.xml"
    p.write_bytes(
        b"<annotations><version>1.1</version><meta/>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</annotations>"
    )
    with pytest.raises(LoadError, match=r"\[limit\]"):
        load_cvat(p)


def test_hostile_files_fail_through_load_batch(tmp_path: Path) -> None:
    """The engine's entry point turns each into a LoadError, never another exception."""
    for p in _UNREADABLE:
        if p.stem.startswith("not_cvat"):
            continue
        with pytest.raises(LoadError):
            load_batch(p, format="cvat")


# -- conformance (third-party files, skipped when absent) ------------------------------


def test_datumaro_cvat_for_images_published_values() -> None:
    b = load_cvat(_third("cvat-ai-datumaro/tests/assets/cvat_dataset/for_images/train.xml"))
    a = b.annotations
    assert a.attributes is not None
    assert b.problems == []
    box = 0
    assert b.image_name(box) == "img0.jpg" and b.category_name(box) == "label1"
    np.testing.assert_array_equal(a.bbox[box], [0, 2, 4, 2])
    attrs = a.attributes[box]
    assert attrs["z_order"] == 1 and attrs["occluded"] is True
    assert attrs["a1"] is True and attrs["a2"] == "v3" and attrs["a3"] == "0003" and attrs["a4"] == 2.4
    assert b.category_name(1) is None and a.keypoints_of(1)[:, :2].ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert a.keypoints_of(2).tolist() == [[0, 0, 0], [2, 2, 2], [3, 3, 2], [4, 4, 2]]  # node 1 outside
    assert b.category_name(3) is None and [r.tolist() for r in a.rings(3)] == [[1, 2, 3, 4, 6, 5]]
    assert a.attributes[3]["z_order"] == 1
    assert b.category_name(4) == "label2" and a.keypoints_of(4)[:, :2].ravel().tolist() == [1, 2, 3, 4, 5, 6]
    assert a.attributes[4]["z_order"] == 2
    assert a.keypoints_of(5).tolist() == [[3, 3, 2], [4, 4, 2], [0, 0, 0], [6, 6, 2]]  # node 3 outside
    sk = list(b.categories.name).index("skeleton")
    assert b.categories.skeleton[sk] == ((2, 1), (0, 3))
    assert b.categories.keypoints[sk] == ("1", "2", "3", "4")


def test_datumaro_cvat_for_video_published_values() -> None:
    b = load_cvat(_third("cvat-ai-datumaro/tests/assets/cvat_dataset/for_video/annotations.xml"))
    a = b.annotations
    assert a.attributes is not None and b.problems == []
    assert set(b.images.width) == {25} and set(b.images.height) == {20}
    by_frame: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for i in range(len(a)):
        by_frame[str(b.image_name(i))].append((b.category_name(i), a.attributes[i]["shape"]))
    assert dict(by_frame) == {
        "frame_000010": [("II", "box"), ("klhg", "points"), ("skeleton", "skeleton")],
        "frame_000013": [("II", "polyline"), ("skeleton", "skeleton")],  # box and points outside
        "frame_000016": [("skeleton", "skeleton")],  # box and polyline outside
    }
    np.testing.assert_array_equal(a.bbox[0], [3, 4, 7, 1])
    assert a.attributes[0]["occluded"] is True
    np.testing.assert_allclose(a.keypoints_of(1)[:, :2].ravel(), [21.95, 8.00, 2.55, 15.09, 2.23, 3.16])
    assert a.attributes[1]["hgl"] == "hgkf"
    line = next(i for i in range(len(a)) if a.attributes[i]["shape"] == "polyline")
    np.testing.assert_allclose(a.keypoints_of(line)[:, :2].ravel(), [7.85, 13.88, 3.50, 6.67, 15.90, 2.00, 13.31, 7.21])
    skel = [i for i in range(len(a)) if a.attributes[i]["shape"] == "skeleton"]
    assert [int((a.keypoints_of(i)[:, 2] > 0).sum()) for i in skel] == [4, 3, 3]  # node 3 outside from frame 13


def test_dagshub_shape_order_and_skeleton_node_order() -> None:
    b = load_cvat(_third("dagshub-annotation-converter/tests/fs_import/cvat/annotations.xml"))
    a = b.annotations
    assert a.attributes is not None and b.problems == []
    per_image: dict[str, list[str]] = defaultdict(list)
    for i in range(len(a)):
        per_image[str(b.image_name(i))].append(a.attributes[i]["shape"])
    assert list(b.images.file_name) == ["001.png", "002.png", "003.png", "004.png"]
    assert dict(per_image) == {
        "001.png": ["box"],
        "002.png": ["polygon", "box", "polygon", "polygon", "box", "polygon"],
        "003.png": ["box", "points"],
        "004.png": ["skeleton"],
    }
    assert a.attributes[1]["z_order"] == -1
    np.testing.assert_allclose(
        a.keypoints_of(len(a) - 1)[:, :2],
        [
            [797.51, 449.77],
            [969.80, 406.69],
            [349.30, 450.10],
            [1249.72, 310.54],
            [908.36, 455.94],
            [846.27, 520.51],
            [966.08, 497.59],
        ],
    )
    assert b.annotators == ()  # <assignee> is empty; the owner is not an annotator


def test_review_object_detection_metrics_cvat_matches_coco_within_1px() -> None:
    gts = _third("review_object_detection_metrics/data/database/gts")
    b = load_cvat(gts / "cvat_format" / "annotations.xml")
    assert b.problems == [] and len(b.images) == 100
    coco = json.loads((gts / "coco_format_v1" / "instances_default.json").read_text("utf-8"))
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    classes = {c["id"]: c["name"] for c in coco["categories"]}
    want: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for ann in coco["annotations"]:
        want[(names[ann["image_id"]], classes[ann["category_id"]])].append(ann["bbox"])
    got: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for i in range(len(b.annotations)):
        got[(str(b.image_name(i)), str(b.category_name(i)))].append(b.annotations.bbox[i].tolist())
    assert set(got) == set(want)
    for key, boxes in want.items():
        g = np.array(sorted(got[key]))
        w = np.array(sorted(boxes))
        assert g.shape == w.shape, key
        np.testing.assert_allclose(g, w, atol=1.0, err_msg=str(key))
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in coco["images"]}
    for k, n in enumerate(b.images.file_name):
        assert (b.images.width[k], b.images.height[k]) == sizes[str(n)]


@pytest.mark.parametrize(
    "rel",
    [
        "for_images/export_task/train.xml",
        "for_images/export_project/annotations.xml",
        "for_video/annotations.xml",
    ],
)
def test_openvinotoolkit_datumaro_cvat_fixtures_load(rel: str) -> None:
    b = load_cvat(_third(f"datumaro/tests/assets/cvat_dataset/{rel}"))
    assert b.problems == [] and len(b.annotations) > 0
    if "export_project" in rel:
        # img0.jpg in three subsets stays three images
        assert sorted(b.images.file_name) == sorted(
            f"{s}/{n}" for s in ("Test", "Train", "Validation") for n in ("img0.jpg", "img1.jpg")
        )
        assert b.annotators == ()


# -- attacker: every attribute value replaced by something nasty ------------------------

_NASTY = ("", "nan", "-1", "1e400", "9" * 30, "x", "1,2;3", "-0", "0x10", "99999999999999999999,1")


@pytest.mark.parametrize("name", ["all_shapes.xml", "video.xml"])
def test_no_attribute_value_crashes_the_reader(name: str, tmp_path: Path) -> None:
    """Each XML attribute value in turn replaced by each nasty value: a Batch, never an exception."""
    text = (VALID / name).read_text("utf-8")
    body = text.index("<annotations>")
    spans = [m.span(1) for m in re.finditer(r'\s[\w-]+="([^"]*)"', text) if m.start() > body]
    assert len(spans) > 50
    p = tmp_path / name
    for k, (s0, s1) in enumerate(spans):
        for bad in (_NASTY[k % len(_NASTY)], _NASTY[(k * 7 + 3) % len(_NASTY)]):
            p.write_text(text[:s0] + bad + text[s1:], "utf-8")
            b = load_cvat(p)
            assert isinstance(b, Batch)


@pytest.mark.parametrize(
    "head",
    [
        b"<!--" * 250_000,  # an unterminated comment run
        b"<!DOCTYPE a [" + b"]" * 1_000_000,  # brackets never followed by ">"
        b" " * 1_000_000 + b"<annotations",
    ],
)
def test_sniff_is_linear_on_adversarial_heads(head: bytes) -> None:
    assert looks_like_cvat(Path("x.xml"), head) is False


def _geometry_rules(path: Path) -> list[tuple[str, int | None]]:
    from annogate.checks.geometry import run
    from annogate.gates import GateContext

    b = load_cvat(path)
    res = run(b, GateContext(section={}, rules={}, base_dir=path.parent, load=load_batch))
    return sorted((f.rule, f.line) for f in res.findings)


def test_clean_shapes_raise_no_geometry_finding() -> None:
    """The mapping itself creates no defect: every shape of the fixture is well inside its image."""
    assert _geometry_rules(VALID / "all_shapes.xml") == []
    assert _geometry_rules(VALID / "video.xml") == []


def test_one_visible_skeleton_node_has_no_box(tmp_path: Path) -> None:
    text = (
        (VALID / "all_shapes.xml")
        .read_text("utf-8")
        .replace('points label="tip" occluded="1"', 'points label="tip" outside="1"')
    )
    p = tmp_path / "one_node.xml"
    p.write_text(text, "utf-8")
    b = load_cvat(p)
    sk = _row(b, "skeleton")
    assert b.annotations.keypoints_of(sk).tolist() == [[0, 0, 0], [20, 21, 2], [0, 0, 0]]
    assert np.isnan(b.annotations.bbox[sk]).all()
    assert _geometry_rules(p) == []
