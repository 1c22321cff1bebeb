"""The COCO reader: columns equal what the standard library parses, at any block size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import annogate.formats._jsonscan as jsonscan
from annogate.formats import LoadError, detect_format, load_batch
from annogate.model import SEG_NONE, SEG_POLYGON, SEG_RLE

DATA = Path(__file__).parent / "data"
VALID = sorted((DATA / "valid" / "coco").glob("*.json"))
UNREADABLE = sorted((DATA / "invalid" / "coco").glob("unreadable__*.json"))


def _expected_lines(path: Path, key: str) -> list[int]:
    """1-based line of each element's opening brace, found by a plain text walk."""
    lines = path.read_text().split("\n")
    start = next(i for i, t in enumerate(lines) if t.startswith(f' "{key}": ['))
    out = []
    for i in range(start + 1, len(lines)):
        if lines[i].startswith(" ]"):
            break
        if lines[i] == "  {" or (
            lines[i].startswith("  ") and not lines[i].startswith("   ") and lines[i].strip() not in ("}", "},")
        ):
            out.append(i + 1)
    return out


@pytest.mark.parametrize("block", [1, 3, 7, 64, 4096, 1 << 20])
@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_columns_match_stdlib_at_any_block_size(path: Path, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonscan, "_BLOCK", block)
    doc: dict[str, Any] = json.loads(path.read_text())
    b = load_batch(path)
    a = b.annotations
    anns = doc["annotations"]
    assert a.id.tolist() == [x["id"] for x in anns]
    assert b.images.file_name.tolist() == [x["file_name"] for x in doc["images"]]
    assert b.categories.name.tolist() == [x["name"] for x in doc["categories"]]
    for i, x in enumerate(anns):
        assert np.array_equal(a.bbox[i], np.array(x["bbox"], float))
        assert a.iscrowd[i] == bool(x["iscrowd"])
        seg = x.get("segmentation")
        if isinstance(seg, list):
            assert a.seg_kind[i] == SEG_POLYGON
            assert [r.tolist() for r in a.rings(i)] == seg
        elif isinstance(seg, dict):
            assert a.seg_kind[i] == SEG_RLE and a.rle[i] == seg
        else:
            assert a.seg_kind[i] == SEG_NONE
        kp = x.get("keypoints", [])
        assert a.keypoints_of(i).ravel().tolist() == kp
        img = next(k for k, im in enumerate(doc["images"]) if im["id"] == x["image_id"])
        assert a.image[i] == img
    if "\n" in path.read_text().strip() and anns:
        assert a.line.tolist() == _expected_lines(path, "annotations")
        assert b.images.line.tolist() == _expected_lines(path, "images")


def test_minified_file_has_no_line_but_exact_pointers(tmp_path: Path) -> None:
    """Line 1 for every element of a minified file is useless: no line, an exact pointer."""
    from annogate.engine import Engine

    b = load_batch(DATA / "valid" / "coco" / "minified.json")
    assert set(b.annotations.line.tolist()) == {0} and set(b.images.line.tolist()) == {0}
    assert b.pointer(2) == "/annotations/2"
    doc = json.loads((DATA / "invalid" / "coco" / "dangling_image_id__no_such_image.json").read_text())
    doc["annotations"][1]["bbox"][2] = "3"
    p = tmp_path / "min.json"
    p.write_text(json.dumps(doc, separators=(",", ":")))
    found = {(f.rule, f.pointer, f.line) for f in Engine().run_gate(p, "schema").findings}
    assert found == {("dangling_image_id", "/annotations/1", None), ("schema", "/annotations/1/bbox/2", None)}
    # one annotation per line: its line is exact again
    anns = ",\n".join(json.dumps(a) for a in doc["annotations"])
    rest = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in doc.items() if k != "annotations")
    p.write_text("{" + rest + ',"annotations":[\n' + anns + "\n]}")
    found = {(f.rule, f.line) for f in Engine().run_gate(p, "schema").findings}
    assert found == {("dangling_image_id", 3), ("schema", 3)}


def test_annotator_columns() -> None:
    b = load_batch(DATA / "valid" / "coco" / "annotators.json")
    assert [b.annotator_name(i) for i in range(3)] == ["bob", "alice", None]
    b2 = load_batch(DATA / "valid" / "coco" / "annotators.json", annotator_field="attributes.annotator")
    assert [b2.annotator_name(i) for i in range(3)] == ["bob", None, None]


