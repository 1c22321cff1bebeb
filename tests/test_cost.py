"""The rework-cost model against figures derived by hand (never from its own output).

Reference case from the product brief: 200,000 labels, defect rate d = 0.05,
correction error rate r = 0.05, two cycles: 10,000 first-pass corrections plus
500 corrections of corrections = 10,500.

The estimate reads only the typed facts gates put in ``GateResult.cost``
(:mod:`annogate.defects`), so these tests build such results directly; the tests
at the end feed it the results of the real gates on the bundled examples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annogate.cost import (
    RULES_SCHEMA,
    UNKNOWN,
    CostParameters,
    composition_from_batch,
    cycle_factor,
    estimate_cost,
    expected_corrections,
)
from annogate.defects import CostFacts, DefectRows, Pattern, SampledDefects
from annogate.findings import GateResult
from annogate.model import SEG_NONE, SEG_POLYGON, SEG_RLE, Annotations, Batch, Categories, Images


def sampled(
    defects: int,
    sample: int,
    *,
    by_type: dict[str, int] | None = None,
    by_annotator: dict[str, tuple[int, int]] | None = None,
    gate: str = "golden",
) -> GateResult:
    facts = CostFacts(
        sampled=SampledDefects(defects=defects, sample=sample, by_type=by_type or {}, by_annotator=by_annotator or {})
    )
    return GateResult(gate=gate, verdict="failed" if defects else "passed", cost=facts)


def exact(gate: str, rows: list[tuple[str, int, str | None, str | None]]) -> GateResult:
    """(error type, row, annotator, class) per defect; grouped by error type as a gate does."""
    by: dict[str, list[tuple[int, str | None, str | None]]] = {}
    for rule, row, who, cls in rows:
        by.setdefault(rule, []).append((row, who, cls))
    facts = CostFacts(
        exact=tuple(
            DefectRows(
                error_type=rule,
                rows=tuple(r for r, _, _ in v),
                annotators=tuple(w for _, w, _ in v),
                categories=tuple(c for _, _, c in v),
            )
            for rule, v in by.items()
        )
    )
    return GateResult(gate=gate, verdict="failed", cost=facts)


def patterns(gate: str, *pats: Pattern) -> GateResult:
    return GateResult(gate=gate, verdict="failed", cost=CostFacts(patterns=tuple(pats)))


# --------------------------------------------------------------------------- cycles


def test_brief_reference_case_10500_corrections() -> None:
    assert expected_corrections(200_000, 0.05, 0.05, 2) == pytest.approx(10_500)
    assert cycle_factor(0.05, 2) == pytest.approx(1.05)
    assert cycle_factor(0.05, 1) == 1.0


def test_many_cycles_tend_to_geometric_limit() -> None:
    # N d / (1 - r) = 10,000 / 0.95
    assert expected_corrections(200_000, 0.05, 0.05, 200) == pytest.approx(10_000 / 0.95, rel=1e-12)
    assert expected_corrections(200_000, 0.05, 0.05, 3) == pytest.approx(10_000 + 500 + 25)


def test_cycle_factor_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        cycle_factor(1.0, 2)
    with pytest.raises(ValueError):
        cycle_factor(0.1, 0)


# --------------------------------------------------------------------------- estimate


def test_estimate_reference_case_in_money() -> None:
    # golden: 50 defects in 1,000 sampled objects -> d = 0.05; r defaults to d.
    params = {"rework_multiplier": 1.0}
    est = estimate_cost(n_labels=200_000, results=[sampled(50, 1000)], params=params)
    assert est.golden_defects == 50 and est.golden_sample == 1000
    assert est.expected.defect_rate == pytest.approx(0.05)
    assert est.expected.correction_error_rate == pytest.approx(0.05)
    assert est.expected.corrections == pytest.approx(10_500)
    assert est.direct == pytest.approx(10_000)  # 200,000 x 0.05
    assert est.qa == pytest.approx(2_000)  # 20 % of direct
    assert est.rework == pytest.approx(525)  # 10,500 x 0.05 x 1.0
    assert est.downstream == 0
    assert est.total == pytest.approx(12_525)
    assert est.overhead_ratio == pytest.approx(2_525 / 10_000)
    # 95 % Wilson interval for 50/1000, by hand: 0.03813 .. 0.06531
    assert est.low.defect_rate == pytest.approx(0.03813, abs=1e-5)
    assert est.high.defect_rate == pytest.approx(0.06531, abs=1e-5)


def test_default_overhead_of_a_typical_batch_is_in_the_published_range() -> None:
    # 5 % defects, no systematic pattern: QA 20 % + rework 5 % x 1.05 x 2 = 30.5 %,
    # inside the 30-60 % that QA, rework and remediation add to direct cost
    est = estimate_cost(n_labels=200_000, results=[sampled(50, 1000)])
    assert est.overhead_ratio == pytest.approx(0.20 + 0.05 * 1.05 * 2.0)
    assert 0.30 <= est.overhead_ratio <= 0.60
    # a systematic pattern on 1 % of the labels stays inside the range too
    pat = patterns("golden", Pattern(kind="drift", scope="annotator:bob", affected=2000, annotator="bob"))
    est = estimate_cost(
        n_labels=200_000, results=[sampled(50, 1000), pat], params={"downstream": {"downstream_multiplier": 1.0}}
    )
    assert 0.30 <= est.overhead_ratio <= 0.60


def test_no_defects_costs_direct_plus_qa_only() -> None:
    est = estimate_cost(
        n_labels=10_000, results=[sampled(0, 1000)], params={"price_per_label": 0.1, "qa_fraction": 0.25}
    )
    assert est.direct == pytest.approx(1_000)
    assert est.qa == pytest.approx(250)
    assert est.rework == 0 and est.downstream == 0
    assert est.total == pytest.approx(1_250)
    assert est.overhead_ratio == pytest.approx(0.25)
    assert est.expected.corrections == 0 and est.low.rework == 0


def test_zero_labels_has_no_ratio() -> None:
    est = estimate_cost(n_labels=0, results=[])
    assert est.total == 0 and est.overhead_ratio is None


def test_exact_defects_are_counted_once_per_row_across_rules_and_gates() -> None:
    geo = exact(
        "geometry",
        [
            ("tiny_box", 1, "alice", "car"),
            ("outside_image", 1, "alice", "car"),  # same row: one correction
            ("outside_image", 2, "bob", "car"),
        ],
    )
    schema = exact("schema", [("dangling_image_id", 2, "bob", "car")])  # row 2 again, another gate
    params = {"price_per_label": 1.0, "correction_error_rate": 0.5, "max_cycles": 2, "rework_multiplier": 1.0}
    est = estimate_cost(n_labels=100, results=[geo, schema], params=params)
    assert est.deterministic_defects == 2
    assert est.golden_sample is None
    assert est.low.first_pass_defects == est.high.first_pass_defects == 2  # exact: no interval
    assert est.expected.corrections == pytest.approx(3)  # 2 x (1 + 0.5)
    assert est.rework == pytest.approx(3.0)
    by_rule = {b.key: b for b in est.by_error_type}
    assert by_rule["outside_image"].defects == pytest.approx(1.0)
    assert by_rule["tiny_box"].defects == pytest.approx(0.5)
    assert by_rule["dangling_image_id"].defects == pytest.approx(0.5)
    assert {b.key: b.amount for b in est.by_annotator} == pytest.approx({"alice": 1.5, "bob": 1.5})
    assert sum(b.amount for b in est.by_error_type) == pytest.approx(est.rework)
    assert sum(b.amount for b in est.by_class) == pytest.approx(est.rework)


def test_a_skipped_gate_contributes_nothing() -> None:
    res = exact("geometry", [("tiny_box", 1, None, None)])
    res.verdict = "skipped"
    assert estimate_cost(n_labels=10, results=[res]).deterministic_defects == 0


def test_exact_plus_sampled_defects() -> None:
    # 1,000 labels, 100 known bad; golden d = 0.1 applies to the other 900 -> 90.
    gate = exact("schema", [("dangling", i, None, None) for i in range(100)])
    est = estimate_cost(n_labels=1000, results=[gate, sampled(10, 100)], params={"correction_error_rate": 0.0})
    assert est.expected.first_pass_defects == pytest.approx(190)
    assert est.expected.overall_defect_rate == pytest.approx(0.19)
    assert est.low.first_pass_defects >= 100


def test_default_correction_error_rate_is_measured_rate() -> None:
    est = estimate_cost(n_labels=1000, results=[sampled(20, 100)])
    assert est.expected.correction_error_rate == pytest.approx(0.2)
    assert est.expected.corrections == pytest.approx(200 * 1.2)


def test_itemisation_by_sampled_error_type_and_cohort() -> None:
    g = sampled(
        100,
        1000,
        by_type={"mislabelled": 50, "missing": 30, "extra": 20},
        by_annotator={"alice": (50, 400), "bob": (25, 300), "carol": (25, 300)},
    )
    params = {
        "correction_error_rate": 0.0,
        "price_per_label": 1.0,
        "rework_multiplier": 1.0,
        "cohorts": {"alice": "vendor-a", "bob": "vendor-a"},
    }
    est = estimate_cost(n_labels=10_000, results=[g], params=params)
    assert est.rework == pytest.approx(1000)
    assert {b.key: b.amount for b in est.by_error_type} == pytest.approx(
        {"mislabelled": 500, "missing": 300, "extra": 200}
    )
    # attributed by each annotator's share of the sampled defects
    assert {b.key: b.amount for b in est.by_annotator} == pytest.approx({"vendor-a": 750, "carol": 250})
    rework_lines = [i for i in est.line_items if i.category == "rework"]
    assert sum(i.amount for i in rework_lines) == pytest.approx(est.rework)


def test_sampled_defects_without_annotators_go_to_unknown() -> None:
    est = estimate_cost(n_labels=100, results=[sampled(10, 100)], params={"correction_error_rate": 0.0})
    assert [b.key for b in est.by_annotator] == [UNKNOWN]


def test_a_second_sampled_gate_is_noted_not_added() -> None:
    est = estimate_cost(n_labels=100, results=[sampled(10, 100), sampled(50, 100, gate="thirdparty")])
    assert est.golden_defects == 10
    assert any("thirdparty" in n for n in est.notes)


def test_prices_per_class_and_type() -> None:
    params = {
        "price_per_label": {"default": 0.05, "polygon": 0.2, "classes": {"person": 0.1, "car": {"polygon": 0.5}}},
        "correction_error_rate": 0.0,
    }
    mix: dict[tuple[str | None, str], int] = {
        ("person", "bbox"): 100,
        ("person", "polygon"): 100,
        ("car", "polygon"): 100,
        ("car", "bbox"): 100,
        ("tree", "polygon"): 100,
    }
    est = estimate_cost(n_labels=500, results=[], params=params, composition=mix)
    # person 200 x 0.1 + car poly 100 x 0.5 + car bbox 100 x 0.05 + tree poly 100 x 0.2
    assert est.direct == pytest.approx(20 + 50 + 5 + 20)
    assert sum(i.amount for i in est.line_items if i.category == "direct") == pytest.approx(est.direct)
    assert est.class_unit_prices["car"] == pytest.approx(0.275)
    p = CostParameters.from_rules(params)
    assert p.price("car", "bbox") == 0.05 and p.price("car", "polygon") == 0.5 and p.price(None, "polygon") == 0.2


def test_partial_estimate_names_the_gates_that_did_not_run() -> None:
    est = estimate_cost(n_labels=100, results=[sampled(1, 10)], not_run=["geometry", "schema"])
    assert est.partial == ("geometry", "schema")
    assert any("partial" in n and "geometry" in n for n in est.notes)
    assert est.to_dict()["partial"] == ["geometry", "schema"]


# --------------------------------------------------------------------------- downstream


def test_downstream_counted_per_pattern_fixed_remediation() -> None:
    g = patterns(
        "golden",
        Pattern(kind="drift", scope="class:person", affected=100, category="person"),
        Pattern(kind="drift", scope="class:car", affected=50, category="car"),
    )
    conf = patterns(
        "confusion", Pattern(kind="confusion", scope="pair:cyclist->pedestrian", affected=10, category="cyclist")
    )
    params = {
        "downstream": {"retrain_cost": 1000.0, "engineer_hours": 10, "hourly_rate": 100.0, "downstream_multiplier": 0}
    }
    est = estimate_cost(n_labels=1000, results=[g, conf], params=params)
    assert [p.key for p in est.patterns] == [
        "confusion:confusion:pair:cyclist->pedestrian",
        "golden:drift:class:car",
        "golden:drift:class:person",
    ]
    assert est.downstream == pytest.approx(3 * (1000 + 10 * 100))
    assert len([i for i in est.line_items if i.category == "downstream"]) == 3
    assert est.total == pytest.approx(est.direct + est.qa + est.downstream)


def test_downstream_is_priced_on_the_labels_a_pattern_affects() -> None:
    # bob's 60 boxes drifted: 10 x (60 x 0.1 x 2.0) = 120, not the batch's 4,000 labels
    g = patterns("golden", Pattern(kind="drift", scope="annotator:bob", affected=60, annotator="bob"))
    params = {"price_per_label": 0.1, "correction_error_rate": 0.0, "downstream": {"retrain_cost": 50.0}}
    est = estimate_cost(n_labels=4000, results=[g], params=params)
    assert est.downstream == pytest.approx(120)
    params["downstream"] = {"retrain_cost": 5000.0}
    assert estimate_cost(n_labels=4000, results=[g], params=params).downstream == pytest.approx(5000)


# --------------------------------------------------------------------------- interval, monotonicity


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), data=st.data())
def test_interval_contains_point_estimate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    est = estimate_cost(n_labels=100_000, results=[sampled(k, n)])
    assert est.low.defect_rate <= est.expected.defect_rate <= est.high.defect_rate
    assert est.expected.defect_rate == pytest.approx(k / n)
    assert est.low.rework <= est.rework <= est.high.rework
    assert est.low.total <= est.total <= est.high.total


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 2000),
    labels=st.integers(0, 1_000_000),
    cycles=st.integers(1, 6),
    r=st.one_of(st.none(), st.floats(0, 0.9)),
    data=st.data(),
)
def test_cost_is_monotonic_in_defect_rate(
    n: int, labels: int, cycles: int, r: float | None, data: st.DataObject
) -> None:
    k1 = data.draw(st.integers(0, n))
    k2 = data.draw(st.integers(k1, n))
    params = {"max_cycles": cycles} | ({} if r is None else {"correction_error_rate": r})
    a = estimate_cost(n_labels=labels, results=[sampled(k1, n)], params=params)
    b = estimate_cost(n_labels=labels, results=[sampled(k2, n)], params=params)
    assert a.expected.corrections <= b.expected.corrections * (1 + 1e-12) + 1e-9
    assert a.rework <= b.rework * (1 + 1e-12) + 1e-9
    assert a.total <= b.total * (1 + 1e-12) + 1e-9


# --------------------------------------------------------------------------- schema, defaults, output


def test_rules_schema_accepts_documented_keys_and_rejects_unknown() -> None:
    jsonschema.Draft202012Validator.check_schema(RULES_SCHEMA)
    ok = {
        "currency": "EUR",
        "price_per_label": {"default": 0.04, "polygon": 0.12, "classes": {"person": 0.08, "car": {"mask": 0.3}}},
        "qa_fraction": 0.2,
        "rework_multiplier": 1.5,
        "correction_error_rate": 0.05,
        "max_cycles": 3,
        "cohorts": {"alice": "vendor-a"},
        "downstream": {"retrain_cost": 800, "engineer_hours": 16, "hourly_rate": 90, "downstream_multiplier": 10},
    }
    jsonschema.validate(ok, RULES_SCHEMA)
    for bad in (
        {"price": 1},
        {"downstream": {"retrain": 1}},
        {"max_cycles": 0},
        {"price_per_label": {"line": 1}},
        {"correction_error_rate": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, RULES_SCHEMA)
    p = CostParameters.from_rules(ok)
    assert p.currency == "EUR" and p.max_cycles == 3 and p.fixed_remediation == 800 + 16 * 90


def test_defaults_live_in_one_place() -> None:
    p = CostParameters.from_rules({})
    assert p == CostParameters()
    assert (p.currency, p.price_default, p.qa_fraction, p.rework_multiplier, p.max_cycles) == ("USD", 0.05, 0.2, 2.0, 2)
    assert p.correction_error_rate is None and p.downstream_multiplier == 10.0
    # the schema shows the dataclass's defaults, not a copy that could drift
    props = RULES_SCHEMA["properties"]
    assert props["qa_fraction"]["default"] == p.qa_fraction
    assert props["rework_multiplier"]["default"] == p.rework_multiplier
    assert props["downstream"]["properties"]["downstream_multiplier"]["default"] == p.downstream_multiplier


def test_to_dict_is_strict_json() -> None:
    pat = patterns(
        "golden",
        Pattern(kind="drift", scope="overall", affected=10, checks=({"metric": "drift.left", "passed": False},)),
    )
    est = estimate_cost(
        n_labels=1000, results=[sampled(100, 1000), pat, exact("geometry", [("tiny_box", 1, None, None)])]
    )
    d = json.loads(json.dumps(est.to_dict(), allow_nan=False))
    assert d["scenarios"]["expected"]["total"] == pytest.approx(est.total)
    assert d["patterns"][0]["checks"][0]["passed"] is False
    assert d["patterns"][0]["gate"] == "golden" and d["patterns"][0]["amount"] == pytest.approx(est.downstream)
    assert math.isclose(est.correction_cost(), est.unit_price * est.rework_multiplier * est.cycle_factor)


def test_composition_from_batch() -> None:
    n = 4
    ann = Annotations(
        id=np.arange(n, dtype=np.int64),
        image=np.zeros(n, np.int32),
        category=np.array([0, 0, 1, -1], np.int32),
        image_id=np.zeros(n, np.int64),
        category_id=np.array([1, 1, 2, 9], np.int64),
        bbox=np.ones((n, 4)),
        area=np.ones(n),
        iscrowd=np.zeros(n, bool),
        score=np.full(n, np.nan),
        annotator=np.full(n, -1, np.int32),
        line=np.arange(n, dtype=np.int32) + 1,
        file=np.zeros(n, np.int32),
        seg_kind=np.array([SEG_NONE, SEG_POLYGON, SEG_RLE, SEG_NONE], np.int8),
        poly_xy=np.zeros(6),
        ring_offsets=np.array([0, 6], np.int64),
        ann_ring_offsets=np.array([0, 0, 1, 1, 1], np.int64),
        rle=np.array([None, None, {"size": [1, 1], "counts": "1"}, None], dtype=object),
        keypoints=np.zeros(3),
        kp_offsets=np.array([0, 0, 0, 0, 1], np.int64),
        num_keypoints=np.array([-1, -1, -1, 1], np.int32),
    )
    cats = Categories(
        id=np.array([1, 2], np.int64),
        name=np.array(["person", "car"], dtype=object),
        supercategory=np.array(["", ""], dtype=object),
        keypoints=((), ()),
        line=np.array([1, 2], np.int32),
    )
    batch = Batch(
        path=Path("b.json"), format="coco", images=Images.empty(), categories=cats, annotations=ann, files=("b.json",)
    )
    assert composition_from_batch(batch) == {
        ("person", "bbox"): 1,
        ("person", "polygon"): 1,
        ("car", "mask"): 1,
        (None, "keypoints"): 1,
    }


# --------------------------------------------------------------------------- the real gates


def test_estimate_from_the_real_gates_on_the_defective_example() -> None:
    """The gates' own results: figures add up, bob is named, nothing is counted twice."""
    from annogate.engine import Engine

    root = Path(__file__).resolve().parent.parent / "examples"
    path = root / "defective" / "batch.json"
    engine = Engine()
    results = [engine.run_gate(path, g.name) for g in engine.gates]
    batch = engine.load(path)
    est = estimate_cost(
        n_labels=len(batch.annotations),
        results=results,
        params=engine.rules_for(path).section("cost"),
        composition=composition_from_batch(batch),
    )
    assert sum(b.amount for b in est.by_error_type) == pytest.approx(est.rework)
    assert sum(b.amount for b in est.by_annotator) == pytest.approx(est.rework)
    assert sum(i.amount for i in est.line_items) == pytest.approx(est.total)
    assert est.total == pytest.approx(est.direct + est.qa + est.rework + est.downstream)
    assert est.low.total <= est.total <= est.high.total
    # bob's right shift is one pattern on bob's labels, not the whole batch's
    drift = [p for p in est.patterns if p.pattern.kind == "drift"]
    assert [p.pattern.scope for p in drift] == ["annotator:bob"]
    bob = batch.annotators.index("bob")
    assert drift[0].pattern.affected == int((batch.annotations.annotator == bob).sum())
    # a golden cyclist labelled pedestrian is one sampled defect (golden's), the confusion
    # gate adds only the pattern
    golden = next(r for r in results if r.gate == "golden")
    assert golden.cost is not None and golden.cost.sampled is not None
    assert est.golden_defects == golden.cost.sampled.defects
    conf = next(r for r in results if r.gate == "confusion")
    assert conf.cost is not None and conf.cost.sampled is None and not conf.cost.exact
    # alice's habit: priced on her labels, the overall pair not a second time
    assert [p.pattern.scope for p in est.patterns if p.gate == "confusion"] == [
        "annotator:alice|pair:cyclist->pedestrian"
    ]
    # the four exact defects: dangling category, box past the edge, zero-width box, bow-tie
    assert est.deterministic_defects == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"price_per_label": 1e308},
        {"price_per_label": {"classes": {"car": 1e300}}},
        {"rework_multiplier": 1e300},
        {"downstream": {"downstream_multiplier": 1e300}},
        {"downstream": {"hourly_rate": 1e12}},
    ],
)
def test_rules_schema_bounds_money_so_the_estimate_stays_finite(bad: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RULES_SCHEMA)


def test_the_largest_accepted_figures_give_a_finite_estimate() -> None:
    params = {
        "price_per_label": 1e9,
        "rework_multiplier": 1e6,
        "qa_fraction": 1e6,
        "downstream": {"downstream_multiplier": 1e6, "retrain_cost": 1e9, "engineer_hours": 1e6, "hourly_rate": 1e9},
    }
    pat = patterns("golden", Pattern(kind="drift", scope="overall", affected=1e7))
    est = estimate_cost(n_labels=10_000_000, results=[sampled(999, 1000), pat], params=params)
    assert all(math.isfinite(v) for v in (est.total, est.low.total, est.high.total, est.downstream))
