"""The confusion gate on the golden fixtures (see tests/test_golden.py for what they hold)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from annogate.checks import confusion, golden
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch
from annogate.stats import rate_decision, wilson_interval

DATA = Path(__file__).resolve().parent / "data"
VALID = DATA / "valid" / "golden"
INVALID = DATA / "invalid" / "golden"


def ctx_for(
    folder: Path,
    section: dict[str, Any],
    rules: dict[str, Any] | None = None,
    loads: list[Path] | None = None,
    cache: dict[str, Any] | None = None,
) -> GateContext:
    def load(p: Path) -> Batch:
        if loads is not None:
            loads.append(p)
        return load_batch(p)

    return GateContext(
        section=section, rules=rules or {}, base_dir=folder, load=load, cache={} if cache is None else cache
    )


def test_named_pair_fails_and_findings() -> None:
    batch = load_batch(INVALID / "batch.json")
    sec = {"pairs": {"cyclist->pedestrian": 0.02, "person->car": 0.1}}
    res = confusion.GATE.run(batch, ctx_for(INVALID, sec, rules={"golden": {"file": "golden.json"}}))
    assert res.verdict == "failed"
    failed = [(c.metric, c.scope) for c in res.failed_checks]
    # bob's one golden cyclist, labelled pedestrian, also fails bob's own pair check
    assert failed == [
        ("pair_rate", "pair:cyclist->pedestrian"),
        ("pair_rate", "annotator:bob|pair:cyclist->pedestrian"),
    ]
    # 1 of 1 golden cyclists: the value is the Wilson low end, the rate the sample is sure of
    low, _ = wilson_interval(1, 1)
    assert math.isclose(res.failed_checks[0].value, low) and low > 0.02
    assert [(f.rule, f.severity, f.category, f.image) for f in res.findings] == [
        ("confusion", "error", "pedestrian", "honey_01.jpg")
    ]
    assert "golden 'cyclist' labelled 'pedestrian'" in res.findings[0].message
    m = res.metrics
    pr = m["pairs"]["cyclist->pedestrian"]
    assert (pr["count"], pr["golden"], pr["rate"], pr["decision"]) == (1, 1, 1.0, "fails")
    assert "95% CI 20.7%-100.0%, n=1" in res.findings[0].message
    assert m["worst_pair"]["pair"] == "cyclist->pedestrian"
    rows, cols, counts = m["matrix"]["rows"], m["matrix"]["columns"], m["matrix"]["counts"]
    assert rows[-1] == "extra" and cols[-1] == "missing"
    assert counts[rows.index("car")][cols.index("missing")] == 1
    assert counts[rows.index("extra")][cols.index("car")] == 1
    assert counts[rows.index("person")][cols.index("person")] == 2
    assert res.tables["confusion_top_pairs"][1][0] == "cyclist->pedestrian"
    json.dumps(res.to_dict())


def test_max_pair_rate_and_min_support() -> None:
    batch = load_batch(INVALID / "batch.json")
    ctx = ctx_for(INVALID, {"file": "golden.json", "max_pair_rate": 0.15})
    res = confusion.GATE.run(batch, ctx)
    assert [(c.metric, c.scope) for c in res.failed_checks] == [
        ("pair_rate.max", "pair:cyclist->pedestrian"),
        ("pair_rate", "annotator:bob|pair:cyclist->pedestrian"),
    ]
    # one confused cyclist of one: 100%, but its interval (20.7%-100%) straddles 50%: undecided, passes
    res = confusion.GATE.run(batch, ctx_for(INVALID, {"file": "golden.json", "max_pair_rate": 0.5}))
    assert res.verdict == "passed"
    assert res.metrics["pairs"]["cyclist->pedestrian"]["decision"] == "undecided"
    assert res.metrics["pairs"]["cyclist->pedestrian"]["more_to_decide"] == 3
    assert "undecided, ~3 more golden 'cyclist' objects would decide" in res.findings[0].message
    # one golden cyclist is too few to judge with min_support = 2
    res = confusion.GATE.run(batch, ctx_for(INVALID, {"file": "golden.json", "max_pair_rate": 0.5, "min_support": 2}))
    assert res.verdict == "passed"
    assert [f.severity for f in res.findings] == ["warning"]


def test_valid_batch_passes() -> None:
    res = confusion.GATE.run(
        load_batch(VALID / "batch.json"),
        ctx_for(VALID, {"max_pair_rate": 0.0, "pairs": {"cyclist->pedestrian": 0.0}}, rules={"golden": "golden.json"}),
    )
    assert res.verdict == "passed" and res.findings == []
    assert res.metrics["worst_pair"] is None


def test_shares_the_golden_match() -> None:
    batch = load_batch(INVALID / "batch.json")
    loads: list[Path] = []
    cache: dict[str, Any] = {}
    rules = {"golden": {"file": "golden.json"}}
    golden.GATE.run(batch, ctx_for(INVALID, {"file": "golden.json"}, rules=rules, loads=loads, cache=cache))
    confusion.GATE.run(batch, ctx_for(INVALID, {}, rules=rules, loads=loads, cache=cache))
    assert len(loads) == 1
    # a different threshold is a different match
    confusion.GATE.run(batch, ctx_for(INVALID, {"iou": 0.9}, rules=rules, loads=loads, cache=cache))
    assert len(loads) == 2


def test_skipped_without_golden() -> None:
    res = confusion.GATE.run(load_batch(VALID / "batch.json"), ctx_for(VALID, {}))
    assert res.verdict == "skipped"


def test_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate({"pairs": {"a->b": 0.1}, "max_pair_rate": 0.2}, confusion.RULES_SCHEMA)
    for bad in ({"pairs": {"ab": 0.1}}, {"pairs": {"a->b": 2}}, {"max_rate": 0.1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, confusion.RULES_SCHEMA)


def test_pair_on_two_golden_objects_is_judged_on_its_interval(tmp_path: Path) -> None:
    """1 of 2 golden cyclists labelled pedestrian is 50%, far above a 10% limit as a point
    estimate, but its interval (9.5%-90.5%) reaches below the limit: undecided, not failed."""
    from tests.builders import Obj, make_batch

    imgs = {"a.jpg": (200.0, 200.0)}
    gold_objs = [
        Obj(image="a.jpg", category="cyclist", bbox=[10, 10, 30, 30]),
        Obj(image="a.jpg", category="cyclist", bbox=[100, 100, 30, 30]),
    ]
    batch_objs = [
        Obj(image="a.jpg", category="pedestrian", bbox=[10, 10, 30, 30]),
        Obj(image="a.jpg", category="cyclist", bbox=[100, 100, 30, 30]),
    ]
    classes = ["cyclist", "pedestrian"]
    gold = make_batch(gold_objs, images=imgs, categories=classes)
    batch = make_batch(batch_objs, images=imgs, categories=classes)
    (tmp_path / "g.json").write_text("{}")
    sec = {"file": "g.json", "pairs": {"cyclist->pedestrian": 0.1}, "max_pair_rate": 0.1}
    ctx = GateContext(section=sec, rules={}, base_dir=tmp_path, load=lambda p: gold)
    res = confusion.GATE.run(batch, ctx)
    assert res.verdict == "passed", res.failed_checks
    d = rate_decision(1, 2, 0.1, "<=")
    assert d.state == "undecided" and d.low < 0.1 < d.high
    assert res.metrics["pairs"]["cyclist->pedestrian"]["decision"] == "undecided"
    row = res.tables["confusion_top_pairs"][1]
    assert row[0] == "cyclist->pedestrian" and row[-1] == "undecided"
    # the same habit on 40 of 80 golden cyclists is sure: fails
    gold = make_batch(
        [Obj(image="a.jpg", category="cyclist", bbox=[2 * i, 0, 2, 2]) for i in range(80)],
        images=imgs,
        categories=classes,
    )
    batch = make_batch(
        [Obj(image="a.jpg", category=classes[i % 2], bbox=[2 * i, 0, 2, 2]) for i in range(80)],
        images=imgs,
        categories=classes,
    )
    ctx = GateContext(section=sec, rules={}, base_dir=tmp_path, load=lambda p: gold)
    res = confusion.GATE.run(batch, ctx)
    assert {(c.metric, c.scope) for c in res.failed_checks} == {
        ("pair_rate", "pair:cyclist->pedestrian"),
        ("pair_rate.max", "pair:cyclist->pedestrian"),
    }


def test_confusion_per_annotator_names_who() -> None:
    """examples/defective: the cyclists labelled pedestrian are alice's; the per-annotator
    table says so, with the rate over her own golden cyclists and its interval."""
    ex = Path(__file__).resolve().parents[1] / "examples"
    batch = load_batch(ex / "defective" / "batch.json")
    res = confusion.GATE.run(batch, ctx_for(ex, {"file": "golden/golden.json", "max_pair_rate": 0.1}))
    per = res.metrics["per_annotator"]
    assert set(per) == {"alice"} and set(per["alice"]) == {"cyclist->pedestrian"}
    rec = per["alice"]["cyclist->pedestrian"]
    low, high = wilson_interval(rec["count"], rec["golden"])
    assert (rec["ci95_low"], rec["ci95_high"]) == (low, high) and rec["decision"] == "undecided"
    table = res.tables["confusion_per_annotator"]
    assert table[0][:2] == ["annotator", "pair"] and table[1][:3] == ["alice", "cyclist->pedestrian", rec["count"]]


COHORTS = {"cost": {"cohorts": {"alice": "vendorA", "bob": "vendorA", "carol": "vendorB"}}}


def test_per_annotator_pair_check_names_who_and_prices_their_labels() -> None:
    """examples/defective: alice labels 2 of her 7 golden cyclists pedestrian. With a 5% limit
    the whole interval of her own rate lies above it: a check with scope
    ``annotator:alice|pair:cyclist->pedestrian`` fails, her confused objects are errors, and
    the pattern is priced once, on alice's labels (N_alice x 2 / her paired objects), not
    again as the overall pair or as her cohort's."""
    ex = Path(__file__).resolve().parents[1] / "examples"
    batch = load_batch(ex / "defective" / "batch.json")
    sec = {"file": "golden/golden.json", "pairs": {"cyclist->pedestrian": 0.05}, "max_pair_rate": 0.05}
    res = confusion.GATE.run(batch, ctx_for(ex, sec, rules=COHORTS))
    failed = [(c.metric, c.scope) for c in res.failed_checks]
    assert ("pair_rate", "annotator:alice|pair:cyclist->pedestrian") in failed
    assert ("pair_rate", "cohort:vendorA|pair:cyclist->pedestrian") in failed
    assert not any(s.startswith(("annotator:bob", "annotator:carol", "cohort:vendorB")) for _, s in failed)
    check = next(c for c in res.checks if c.scope == "annotator:alice|pair:cyclist->pedestrian")
    rec = res.metrics["per_annotator"]["alice"]["cyclist->pedestrian"]
    assert check.value == pytest.approx(wilson_interval(rec["count"], rec["golden"])[0])
    assert {f.annotator for f in res.findings if f.severity == "error"} == {"alice"}
    assert [p.scope for p in res.cost.patterns] == ["annotator:alice|pair:cyclist->pedestrian"]
    alice = batch.annotators.index("alice")
    labels = int((batch.annotations.annotator == alice).sum())
    # her objects paired with a golden object, counted independently of the gate
    g = golden.GATE.run(batch, ctx_for(ex, {"file": "golden/golden.json"}))
    paired = g.metrics["per_annotator"]["alice"]["tp"] + g.metrics["per_annotator"]["alice"]["mislabelled"]
    assert res.cost.patterns[0].annotator == "alice"
    assert res.cost.patterns[0].affected == pytest.approx(labels * rec["count"] / paired)
    # the cohort's table rows
    table = res.tables["confusion_per_annotator"]
    assert ["cohort:vendorA", "cyclist->pedestrian"] == table[-1][:2]
    assert res.metrics["per_cohort"]["vendorA"]["cyclist->pedestrian"]["count"] == rec["count"]


