"""The geometry gate, driven by data files and checked against independent computations.

* ``tests/data/invalid/geometry/<error_type>.json``: must produce exactly the findings
  listed in its ``info.annogate_expect`` (rule, annotation id, measured value; values
  worked out by hand from the geometry, see each file's ``info.description``).
* ``tests/data/valid/geometry/<name>.json``: near misses that must produce nothing.
* Real exports (COCO val2014 sample, Datumaro's COCO fixtures): what the gate reports
  must equal what a slow, straightforward re-implementation (shapely and pycocotools
  one object at a time, :func:`_reference_findings`) finds.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from shapely.geometry import MultiPoint, Polygon

from annogate.checks.geometry import DEFAULTS, GATE, RULES, RULES_SCHEMA, _rle_string_counts, run
from annogate.findings import GateResult
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch

DATA = Path(__file__).resolve().parent / "data"
INVALID = sorted((DATA / "invalid" / "geometry").glob("*.json"))
VALID = sorted((DATA / "valid" / "geometry").glob("*.json"))
VAL2014 = "faster_coco_eval/tests/dataset/cocoapi/instances_val2014_100.json"
DATUMARO = "datumaro/tests/assets/coco_dataset"

# JSON cannot carry NaN or Infinity, and the COCO reader reads a bbox holding a null as
# absent (the schema gate reports the null): box_nonfinite is tested on the model.
NOT_FROM_JSON = {"box_nonfinite"}


def _gate(batch: Batch, section: Mapping[str, Any] | None = None) -> GateResult:
    ctx = GateContext(section=dict(section or {}), rules={}, base_dir=batch.path.parent, load=load_batch)
    return run(batch, ctx)


def _gate_file(path: Path, section: Mapping[str, Any] | None = None) -> GateResult:
    return _gate(load_batch(path), section)


def _info(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(path.read_text())["info"]
    return info


# --------------------------------------------------------------------------- data files


def test_gate_definition() -> None:
    assert GATE.name == "geometry" and GATE.order == 20 and GATE.run is run
    assert GATE.rules_schema is RULES_SCHEMA
    jsonschema.Draft202012Validator.check_schema(RULES_SCHEMA)
    jsonschema.validate(
        {**DEFAULTS, "thresholds": {"default": {"max_count": 0}, "box_tiny": {"severity": "warning"}}}, RULES_SCHEMA
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"border_tolerance": 1, "bordr_tolerance": 2}, RULES_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"duplicate_iou": 0}, RULES_SCHEMA)
    assert set(DEFAULTS) | {"thresholds"} == set(RULES_SCHEMA["properties"])


def test_every_error_type_has_an_invalid_file() -> None:
    stems = {p.stem for p in INVALID}
    assert stems <= set(RULES), stems - set(RULES)
    assert set(RULES) - NOT_FROM_JSON == stems
    assert len(VALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_file_fails_with_exactly_its_findings(path: Path) -> None:
    info = _info(path)
    result = _gate_file(path, info.get("annogate_section"))
    got = sorted((f.rule, f.annotation_id) for f in result.findings)
    want = sorted((e["rule"], e["id"]) for e in info["annogate_expect"])
    assert got == want
    assert path.stem in {r for r, _ in got}
    assert result.verdict == "failed"
    assert result.metrics["findings_by_type"][path.stem] == sum(1 for r, _ in want if r == path.stem)

    doc = json.loads(path.read_text())
    by_id = {a["id"]: a for a in doc["annotations"]}
    image_names = {im["id"]: im["file_name"] for im in doc["images"]}
    lines = path.read_text().splitlines()
    expected_value = {(e["rule"], e["id"]): e["value"] for e in info["annogate_expect"]}
    for f in result.findings:
        assert f.gate == "geometry" and f.severity == "error"
        assert f.image == image_names[by_id[f.annotation_id]["image_id"]]
        assert f.file.endswith(path.name)
        # the reported line opens the annotation: the next "id" key is its id
        assert f.line is not None and lines[f.line - 1].strip() == "{"
        id_line = next(s for s in lines[f.line :] if s.strip().startswith('"id"'))
        assert id_line.strip().rstrip(",") == f'"id": {f.annotation_id}'
        want_v = expected_value[(f.rule, f.annotation_id)]
        if want_v is None:
            assert f.value is None
        else:
            assert f.value == pytest.approx(want_v, rel=1e-4)
            assert f.message  # the measured value is in the message
            assert any(s in f.message for s in (f"{abs(want_v):g}", f"{want_v:+.1%}", f"{want_v:.3f}")), f.message


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_near_miss_passes(path: Path) -> None:
    info = _info(path)
    result = _gate_file(path, info.get("annogate_section"))
    assert [(f.rule, f.annotation_id, f.message) for f in result.findings] == []
    assert result.verdict == "passed"
    assert result.population == len(json.loads(path.read_text())["annotations"])


def test_invalid_ring_reason_names_the_defect() -> None:
    result = _gate_file(DATA / "invalid" / "geometry" / "polygon_invalid.json")
    msgs = {f.annotation_id: f.message for f in result.findings}
    assert "Self-intersection[20 20]" in msgs[1]  # the bow-tie crosses at its centre
    assert msgs[2].startswith("ring 2 of 2") and "Ring Self-intersection[50 0]" in msgs[2]


def test_box_nonfinite_on_the_model() -> None:
    batch = load_batch(DATA / "valid" / "geometry" / "box_on_border.json")
    ann = batch.annotations
    bbox = ann.bbox.copy()
    bbox[1] = [10.0, 10.0, np.nan, 20.0]
    bbox[2] = [np.inf, 0.0, 10.0, 10.0]
    bbox[3] = np.nan  # absent, not a defect
    patched = dataclasses.replace(
        batch, annotations=dataclasses.replace(ann, bbox=bbox, area=np.full(len(ann), np.nan))
    )
    result = _gate(patched)
    assert sorted((f.rule, f.annotation_id) for f in result.findings) == [
        ("box_nonfinite", int(ann.id[1])),
        ("box_nonfinite", int(ann.id[2])),
    ]


def test_thresholds_and_warnings() -> None:
    path = DATA / "invalid" / "geometry" / "box_tiny.json"
    section = dict(_info(path)["annogate_section"])
    warn = _gate_file(path, {**section, "thresholds": {"box_tiny": {"severity": "warning"}}})
    assert warn.verdict == "passed" and len(warn.findings) == 2
    assert {f.severity for f in warn.findings} == {"warning"}
    allowed = _gate_file(path, {**section, "thresholds": {"box_tiny": {"max_count": 2}}})
    assert allowed.verdict == "passed"
    rate = _gate_file(path, {**section, "thresholds": {"box_tiny": {"max_rate": 0.4}}})
    assert rate.verdict == "failed"  # 2 of 4 annotations = 0.5
    per_class = _gate_file(
        path, {**section, "thresholds": {"box_tiny": {"max_count": 5, "per_class": {"car": {"max_count": 0}}}}}
    )
    assert per_class.verdict == "failed"
    assert [c.scope for c in per_class.failed_checks] == ["class:car"]


def test_tolerances_are_configurable() -> None:
    path = DATA / "valid" / "geometry" / "box_on_border.json"
    assert _gate_file(path).verdict == "passed"
    strict = _gate_file(path, {"border_tolerance": 0.5})
    assert sorted(f.annotation_id for f in strict.findings if f.rule == "box_outside_image") == [3, 4]
    dup = _gate_file(DATA / "valid" / "geometry" / "not_duplicate.json", {"duplicate_iou": 0.9})
    assert [(f.rule, f.annotation_id) for f in dup.findings] == [("duplicate_object", 2)]
    area = _gate_file(DATA / "valid" / "geometry" / "area_within_tolerance.json", {"area_tolerance": 0.05})
    assert [(f.rule, f.annotation_id) for f in area.findings] == [("area_mismatch", 1)]


# --------------------------------------------------------------------------- properties


@st.composite
def _clean_batch(draw: st.DrawFn) -> dict[str, Any]:
    """A COCO batch of finite boxes and convex polygons well inside their image."""
    w = draw(st.integers(16, 2000))
    h = draw(st.integers(16, 2000))
    anns = []
    for i in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            pts = draw(st.lists(st.tuples(st.floats(0, w), st.floats(0, h)), min_size=3, max_size=12))
            hull = MultiPoint(pts).convex_hull
            assume(isinstance(hull, Polygon))
            x0, y0, x1, y1 = hull.bounds
            assume(min(x1 - x0, y1 - y0) >= 1.0 and hull.area > 1e-3)
            ring = [float(v) for xy in hull.exterior.coords[:-1] for v in xy]
            anns.append(
                {
                    "id": i + 1,
                    "image_id": 1,
                    "category_id": i + 1,
                    "iscrowd": 0,
                    "segmentation": [ring],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": hull.area,
                }
            )
        else:
            bw = draw(st.floats(1.0, float(w)))
            bh = draw(st.floats(1.0, float(h)))
            x = draw(st.floats(0, w - bw))
            y = draw(st.floats(0, h - bh))
            anns.append(
                {
                    "id": i + 1,
                    "image_id": 1,
                    "category_id": i + 1,
                    "iscrowd": 0,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                }
            )
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
        "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 7)],
        "annotations": anns,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_clean_batch())
def test_clean_boxes_and_convex_polygons_are_never_reported(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "batch.json"
        p.write_text(json.dumps(doc, indent=1))
        result = _gate_file(p)
    assert [(f.rule, f.message) for f in result.findings] == []


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_compressed_rle_counts_match_pycocotools(h: int, w: int, seed: int, density: float) -> None:
    m = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    enc = mask_utils.encode(np.asfortranarray(m))
    counts = _rle_string_counts(enc["counts"])
    assert counts is not None
    # run lengths of the column-major pixels, starting with a (possibly empty) 0-run
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0, *runs]
    assert counts.tolist() == runs


def test_star_test_never_passes_an_invalid_ring() -> None:
    """Random rings (many self-intersecting): the gate agrees with shapely ring by ring."""
    rng = np.random.default_rng(7)
    rings = []
    for k in range(3000):
        n = int(rng.integers(3, 12))
        if k % 3 == 0:  # star-shaped around a point: mostly simple, some spiky
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(2, 30, n)
            pts = np.round(np.c_[50 + r * np.cos(ang), 40 + r * np.sin(ang)], 1)
        else:  # integer grid points: many bow-ties, touches, collinear runs
            pts = rng.integers(0, 12, (n, 2)).astype(float) * 8
        rings.append(pts)
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [p.ravel().tolist()]}
            for i, p in enumerate(rings)
        ],
    }
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rings.json"
        path.write_text(json.dumps(doc))
        result = _gate_file(path, {"thresholds": {"max_findings_per_rule": 10_000}})  # keep every finding
    reported = {
        f.annotation_id
        for f in result.findings
        if f.rule in {"polygon_invalid", "polygon_spike", "polygon_zero_area", "polygon_too_few_points"}
    }
    bad = {i + 1 for i, p in enumerate(rings) if not Polygon(p).is_valid}
    assert reported == bad
    spikes = {f.annotation_id for f in result.findings if f.rule == "polygon_spike"}
    degenerate = {f.annotation_id for f in result.findings if f.rule in {"polygon_zero_area", "polygon_too_few_points"}}
    assert spikes == {i + 1 for i in range(len(rings)) if (i + 1) in bad - degenerate and _is_spike(rings[i])}
    assert spikes and spikes != bad
    assert 300 < len(bad) < 2900
    assert result.metrics["rings_proven_by_star_test"] > 500


def test_duplicates_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    img = rng.integers(1, 6, n)
    cat = rng.integers(1, 3, n)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 30, (n, 2))
    # copies with a small jitter, some above and some below the threshold
    src = rng.integers(0, n, 300)
    img = np.r_[img, img[src]]
    cat = np.r_[cat, cat[src]]
    xy = np.r_[xy, xy[src] + rng.uniform(-0.6, 0.6, (300, 2))]
    wh = np.r_[wh, wh[src]]
    boxes = np.c_[xy, wh]
    anns = [
        {"id": i + 1, "image_id": int(img[i]), "category_id": int(cat[i]), "iscrowd": 0, "bbox": boxes[i].tolist()}
        for i in range(len(boxes))
    ]
    doc = {
        "images": [{"id": k, "file_name": f"{k}.jpg", "width": 300, "height": 300} for k in range(1, 6)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns,
    }
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dups.json"
        path.write_text(json.dumps(doc))
        result = _gate_file(path)
    got = {f.annotation_id for f in result.findings if f.rule == "duplicate_object"}
    assert got == _reference_duplicates(doc, 0.95)
    assert 50 < len(got) < 300


# --------------------------------------------------------------------------- reference


def _iou(a: list[float], b: list[float]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _reference_duplicates(doc: Mapping[str, Any], t: float) -> set[int]:
    anns = [a for a in doc["annotations"] if a.get("bbox") and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    out = set()
    for j, b in enumerate(anns):
        for a in anns[:j]:
            same = (a["image_id"], a["category_id"], a.get("iscrowd", 0)) == (
                b["image_id"],
                b["category_id"],
                b.get("iscrowd", 0),
            )
            if same and _iou(a["bbox"], b["bbox"]) >= t:
                out.add(b["id"])
                break
    return out


def _is_spike(ring: np.ndarray) -> bool:
    """Reference: an invalid ring is a spike if repairing it keeps its area and some vertex turns back 180 degrees."""
    p = Polygon(ring)
    if abs(shapely.make_valid(p).area - p.area) > 1e-9 * max(p.area, 1e-300) + 1e-9:
        return False
    pts = [tuple(q) for k, q in enumerate(ring.tolist()) if q != ring.tolist()[(k + 1) % len(ring)]]
    for k in range(len(pts)):
        a, b, c = pts[k - 1], pts[k], pts[(k + 1) % len(pts)]
        e, f = (b[0] - a[0], b[1] - a[1]), (c[0] - b[0], c[1] - b[1])
        cross, dot = e[0] * f[1] - e[1] * f[0], e[0] * f[0] + e[1] * f[1]
        if abs(cross) <= 1e-9 * np.hypot(*e) * np.hypot(*f) and dot < 0:
            return True
    return False


def _reference_findings(doc: Mapping[str, Any]) -> set[tuple[str, int]]:
    """The gate's checks at default settings, one object at a time (small files only)."""
    images = {im["id"]: im for im in doc["images"]}
    cats = {c["id"]: c for c in doc["categories"]}
    tol = DEFAULTS["border_tolerance"]
    out: set[tuple[str, int]] = set()

    def add(rule: str, a: Mapping[str, Any]) -> None:
        out.add((rule, a["id"]))

    def beyond(x0: float, y0: float, x1: float, y1: float, im: Mapping[str, Any]) -> bool:
        return max(-x0, -y0, x1 - im["width"], y1 - im["height"]) > tol

    for a in doc["annotations"]:
        im = images[a["image_id"]]
        box = a.get("bbox") or None
        box_ok = box is not None and box[2] > 0 and box[3] > 0
        if box is not None and not box_ok:
            add("box_nonpositive", a)
        if box_ok:
            if min(box[2], box[3]) < DEFAULTS["min_box_size"]:
                add("box_tiny", a)
            if beyond(box[0], box[1], box[0] + box[2], box[1] + box[3], im):
                add("box_outside_image", a)
        seg = a.get("segmentation")
        extent = area = None
        if isinstance(seg, list) and seg:
            polys = [Polygon(np.asarray(r, float).reshape(-1, 2)) for r in seg]
            if not all(p.is_valid for p in polys):
                spiky = [_is_spike(np.asarray(r, float).reshape(-1, 2)) for r, p in zip(seg, polys, strict=True)]
                if any(not p.is_valid and not sp for p, sp in zip(polys, spiky, strict=True)):
                    add("polygon_invalid", a)
                if any(not p.is_valid and sp for p, sp in zip(polys, spiky, strict=True)):
                    add("polygon_spike", a)
                if all(p.is_valid or sp for p, sp in zip(polys, spiky, strict=True)):
                    area = sum(p.area for p in polys)
            else:
                area = sum(p.area for p in polys)
            xs = np.concatenate([np.asarray(r[0::2], float) for r in seg])
            ys = np.concatenate([np.asarray(r[1::2], float) for r in seg])
            extent = (xs.min(), ys.min(), xs.max(), ys.max())
            if beyond(*extent, im):
                add("polygon_outside_image", a)
        elif isinstance(seg, dict):
            h, w = seg["size"]
            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
            m = mask_utils.decode(rle)
            if (h, w) != (im["height"], im["width"]):
                add("rle_size_mismatch", a)
            if m.sum() == 0:
                add("rle_empty", a)
            else:
                rows_, cols_ = np.nonzero(m)
                extent = (cols_.min(), rows_.min(), cols_.max() + 1, rows_.max() + 1)
                area = float(m.sum())
        if box_ok and extent is not None:
            edges = (box[0], box[1], box[0] + box[2], box[1] + box[3])
            if max(abs(e - s) for e, s in zip(edges, extent, strict=True)) > DEFAULTS["box_segmentation_tolerance"]:
                add("box_segmentation_mismatch", a)
        if area is None and box_ok and not seg:
            area = box[2] * box[3]
        if area and a.get("area") is not None:
            rel_tol = DEFAULTS["crowd_area_tolerance"] if a.get("iscrowd") else DEFAULTS["area_tolerance"]
            # without a segmentation the box area only bounds the (mask) area from above
            diff = a["area"] - area if not seg else abs(a["area"] - area)
            if diff > rel_tol * area + 1.0:
                add("area_mismatch", a)
        kps = np.asarray(a.get("keypoints") or [], float).reshape(-1, 3)
        if len(kps):
            declared = len(cats[a["category_id"]].get("keypoints") or [])
            if declared and declared != len(kps):
                add("keypoints_count_mismatch", a)
            if not np.isin(kps[:, 2], [0, 1, 2]).all():
                add("keypoint_visibility_invalid", a)
            for x, y, v in kps:
                if v not in (1, 2):
                    continue
                if beyond(x, y, x, y, im):
                    add("keypoint_outside_image", a)
                elif box_ok:
                    d = max(box[0] - x, x - box[0] - box[2], box[1] - y, y - box[1] - box[3], 0)
                    if d > DEFAULTS["keypoint_box_tolerance"] * max(box[2], box[3]):
                        add("keypoint_outside_box", a)
            if a.get("num_keypoints") is not None and a["num_keypoints"] != int((kps[:, 2] > 0).sum()):
                add("num_keypoints_mismatch", a)
    out |= {("duplicate_object", i) for i in _reference_duplicates(doc, DEFAULTS["duplicate_iou"])}
    return out


