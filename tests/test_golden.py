"""The golden gate on small fixture files, and its metrics on synthetic cases.

Fixtures (``tests/data/{valid,invalid}/golden/``): ``golden.json`` holds two
honeypot images (persons, cars, a cyclist, a pedestrian, a crowd of persons);
each ``batch.json`` names the images and classes with *other* ids (joined by file
name and class name). The valid batch is off by one pixel everywhere, has one
person inside the crowd region (ignored) and one object on a non-golden image.
The invalid batch shifts every box right by 10% of its width, labels the cyclist
a pedestrian, misses the second image's car and adds a car.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.checks.golden import GATE, RULES_SCHEMA, drift_stats, golden_match
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch

DATA = Path(__file__).resolve().parent / "data"
VALID = DATA / "valid" / "golden"
INVALID = DATA / "invalid" / "golden"


def ctx_for(
    folder: Path,
    section: Mapping[str, Any],
    rules: Mapping[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
) -> GateContext:
    loads: list[Path] = []

    def load(p: Path) -> Batch:
        loads.append(p)
        return load_batch(p)

    ctx = GateContext(
        section=section, rules=rules or {}, base_dir=folder, load=load, cache={} if cache is None else cache
    )
    ctx.cache["_loads"] = loads
    return ctx


def line_of(path: Path, ann_id: int) -> int:
    """1-based line of annotation ``ann_id``'s opening brace (files are written with indent=1)."""
    lines = path.read_text().splitlines()
    k = next(
        i for i, t in enumerate(lines) if t.strip() == f'"id": {ann_id},' and i > 0 and lines[i - 1].strip() == "{"
    )
    return k  # the brace is on the line before "id" (0-based k-1 -> 1-based k)


def test_valid_batch_passes() -> None:
    batch = load_batch(VALID / "batch.json")
    res = GATE.run(
        batch,
        ctx_for(
            VALID,
            {
                "file": "golden.json",
                "min_precision": 1.0,
                "min_recall": 1.0,
                "min_accuracy": 1.0,
                "min_mean_iou": 0.9,
                "max_drift": 0.05,
            },
        ),
    )
    assert res.verdict == "passed", [c for c in res.checks if not c.passed]
    o = res.metrics["overall"]
    assert (o["tp"], o["mislabelled"], o["missing"], o["extra"], o["ignored"]) == (6, 0, 0, 0, 1)
    assert o["golden_images"] == 2 and o["golden_objects"] == 6
    assert res.findings == []
    assert res.population == 6
    assert set(res.metrics["per_class"]) == {"person", "car", "cyclist", "pedestrian"}
    assert res.tables["golden_per_class"][0][0] == "class"
    json.dumps(res.to_dict())  # plain Python all the way


def test_invalid_batch_findings_and_metrics() -> None:
    path = INVALID / "batch.json"
    batch = load_batch(path)
    sec = {
        "file": "golden.json",
        "min_accuracy": 0.9,
        "max_drift": 0.05,
        "per_class": {"cyclist": {"min_recall": 0.9}},
        "min_object_iou": 0.95,
    }
    res = GATE.run(batch, ctx_for(INVALID, sec))
    assert res.verdict == "failed"
    by_rule: dict[str, list[Any]] = {}
    for f in res.findings:
        by_rule.setdefault(f.rule, []).append(f)
    assert {k: len(v) for k, v in by_rule.items()} == {"extra": 1, "mislabelled": 1, "missing": 1, "low_iou": 5}
    extra = by_rule["extra"][0]
    assert (
        extra.file == str(path)
        and extra.image == "honey_01.jpg"
        and extra.category == "car"
        and extra.annotator == "bob"
    )
    assert extra.line == line_of(path, extra.annotation_id)
    mis = by_rule["mislabelled"][0]
    assert mis.category == "pedestrian" and "'cyclist'" in mis.message and mis.image == "honey_01.jpg"
    miss = by_rule["missing"][0]
    gold = INVALID / "golden.json"
    assert (
        miss.file == str(gold)
        and miss.annotation_id == 5
        and miss.line == line_of(gold, 5)
        and miss.image == "honey_02.jpg"
    )
    assert all(f.severity == "warning" for f in by_rule["low_iou"])

    o = res.metrics["overall"]
    assert (o["tp"], o["mislabelled"], o["missing"], o["extra"]) == (4, 1, 1, 1)
    assert math.isclose(o["accuracy"], 4 / 7)
    assert math.isclose(o["precision"], 4 / 6) and math.isclose(o["recall"], 4 / 6)
    # every box moved right by 10% of its width: left and right edges drift +0.1, top/bottom 0
    d = o["drift"]
    assert math.isclose(d["left"]["mean"], 0.1) and math.isclose(d["right"]["mean"], 0.1)
    assert abs(d["top"]["mean"]) < 1e-12 and abs(d["bottom"]["mean"]) < 1e-12
    failed = {(c.metric, c.scope) for c in res.failed_checks}
    assert failed == {
        ("accuracy", "overall"),
        ("drift.left", "overall"),
        ("drift.right", "overall"),
        ("drift.left", "annotator:bob"),  # the shift is named per annotator too
        ("drift.right", "annotator:bob"),
        ("recall", "class:cyclist"),
    }
    assert res.population == 7
    json.dumps(res.to_dict())