@pytest.mark.parametrize("path", UNREADABLE, ids=[p.stem for p in UNREADABLE])
def test_unreadable_files_raise_with_line_and_column(path: Path) -> None:
    with pytest.raises(LoadError) as ei:
        load_batch(path)
    err = ei.value
    assert err.path == path and err.line is not None and err.column is not None
    text = path.read_text()
    assert 1 <= err.line <= text.count("\n") + 1
    try:
        json.loads(text)
    except json.JSONDecodeError as std:
        # where the standard library also rejects the text, both name the same line
        # (the stray-bracket case is found by the scanner a few bytes earlier)
        assert abs(std.lineno - err.line) <= 1, (std.lineno, err.line)
    else:  # NaN: Python's json accepts it, JSON (RFC 8259) does not
        assert "NaN" in text


def test_truncation_is_reported_at_end_of_file(tmp_path: Path) -> None:
    src = (DATA / "valid" / "coco" / "minimal.json").read_bytes()
    for cut in (1, 10, len(src) // 2, len(src) - 3):
        p = tmp_path / "t.json"
        p.write_bytes(src[:cut])
        with pytest.raises(LoadError):
            load_batch(p, format="coco")


def test_recognised_by_content(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "x", "dependencies": {"images": []}}')
    (tmp_path / "labels.json").write_text((DATA / "valid" / "coco" / "minimal.json").read_text())
    (tmp_path / "results.json").write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]')
    (tmp_path / "tasks.json").write_text('[{"image_id": 1, "category_id": 1, "data": {}}]')
    assert detect_format(tmp_path / "package.json") is None
    assert detect_format(tmp_path / "tasks.json") is None
    for name in ("labels.json", "results.json"):
        fmt = detect_format(tmp_path / name)
        assert fmt is not None and fmt.name == "coco"


def test_results_file_resolves_against_ground_truth(tmp_path: Path) -> None:
    gt = load_batch(DATA / "valid" / "coco" / "minimal.json")
    p = tmp_path / "res.json"
    p.write_text(
        json.dumps(
            [
                {"image_id": 2, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [5, 6, 7, 8], "score": 0.1},
            ]
        )
    )
    b = load_batch(p, format="coco", images_from=gt)
    assert b.annotations.image.tolist() == [1, 0]
    assert b.annotations.category.tolist() == [1, 0]
    assert b.annotations.score.tolist() == [0.9, 0.1]
    assert b.annotations.id.tolist() == [1, 2]  # as pycocotools' loadRes numbers them


def test_real_coco_val2014_counts(thirdparty: Path) -> None:
    """Real COCO val2014 (100 images, cocoapi/faster_coco_eval): 839 annotations, 9 crowd."""
    path = thirdparty / "faster_coco_eval/tests/dataset/cocoapi/instances_val2014_100.json"
    b = load_batch(path)
    a = b.annotations
    assert (len(b.images), len(a), len(b.categories)) == (100, 839, 80)
    assert int(a.iscrowd.sum()) == 9
    assert int((a.seg_kind == SEG_RLE).sum()) == 9
    assert int((a.seg_kind == SEG_POLYGON).sum()) == 830
    doc = json.loads(path.read_text())
    assert a.id.tolist() == [x["id"] for x in doc["annotations"]]
    xy = [v for x in doc["annotations"] if isinstance(x["segmentation"], list) for r in x["segmentation"] for v in r]
    assert np.array_equal(a.poly_xy, np.array(xy))


# -- walk-arounds: keys are compared decoded, wherever the value starts -----------------

_HIDING = {
    "600_spaces": ('"annotations":' + " " * 600 + "[", '"images":', '"categories":'),
    "newlines_before_colon": ('"annotations"' + "\n" * 300 + ":" + "\t" * 300 + "[", '"images":', '"categories":'),
    "escaped_key": ('"annot\\u0061tions":[', '"im\\u0061ges": ', '"c\\u0061tegories" :'),
}


def _hiding_text(variant: str) -> str:
    """A COCO file with two annotations whose keys are spelt to hide them from a naive reader."""
    ann_key, img_key, cat_key = _HIDING[variant]
    doc = json.loads((DATA / "valid" / "coco" / "minimal.json").read_text())
    anns = json.dumps(doc["annotations"])[1:]  # without its "["
    return (
        "{" + f"{img_key} {json.dumps(doc['images'])}, {cat_key} {json.dumps(doc['categories'])}, {ann_key}{anns}" + "}"
    )


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 20])
@pytest.mark.parametrize("variant", sorted(_HIDING))
def test_keys_spelt_any_way_are_read(tmp_path: Path, variant: str, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonscan, "_BLOCK", block)
    p = tmp_path / "b.json"
    p.write_text(_hiding_text(variant))
    expected = json.loads(p.read_text())
    b = load_batch(p)
    assert len(b.annotations) == len(expected["annotations"]) > 0
    assert len(b.images) == len(expected["images"]) and len(b.categories) == len(expected["categories"])
    assert b.annotations.id.tolist() == [a["id"] for a in expected["annotations"]]
    fmt = detect_format(p)
    assert fmt is not None and fmt.name == "coco"