def test_cohort_pattern_priced_when_no_annotator_of_it_fails() -> None:
    from annogate.checks.confusion import _cost_facts
    from annogate.findings import ThresholdCheck

    def chk(scope: str) -> ThresholdCheck:
        return ThresholdCheck(metric="pair_rate", scope=scope, value=0.5, limit=0.1, op="<=")

    counts = Counter({("cyclist", "pedestrian"): 10, ("cyclist", "cyclist"): 10})
    rows = Counter({"cyclist": 20})
    sizes = {"cohort:v|pair:cyclist->pedestrian": (100, 20, 10), "annotator:a|pair:cyclist->pedestrian": (50, 10, 5)}
    only_cohort = _cost_facts(
        [chk("pair:cyclist->pedestrian"), chk("cohort:v|pair:cyclist->pedestrian")],
        counts,
        rows,
        n_labels=400,
        groups=sizes,
    )
    assert [(p.scope, p.affected) for p in only_cohort.patterns] == [("cohort:v|pair:cyclist->pedestrian", 50.0)]
    both = _cost_facts(
        [chk("cohort:v|pair:cyclist->pedestrian"), chk("annotator:a|pair:cyclist->pedestrian")],
        counts,
        rows,
        n_labels=400,
        groups=sizes,
    )
    assert [(p.scope, p.affected) for p in both.patterns] == [("annotator:a|pair:cyclist->pedestrian", 25.0)]
    # a named pair that is also the worst: one pattern, not two
    twice = [
        chk("pair:cyclist->pedestrian"),
        ThresholdCheck(metric="pair_rate.max", scope="pair:cyclist->pedestrian", value=0.5, limit=0.1, op="<="),
    ]
    overall = _cost_facts(twice, counts, rows, n_labels=400)
    assert len(overall.patterns) == 1 and len(overall.patterns[0].checks) == 2