def test_top_level_golden_key_and_skips(tmp_path: Path) -> None:
    batch = load_batch(VALID / "batch.json")
    res = GATE.run(batch, ctx_for(VALID, {}, rules={"golden": "golden.json"}))
    assert res.verdict == "passed" and res.metrics["overall"]["tp"] == 6
    res = GATE.run(batch, ctx_for(VALID, {}))
    assert res.verdict == "skipped" and "no golden file" in res.reason
    res = GATE.run(batch, ctx_for(VALID, {"file": "nope.json"}))
    assert res.verdict == "failed" and "not found" in res.reason
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "zzz.jpg", "width": 10, "height": 10}],
                "categories": [],
                "annotations": [],
            }
        )
    )
    res = GATE.run(batch, ctx_for(tmp_path, {"file": "other.json"}))
    assert res.verdict == "skipped" and "no image of the golden file" in res.reason


def test_unreadable_golden_fails_without_crashing(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text('{"images": [')
    res = GATE.run(load_batch(VALID / "batch.json"), ctx_for(tmp_path, {"file": "g.json"}))
    assert res.verdict == "failed" and "cannot read golden file" in res.reason


def test_match_is_cached_per_batch() -> None:
    batch = load_batch(VALID / "batch.json")
    ctx = ctx_for(VALID, {"file": "golden.json"})
    a = golden_match(batch, ctx)
    b = golden_match(batch, ctx)
    assert a is b and len(ctx.cache["_loads"]) == 1


def test_segm_iou_type(tmp_path: Path) -> None:
    batch = load_batch(INVALID / "batch.json")
    res = GATE.run(batch, ctx_for(INVALID, {"file": "golden.json", "iou_type": "segm"}))
    o = res.metrics["overall"]
    assert (o["tp"], o["mislabelled"], o["missing"], o["extra"]) == (4, 1, 1, 1)


def test_drift_stats_interval() -> None:
    rng = np.random.default_rng(0)
    g = np.column_stack(
        [rng.uniform(0, 100, 400), rng.uniform(0, 100, 400), rng.uniform(20, 80, 400), rng.uniform(20, 80, 400)]
    )
    b = g.copy()
    b[:, 1] += 0.05 * g[:, 3] + rng.normal(0, 0.01, 400) * g[:, 3]  # top edge 5% down, box moved down
    d = drift_stats(b, g)
    assert d["top"]["low"] < 0.05 < d["top"]["high"] and d["bottom"]["low"] < 0.05 < d["bottom"]["high"]
    assert d["left"]["mean"] == 0.0 and d["top"]["n"] == 400.0


def test_rules_schema_rejects_unknown_keys() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(
        {"file": "g.json", "iou_type": "segm", "per_class": {"person": {"min_recall": 0.9}}}, RULES_SCHEMA
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"min_recal": 0.9}, RULES_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"per_class": {"person": {"iou": 0.9}}}, RULES_SCHEMA)