# --------------------------------------------------------------------------- real exports


def test_coco_val2014_sample(thirdparty: Path) -> None:
    path = thirdparty / VAL2014
    if not path.is_file():
        pytest.skip(f"{path} absent")
    doc = json.loads(path.read_text())
    result = _gate_file(path)
    got = {(f.rule, f.annotation_id) for f in result.findings}
    # what COCO val2014's first 100 images really contain: two polygons with a zero-area
    # spike (a vertex doubling back), not bow-ties: warnings, the region is unchanged
    assert got == {("polygon_spike", 584048), ("polygon_spike", 2220402)}
    assert {f.severity for f in result.findings} == {"warning"}
    assert got == _reference_findings(doc)
    by_id = {a["id"]: a for a in doc["annotations"]}
    for f in result.findings:
        ring = np.asarray(by_id[f.annotation_id]["segmentation"][0], float).reshape(-1, 2)
        reason = shapely.is_valid_reason(Polygon(ring))
        assert reason.startswith("Self-intersection") and reason in f.message
        assert f.image == next(
            im["file_name"] for im in doc["images"] if im["id"] == by_id[f.annotation_id]["image_id"]
        )
    n_rings = sum(len(a["segmentation"]) for a in doc["annotations"] if isinstance(a["segmentation"], list))
    assert result.metrics["annotations"] == len(doc["annotations"]) == result.population
    assert result.metrics["polygon_rings"] == n_rings
    assert result.metrics["rle_masks"] == sum(isinstance(a["segmentation"], dict) for a in doc["annotations"])
    assert result.verdict == "passed"
    as_errors = _gate_file(path, {"thresholds": {"polygon_spike": {"severity": "error"}}})
    assert as_errors.verdict == "failed" and {f.severity for f in as_errors.findings} == {"error"}
    # the crowd masks are checked, not skipped: a stricter crowd tolerance flags
    # the ones whose area field is 11-13 % above the mask's pixel count
    strict = _gate_file(path, {"crowd_area_tolerance": 0.1})
    flagged = {f.annotation_id for f in strict.findings if f.rule == "area_mismatch"}
    expected = set()
    for a in doc["annotations"]:
        if a["iscrowd"]:
            s = a["segmentation"]
            pix = float(mask_utils.area(mask_utils.frPyObjects(s, *s["size"])))
            if abs(a["area"] - pix) > 0.1 * pix + 1.0:
                expected.add(a["id"])
    assert flagged == expected
    assert len(flagged) == 3