def test_sniffing_reads_keys_as_the_reader_does() -> None:
    from annogate.formats._jsonscan import top_level_array_keys

    assert top_level_array_keys(b'{"a": {"images": []}, "annot\\u0061tions"  :\n\n [') == {"annotations"}
    assert top_level_array_keys(b'{"x": "\\"images\\": [", "y": 1}') == set()
    assert top_level_array_keys(b'{"annot ations": []}') == {"annot ations"}
    assert top_level_array_keys(b'["images"]') == set()


# -- COCO flavours ---------------------------------------------------------------------

FLAVOURS = DATA / "valid" / "coco_flavours"


@pytest.mark.parametrize("flavour", ["captions", "panoptic"])
def test_captions_and_panoptic_are_skipped_with_their_reason(flavour: str) -> None:
    from annogate.engine import Engine

    path = FLAVOURS / f"{flavour}.json"
    fmt = detect_format(path)
    assert fmt is not None and fmt.name == "coco"
    b = load_batch(path)
    assert b.skip_reason == f"COCO {flavour}: not an instance batch"
    assert len(b.annotations) == 0 and len(b.images) == 1 and b.problems == []
    # never failed with dangling category ids (the panoptic segment names class 999)
    assert Engine().run_gate(path, "schema").verdict != "failed"


def test_mixed_captions_and_instances_are_judged_as_instances(tmp_path: Path) -> None:
    """One caption element must not turn a defective instance batch into a skipped one."""
    doc = json.loads((DATA / "invalid" / "coco" / "dangling_image_id__no_such_image.json").read_text())
    doc["annotations"].insert(0, {"id": 1, "image_id": 1, "caption": "cover"})
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc, indent=1))
    b = load_batch(p)
    assert b.skip_reason is None and len(b.annotations) == len(doc["annotations"])


def test_results_list_is_a_batch_of_predictions(tmp_path: Path) -> None:
    from annogate.engine import Engine

    p = tmp_path / "res.json"
    p.write_text(
        json.dumps(
            [
                {"image_id": 2, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [5, 6, 7, "8"], "score": 0.1},
            ],
            indent=1,
        )
    )
    b = load_batch(p)
    assert b.predictions and b.skip_reason is None and len(b.annotations) == 2
    assert b.pointer(1) == "/1"
    found = {(f.rule, f.pointer) for f in Engine().run_gate(p, "schema").findings}
    # the only finding is the bad box: without its ground truth nothing dangles
    assert found == {("schema", "/1/bbox/3")}


def _many(n: int) -> dict[str, Any]:
    """``n`` annotations over several chunks mixing polygons, RLE, keypoints and boxes only."""
    anns: list[dict[str, Any]] = []
    for i in range(n):
        a: dict[str, Any] = {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [i, 1.5, 2, 3], "area": i * 0.5}
        if i % 97 == 5:
            a["segmentation"] = {"size": [4, 4], "counts": [0, 16]}
        elif i % 89 == 7:
            a["keypoints"] = [i, i + 0.25, 2, 1, 2, 0]
            a["num_keypoints"] = 1
        elif i % 3:
            a["segmentation"] = [[i + k * 0.5 for k in range(2 * (3 + i % 5))]] * (1 + i % 2)
        anns.append(a)
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
        "categories": [{"id": 1, "name": "c"}],
        "annotations": anns,
    }


def test_columns_grown_in_place_equal_a_plain_concatenation(tmp_path: Path) -> None:
    """The columns are grown chunk by chunk in one buffer (no final concatenate): the
    values, their order and dtypes equal a flat walk of the document across many chunks."""
    doc = _many(20000)
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc))
    ann = load_batch(p).annotations
    anns = doc["annotations"]
    xy = [v for a in anns if type(a.get("segmentation")) is list for r in a["segmentation"] for v in r]
    kp = [v for a in anns for v in a.get("keypoints", [])]
    assert ann.poly_xy.dtype == np.float64 and ann.poly_xy.tolist() == xy
    assert ann.keypoints.tolist() == kp
    assert ann.bbox.shape == (len(anns), 4) and ann.bbox.tolist() == [a["bbox"] for a in anns]
    assert ann.area.tolist() == [a["area"] for a in anns]
    assert ann.id.tolist() == list(range(1, len(anns) + 1)) and bool(ann.id_valid.all())
    assert [k for k in range(len(anns)) if ann.rle[k] is not None] == [
        k for k, a in enumerate(anns) if type(a.get("segmentation")) is dict
    ]
    assert ann.ring_offsets[-1] == len(xy) and ann.kp_offsets[-1] * 3 == len(kp)
    assert ann.seg_kind.tolist() == [
        SEG_RLE if type(a.get("segmentation")) is dict else SEG_POLYGON if "segmentation" in a else SEG_NONE
        for a in anns
    ]