def test_drift_check_needs_a_systematic_shift() -> None:
    """Noise whose interval spans zero passes max_drift; a shift beyond it fails."""
    from annogate.checks.golden import _systematic

    assert _systematic({"mean": 0.05, "low": -0.01, "high": 0.11}) == 0.0
    assert math.isclose(_systematic({"mean": -0.05, "low": -0.07, "high": -0.03}), 0.03)
    assert _systematic({"mean": 0.04, "low": math.nan, "high": math.nan}) == 0.04


# ---------------------------------------------------------------------------
# the iou_type really decides (a hard-coded "bbox" must fail these)


def _gate_on(tmp_path: Path, batch: Batch, gold: Batch, section: Mapping[str, Any]) -> Any:
    (tmp_path / "golden.json").write_text("{}")  # the gate checks the file exists; load returns `gold`
    ctx = GateContext(section={"file": "golden.json", **section}, rules={}, base_dir=tmp_path, load=lambda p: gold)
    return GATE.run(batch, ctx)


def _counts(res: Any) -> tuple[int, int, int, int]:
    o = res.metrics["overall"]
    return o["tp"], o["mislabelled"], o["missing"], o["extra"]


def test_masks_decide_under_segm(tmp_path: Path) -> None:
    """Same boxes, opposite triangles: a box match, but mask IoU ~0, so segm finds a miss and an extra."""
    from tests.builders import Obj, make_batch

    imgs = {"a.jpg": (100.0, 100.0)}
    box = [10.0, 10.0, 60.0, 60.0]
    gold = make_batch([Obj(image="a.jpg", category="car", bbox=box, polygons=[[10, 10, 70, 10, 10, 70]])], images=imgs)
    batch = make_batch([Obj(image="a.jpg", category="car", bbox=box, polygons=[[70, 70, 70, 10, 10, 70]])], images=imgs)
    assert _counts(_gate_on(tmp_path, batch, gold, {"iou_type": "bbox"})) == (1, 0, 0, 0)
    res = _gate_on(tmp_path, batch, gold, {"iou_type": "segm"})
    assert _counts(res) == (0, 0, 1, 1)
    assert res.metrics["settings"]["iou_type"] == "segm"


def test_keypoints_decide_under_oks(tmp_path: Path) -> None:
    """Same boxes, keypoints on the wrong side of the body: a box match, OKS ~0."""
    from tests.builders import Obj, make_batch

    imgs = {"a.jpg": (200.0, 200.0)}
    box = [20.0, 20.0, 100.0, 100.0]
    kp_gold = [25.0, 25.0, 2.0] * 17
    kp_batch = [115.0, 115.0, 2.0] * 17
    gold = make_batch([Obj(image="a.jpg", category="person", bbox=box, keypoints=kp_gold)], images=imgs)
    batch = make_batch([Obj(image="a.jpg", category="person", bbox=box, keypoints=kp_batch)], images=imgs)
    assert _counts(_gate_on(tmp_path, batch, gold, {"iou_type": "bbox"})) == (1, 0, 0, 0)
    assert _counts(_gate_on(tmp_path, batch, gold, {"iou_type": "keypoints"})) == (0, 0, 1, 1)
    same = make_batch([Obj(image="a.jpg", category="person", bbox=box, keypoints=kp_gold)], images=imgs)
    assert _counts(_gate_on(tmp_path, same, gold, {"iou_type": "keypoints"})) == (1, 0, 0, 0)