def _datumaro_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if "panoptic" not in p.name)


def test_datumaro_coco_fixtures(thirdparty: Path) -> None:
    root = thirdparty / DATUMARO
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    files = _datumaro_files(root)
    assert len(files) >= 20
    seen_rules: set[str] = set()
    kinds = {"polygon": 0, "rle": 0, "keypoints": 0}
    for path in files:
        doc = json.loads(path.read_text())
        result = _gate_file(path)
        got = {(f.rule, f.annotation_id) for f in result.findings}
        assert got == _reference_findings(doc), path
        assert result.population == len(doc.get("annotations", []))
        seen_rules |= {r for r, _ in got}
        kinds["polygon"] += result.metrics["polygons"]
        kinds["rle"] += result.metrics["rle_masks"]
        kinds["keypoints"] += result.metrics["keypoint_annotations"]
    # the fixtures hold polygons, crowd RLE masks and keypoints; their only defects are
    # hand-made keypoints placed beside tiny boxes (e.g. (0, 2) left of a 3x1 box at x=2)
    assert all(v > 0 for v in kinds.values()), kinds
    assert seen_rules == {"keypoint_outside_box"}


def test_hostile_rle_does_not_crash(write_coco: Callable[..., Path]) -> None:
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [10**9, 10**9], "counts": [10**18]},
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [4, 4], "counts": "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"},
        },
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": {"size": "big", "counts": [1]}},
        {
            "id": 4,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [4, 4], "counts": [1.5, 14.5]},
        },
    ]
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": anns,
    }
    result = _gate_file(write_coco(doc))
    rules = {(f.rule, f.annotation_id) for f in result.findings}
    assert rules == {("rle_undecodable", 1), ("rle_undecodable", 2), ("rle_undecodable", 3), ("rle_undecodable", 4)}
    assert result.metrics["rle_masks"] == 4