def test_boolean_coordinate_beyond_the_sampled_elements_is_a_schema_problem(tmp_path: Path) -> None:
    """``true`` among a polygon's numbers is not a coordinate, even in an element the
    JSON Schema samples do not reach (NumPy would read it as 1.0)."""
    doc = _many(500)
    for a in doc["annotations"]:  # polygons only: the chunk takes the fast path
        a.pop("keypoints", None), a.pop("num_keypoints", None)
        a["segmentation"] = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]]
    doc["annotations"][400]["segmentation"] = [[1.5, True, 3.0, 4.0, 5.0, 6.0]]
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc, indent=1))
    problems = [pr for pr in load_batch(p).problems if pr.rule == "schema"]
    assert [pr.pointer for pr in problems] == ["/annotations/400/segmentation/0/1"]


def _sparse(p: Path, size: int) -> Path:
    with open(p, "wb") as f:
        f.write(b'{"images": [')
        f.truncate(size)
    return p


def test_file_over_the_size_cap_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sparse 8 GiB file over the cap: a LoadError naming its size, and not one block read."""
    p = _sparse(tmp_path / "b.json", 8 << 30)
    monkeypatch.setenv("ANNOGATE_MAX_BATCH_BYTES", str(1 << 20))
    reads: list[int] = []
    real_open = open

    def spy_open(*a: Any, **kw: Any) -> Any:
        f = real_open(*a, **kw)
        if Path(a[0]) == p and "b" in str(a[1] if len(a) > 1 else kw.get("mode", "")):
            orig = f.read
            f.read = lambda n=-1: reads.append(n) or orig(n)  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(jsonscan, "open", spy_open, raising=False)
    with pytest.raises(LoadError, match=r"8,589,934,592 bytes \(8\.0 GiB\) is over the limit of 1,048,576"):
        load_batch(p, format="coco")
    assert reads == []


def test_size_cap_setting_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "b.json"
    p.write_text('{"images": [], "annotations": [], "categories": []}')
    monkeypatch.setenv("ANNOGATE_MAX_BATCH_BYTES", "lots")
    with pytest.raises(LoadError, match="ANNOGATE_MAX_BATCH_BYTES='lots' is not a positive number"):
        load_batch(p, format="coco")
    monkeypatch.setenv("ANNOGATE_MAX_BATCH_BYTES", "10")
    with pytest.raises(LoadError, match="over the limit of 10 bytes"):
        load_batch(p, format="coco")


@pytest.mark.parametrize("block", [5, 1 << 20])
def test_zero_filled_file_under_the_cap_fails_at_its_first_nul(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse 8 GiB file under the cap is a syntax error at the first NUL (line 1, column 13),
    found in the first block: the file is never read on (it was read whole into memory)."""
    monkeypatch.setattr(jsonscan, "_BLOCK", block)
    p = _sparse(tmp_path / "b.json", 8 << 30)
    with pytest.raises(LoadError, match="control character 0x00") as e:
        load_batch(p, format="coco")
    assert (e.value.line, e.value.column) == (1, 13)


def test_tabs_and_crlf_are_whitespace_not_control_characters(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_bytes(
        b'{\r\n\t"images": [{"id": 1, "file_name": "a.jpg",\t"width": 4, "height": 4}],\r\n"annotations": []}'
    )
    assert len(load_batch(p, format="coco").images) == 1


def test_image_sides_beyond_the_pixel_limit_are_problems_and_unknown(tmp_path: Path) -> None:
    import json

    from annogate.formats.coco import load_coco

    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 2**40, "height": 480},
            {"id": 2, "file_name": "b.jpg", "width": 640, "height": 2**31},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "car"}],
    }
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc, indent=1))
    b = load_coco(p)
    probs = [x for x in b.problems if x.rule == "image_size"]
    assert [x.pointer for x in probs] == ["/images/0/width"]
    assert np.isnan(b.images.width[0]) and b.images.height[0] == 480
    assert b.images.height[1] == 2**31  # the limit itself is accepted