def test_keypoint_class_without_sigmas_names_class_and_key(tmp_path: Path) -> None:
    from tests.builders import Obj, make_batch

    imgs = {"a.jpg": (200.0, 200.0)}
    kp = [30.0, 30.0, 2.0] * 5
    gold = make_batch([Obj(image="a.jpg", category="hand", bbox=[20, 20, 50, 50], keypoints=kp)], images=imgs)
    res = _gate_on(tmp_path, gold, gold, {"iou_type": "keypoints"})
    assert res.verdict == "failed"
    assert "'hand' (5 keypoints)" in res.reason and "`oks_sigmas`" in res.reason
    ok = _gate_on(tmp_path, gold, gold, {"iou_type": "keypoints", "oks_sigmas": [0.05] * 5})
    assert ok.verdict == "passed" and _counts(ok) == (1, 0, 0, 0)


def test_unavailable_is_typed() -> None:
    from annogate.checks.golden import Unavailable

    batch = load_batch(VALID / "batch.json")
    u = golden_match(batch, ctx_for(VALID, {}))
    assert isinstance(u, Unavailable) and not u.failed
    u = golden_match(batch, ctx_for(VALID, {"file": "nope.json"}))
    assert isinstance(u, Unavailable) and u.failed and u.result("golden").verdict == "failed"


def test_recall_on_a_small_golden_set_is_judged_on_its_interval(tmp_path: Path) -> None:
    """8 of 10 golden cars found is 80% < 90%, but 10 objects cannot tell 80% from 90%
    (Wilson 49%-94%): undecided, passes, and says how many more would decide."""
    from tests.builders import Obj, make_batch

    imgs = {"a.jpg": (400.0, 100.0)}
    gold = make_batch([Obj(image="a.jpg", category="car", bbox=[30 * i, 10, 20, 20]) for i in range(10)], images=imgs)
    batch = make_batch([Obj(image="a.jpg", category="car", bbox=[30 * i, 10, 20, 20]) for i in range(8)], images=imgs)
    res = _gate_on(tmp_path, batch, gold, {"min_recall": 0.9})
    assert res.verdict == "passed", res.failed_checks
    iv = res.metrics["overall"]["intervals"]["recall"]
    assert iv["decision"] == "undecided" and iv["ci95_low"] < 0.8 < 0.9 < iv["ci95_high"]
    assert iv["more_to_decide"] > 0 and "undecided" in iv["text"]
    # 80 of 100 is sure to be below 90%
    gold = make_batch([Obj(image="a.jpg", category="car", bbox=[4 * i, 10, 3, 20]) for i in range(100)], images=imgs)
    batch = make_batch([Obj(image="a.jpg", category="car", bbox=[4 * i, 10, 3, 20]) for i in range(80)], images=imgs)
    res = _gate_on(tmp_path, batch, gold, {"min_recall": 0.9, "max_dets": 1000})
    assert [(c.metric, c.scope) for c in res.failed_checks] == [("recall", "overall")]
    assert res.metrics["overall"]["intervals"]["recall"]["decision"] == "fails"


def test_drift_names_the_annotator() -> None:
    """examples/defective: bob's boxes are drawn 12% of their width to the right. The
    drift check must name bob (scope ``annotator:bob``), not only ``overall``, and must
    not blame alice or carol; the per-annotator table shows it."""
    ex = Path(__file__).resolve().parents[1] / "examples"
    batch = load_batch(ex / "defective" / "batch.json")
    res = GATE.run(batch, ctx_for(ex, {"file": "golden/golden.json", "max_drift": 0.01}))
    failed = {(c.metric, c.scope) for c in res.failed_checks}
    assert {("drift.left", "annotator:bob"), ("drift.right", "annotator:bob")} <= failed
    assert not any(s in {"annotator:alice", "annotator:carol"} for _, s in failed)
    bob = res.metrics["per_annotator"]["bob"]["drift"]["right"]
    assert 0.09 < bob["low"] < bob["mean"] < 0.13  # the planted 12%
    table = res.tables["golden_per_annotator"]
    assert table[0][0] == "annotator" and {r[0] for r in table[1:]} == {"alice", "bob", "carol"}
    clean = GATE.run(
        load_batch(ex / "clean" / "batch.json"), ctx_for(ex, {"file": "golden/golden.json", "max_drift": 0.01})
    )
    assert clean.verdict == "passed"