# --------------------------------------------------------------------------- hostile duplicates (issue 8)


def _boxes_batch(
    boxes: np.ndarray, write_coco: Callable[..., Path], image: np.ndarray | None = None, annotator: Any = None
) -> Batch:
    n = len(boxes)
    img = np.ones(n, int) if image is None else image
    doc = {
        "images": [{"id": k, "file_name": f"{k}.jpg", "width": 1e5, "height": 1e5} for k in sorted(set(img.tolist()))],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": i + 1, "image_id": int(img[i]), "category_id": 1, "iscrowd": 0, "bbox": boxes[i].tolist()}
            for i in range(n)
        ],
    }
    batch = load_batch(write_coco(doc))
    if annotator is not None:
        ann = dataclasses.replace(batch.annotations, annotator=np.asarray(annotator, np.int32))
        batch = dataclasses.replace(batch, annotations=ann, annotators=("alice", "bob"))
    return batch


def _brute_duplicates(boxes: np.ndarray, t: float, key: np.ndarray) -> set[int]:
    b = boxes.astype(float)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    ih = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area = b[:, 2] * b[:, 3]
    iou = inter / (area[:, None] + area[None] - inter)
    hit = (iou >= t) & (key[:, None] == key[None]) & np.tri(len(b), k=-1, dtype=bool)
    return {int(j) + 1 for j in np.flatnonzero(hit.any(axis=1))}