_HOSTILE_FILES = """
import json
from pathlib import Path
from annogate.checks import agreement, confusion, golden
from annogate.formats import load_batch
from annogate.gates import GateContext

folder = Path("data/invalid/golden")
batch = load_batch(folder / "hostile_masks_batch.json")
out = {}
for gate, sec in ((golden, {"file": "hostile_masks.json", "iou_type": "segm"}),
                  (confusion, {"file": "hostile_masks.json", "iou_type": "segm"}),
                  (agreement, {"iou_type": "segm"})):
    ctx = GateContext(section=sec, rules={}, base_dir=folder, load=load_batch)
    r = gate.GATE.run(batch, ctx)
    out[r.gate] = {"verdict": r.verdict, "metrics": r.metrics, "messages": [f.message for f in r.findings]}
print(json.dumps(out, default=str))
"""


def test_hostile_masks_in_golden_and_batch_files() -> None:
    """tests/data/invalid/golden/hostile_masks*.json: RLE runs that overrun the mask (an endless
    loop in pycocotools' iou) and a 1e308 polygon (a segfault in frPyObjects), in the golden file
    and in the batch, under segm for the golden, confusion and agreement gates. In a subprocess
    with a timeout, so that a regression fails here instead of killing pytest."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE_FILES],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    o = out["golden"]["metrics"]["overall"]
    assert (o["tp"], o["unmatchable"]["batch"], o["unmatchable"]["golden"]) == (1, 2, 3)
    assert any("cannot be drawn" in m for m in out["golden"]["messages"])
    assert out["confusion"]["verdict"] in ("passed", "failed")
    assert out["agreement"]["metrics"]["matched_pairs"] == 1


def test_cohort_rows_and_drift_by_cohort() -> None:
    """examples/defective with cohorts from ``cost.cohorts``: bob (vendorA, with alice) shifts
    his boxes. The per-annotator table gains a row per cohort (pooled objects); the drift
    check runs per cohort too (scope ``cohort:vendorA``), and the cost prices bob's drift
    once, on bob's labels: the cohort's drift is explained by its annotator's."""
    ex = Path(__file__).resolve().parents[1] / "examples"
    batch = load_batch(ex / "defective" / "batch.json")
    rules = {"cost": {"cohorts": {"alice": "vendorA", "bob": "vendorA", "carol": "vendorB"}}}
    res = GATE.run(batch, ctx_for(ex, {"file": "golden/golden.json", "max_drift": 0.01}, rules=rules))
    per, coh = res.metrics["per_annotator"], res.metrics["per_cohort"]
    assert set(coh) == {"vendorA", "vendorB"}
    for key in ("batch_objects", "tp", "mislabelled", "extra", "matched_pairs"):
        assert coh["vendorA"][key] == per["alice"][key] + per["bob"][key]
        assert coh["vendorB"][key] == per["carol"][key]
    failed = {(c.metric, c.scope) for c in res.failed_checks}
    assert ("drift.right", "cohort:vendorA") in failed and not any(s == "cohort:vendorB" for _, s in failed)
    names = [r[0] for r in res.tables["golden_per_annotator"][1:]]
    assert names == ["alice", "bob", "carol", "cohort:vendorA", "cohort:vendorB"]
    drift = [p for p in res.cost.patterns if p.kind == "drift"]
    assert [p.scope for p in drift] == ["annotator:bob"]
    assert set(res.cost.sampled.by_annotator) == {"alice", "bob", "carol"}  # the cost model maps them to cohorts
    # without annotators named (only a cohort check can fail), the cohort is priced on its labels
    from annogate.checks.golden import _cost_facts

    cohort_checks = [c for c in res.checks if c.scope == "cohort:vendorA"]
    facts = _cost_facts(batch, res.metrics["overall"], {}, cohort_checks, rules["cost"]["cohorts"])
    ab = [batch.annotators.index("alice"), batch.annotators.index("bob")]
    assert [(p.scope, p.affected) for p in facts.patterns] == [
        ("cohort:vendorA", float(np.isin(batch.annotations.annotator, ab).sum()))
    ]