@pytest.mark.parametrize("t", [0.5, 0.8, 0.95, 0.999])
def test_duplicates_grid_and_sweep_match_brute_force(t: float, write_coco: Callable[..., Path]) -> None:
    """Stacked boxes sharing a left edge (the grid path) mixed with scattered ones (the sweep)."""
    rng = np.random.default_rng(int(t * 1000))
    n = 1200
    stacked = np.c_[
        np.zeros(n // 2), rng.uniform(0, 400, n // 2), rng.uniform(20, 30, n // 2), rng.uniform(1, 40, n // 2)
    ]
    scattered = np.c_[rng.uniform(0, 300, (n // 2, 2)), np.exp(rng.uniform(0, 5, (n // 2, 2)))]
    boxes = np.r_[stacked, scattered]
    src = rng.integers(0, n, 200)
    boxes = np.r_[boxes, boxes[src] * rng.uniform(0.97, 1.03, (200, 4)), boxes[src[:20]]]  # jittered and exact copies
    annotator = rng.integers(0, 2, len(boxes))
    batch = _boxes_batch(boxes, write_coco, annotator=annotator)
    result = _gate(batch, {"duplicate_iou": t})
    got = {f.annotation_id for f in result.findings if f.rule == "duplicate_object"}
    assert got == _brute_duplicates(boxes, t, annotator)
    assert result.metrics["duplicate_pairs_not_examined"] == 0


def test_duplicates_are_per_annotator(write_coco: Callable[..., Path]) -> None:
    """Two annotators boxing the same object agree; one annotator boxing it twice duplicates."""
    boxes = np.array([[10, 10, 50, 50], [10, 10, 50, 50], [10.5, 10, 50, 50], [10, 10, 50, 50]], float)
    result = _gate(_boxes_batch(boxes, write_coco, annotator=[0, 1, 1, 0]))
    assert sorted((f.rule, f.annotation_id) for f in result.findings) == [
        ("duplicate_object", 3),
        ("duplicate_object", 4),
    ]
    msgs = {f.annotation_id: f.message for f in result.findings}
    assert "duplicates annotation 2" in msgs[3] and "duplicates annotation 1" in msgs[4]


def test_identical_boxes_are_not_quadratic(write_coco: Callable[..., Path]) -> None:
    """20,000 copies of one box (old code: all 2e8 pairs, 18.8 GB): every copy found, few pairs compared."""
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (20_000, 1))
    result = _gate(_boxes_batch(boxes, write_coco))
    assert result.metrics["findings_by_type"] == {"duplicate_object": 19_999}
    assert result.metrics["duplicate_pairs_examined"] == 0  # exact copies are grouped by hashing


def test_stacked_boxes_are_not_quadratic(write_coco: Callable[..., Path]) -> None:
    """Boxes sharing a left edge, one above the other: an x sweep compares all pairs, the grid almost none."""
    n = 20_000
    boxes = np.c_[np.zeros(n), np.arange(n, dtype=float), np.full(n, 50.0), np.ones(n)]
    result = _gate(_boxes_batch(boxes, write_coco))
    assert "duplicate_object" not in result.metrics["findings_by_type"]
    assert 0 < result.metrics["duplicate_pairs_examined"] <= 40 * n


def test_near_copies_beyond_the_cap_are_counted(write_coco: Callable[..., Path]) -> None:
    """3,000 jittered copies of one box are all mutual candidates: the cap bounds the work, the rest is counted."""
    rng = np.random.default_rng(5)
    boxes = np.tile([100.0, 100.0, 50.0, 50.0], (3000, 1)) + rng.uniform(0, 0.01, (3000, 4))
    result = _gate(_boxes_batch(boxes, write_coco), {"duplicate_max_pairs": 100_000})
    assert result.metrics["duplicate_pairs_examined"] <= 100_000 + 16 * 3000 + 64
    assert result.metrics["duplicate_pairs_not_examined"] > 0
    assert result.metrics["findings_by_type"]["duplicate_object"] > 0


def test_box_only_area_is_an_upper_bound_on_real_coco(thirdparty: Path, tmp_path: Path) -> None:
    """COCO val2014 with every polygon stripped: the stated (mask) areas are below the boxes, never defects.

    The old check compared them with the box area as if equal and failed almost all.
    """
    path = thirdparty / VAL2014
    if not path.is_file():
        pytest.skip(f"{path} absent")
    doc = json.loads(path.read_text())
    anns = [{k: v for k, v in a.items() if k != "segmentation"} for a in doc["annotations"] if not a["iscrowd"]]
    assert sum(a["area"] < 0.9 * a["bbox"][2] * a["bbox"][3] - 1 for a in anns) > 0.9 * len(anns)
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps({**doc, "annotations": anns}))
    result = _gate_file(stripped)
    assert result.metrics["findings_by_type"].get("area_mismatch", 0) == 0
    # an area inflated above its box is still caught
    anns[0]["area"] = anns[0]["bbox"][2] * anns[0]["bbox"][3] * 1.5
    stripped.write_text(json.dumps({**doc, "annotations": anns}))
    result = _gate_file(stripped)
    assert [(f.rule, f.annotation_id) for f in result.findings if f.rule == "area_mismatch"] == [
        ("area_mismatch", anns[0]["id"])
    ]


def test_hostile_numbers_become_findings(write_coco: Callable[..., Path]) -> None:
    """Wrapping RLE sums, 1e308 coordinates and absurd keypoint counts: findings, never an exception."""
    base = {"image_id": 1, "category_id": 1, "iscrowd": 0}
    big = 1e308
    anns = [
        # int64 sum of the counts wraps to exactly h*w: old code raised OverflowError
        {
            **base,
            "id": 1,
            "iscrowd": 1,
            "bbox": [0, 0, 100, 100],
            "area": 10000,
            "segmentation": {"size": [100, 100], "counts": [2**62] * 4 + [10000]},
        },
        {**base, "id": 2, "bbox": [0, 0, big, big], "area": big},
        {
            **base,
            "id": 3,
            "bbox": [-big, -big, big, big],
            "area": big,
            "segmentation": [[-big, -big, big, -big, big, big, -big, big]],
        },
        {**base, "id": 4, "bbox": [0, 0, 10, 10], "area": 100, "segmentation": [[0, 0, big, 0, big, big, 0, big]]},
        {**base, "id": 5, "bbox": [1, 1, 10, 10], "area": 50, "keypoints": [5, 5, 2] * 5, "num_keypoints": 5},
        {**base, "id": 6, "bbox": [50, 50, 10, 10], "area": 50, "keypoints": [55, 55, 2, big, big, 2]},
    ]
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "x", "keypoints": ["a", "b", "c", "d", "e"]}],
        "annotations": anns,
    }
    batch = load_batch(write_coco(doc))
    # a reader that keeps num_keypoints as read (2**40 does not fit the int32 column)
    nk = np.asarray(batch.annotations.num_keypoints, np.int64)
    nk[5] = 1 << 40
    batch = dataclasses.replace(batch, annotations=dataclasses.replace(batch.annotations, num_keypoints=nk))
    result = _gate(batch)
    got = {(f.rule, f.annotation_id) for f in result.findings}
    assert ("rle_undecodable", 1) in got
    assert ("box_outside_image", 2) in got
    assert ("polygon_outside_image", 3) in got or ("box_outside_image", 3) in got
    assert ("polygon_outside_image", 4) in got
    assert ("keypoints_count_mismatch", 6) in got
    assert result.verdict == "failed"
    json.dumps(result.to_dict(), allow_nan=False)
