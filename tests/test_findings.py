"""Findings stay bounded whatever the batch holds (issue 8).

300,000 defects once cost 3.1 GB and a 256 KB class name on 2,000 bad boxes a 1 GB
report. Three guarantees close that class for every gate: every string a finding
holds is cut where the finding is made; at most ``max_findings_per_rule`` findings are
kept per rule while every defect is counted; threshold checks judge all defects, not
the findings kept. Each test here fails on the tree before these guarantees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.checks import geometry, schema
from annogate.engine import Engine
from annogate.findings import (
    DEFAULT_MAX_FINDINGS_PER_RULE,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    Finding,
    FindingLog,
    GateResult,
    ThresholdCheck,
    bound_text,
    findings_for_rows,
)
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch
from annogate.rules import RulesError, load_rules
from tests.builders import Obj, make_batch

LONG = "n" * 262_144  # 256 KB, as in the issue
_NAME_FIELDS = ("gate", "rule", "image", "category", "annotator")
_TEXT_FIELDS = ("message", "file", "pointer")


def _bounded(f: Finding) -> None:
    for name in _NAME_FIELDS:
        v = getattr(f, name)
        assert v is None or len(v) <= MAX_NAME_CHARS, (name, len(v))
    for name in _TEXT_FIELDS:
        v = getattr(f, name)
        assert v is None or len(v) <= MAX_TEXT_CHARS, (name, len(v))


def _run(
    gate: Any, batch: Batch, section: Mapping[str, Any] | None = None, rules: Mapping[str, Any] | None = None
) -> GateResult:
    ctx = GateContext(section=dict(section or {}), rules=dict(rules or {}), base_dir=batch.path.parent, load=load_batch)
    result: GateResult = gate.run(batch, ctx)
    return result


def _bad_boxes(n: int, *, category: str = "x", image: str = "a.jpg", annotator: str | None = None) -> Batch:
    """``n`` boxes of negative width (box_nonpositive) on one image."""
    objs = [Obj(image=image, category=category, bbox=[i % 90, 5, -1, 4], annotator=annotator) for i in range(n)]
    return make_batch(objs, images={image: (100, 100)}, categories=[category])


def _check(result: GateResult, metric: str, scope: str = "overall") -> ThresholdCheck:
    (c,) = [c for c in result.checks if c.metric == metric and c.scope == scope]
    return c


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("field", _NAME_FIELDS + _TEXT_FIELDS)
def test_every_string_field_is_cut_where_the_finding_is_made(field: str) -> None:
    base: dict[str, Any] = {"gate": "g", "rule": "r", "message": "m", "file": "f.json"}
    f = Finding(**(base | {field: LONG}))
    v = getattr(f, field)
    limit = MAX_NAME_CHARS if field in _NAME_FIELDS else MAX_TEXT_CHARS
    tail = f"… ({len(LONG)} chars)"
    assert v == "n" * (limit - len(tail)) + tail
    assert len(v) == limit
    assert Finding(**(base | {field: v})) == f  # cutting is idempotent (from_dict of a cut finding)
    # a short value is left alone, and so is a value exactly at the limit
    assert getattr(Finding(**(base | {field: "n" * limit})), field) == "n" * limit


def test_from_dict_cuts_too() -> None:
    """A result shipped by an xdist worker (or a hand-made dict) goes through the same cut."""
    d = GateResult(gate="g", verdict="failed", findings=[]).to_dict()
    d["findings"] = [{"gate": "g", "rule": "r", "message": LONG, "file": "f", "category": LONG}]
    (f,) = GateResult.from_dict(d).findings
    _bounded(f)


def test_bound_text_keeps_the_length_visible() -> None:
    assert bound_text("abc", 5) == "abc"
    assert bound_text("abcdefgh" * 10, 20) == "abcdefgh… (80 chars)"
    assert bound_text("abcdefgh" * 10, 5) == "… (80 chars)"  # never longer than the tail


def test_findings_for_rows_cuts_batch_names() -> None:
    """Class, image and annotator names come from the batch: cut once, shared by every row."""
    batch = _bad_boxes(50, category=LONG, image="i" * 100_000 + ".jpg", annotator="a" * 100_000)
    fs = findings_for_rows(batch, np.arange(50), gate="geometry", rule="box_nonpositive", messages="bad")
    assert len(fs) == 50
    for f in fs:
        _bounded(f)
        assert f.category is not None and f.category.startswith("nnn") and "(262144 chars)" in f.category
        assert f.annotator is not None and "(100000 chars)" in f.annotator
    assert len({id(f.category) for f in fs}) == 1  # one cut string, not 50 copies


def test_findings_for_rows_matches_the_batch_row_by_row() -> None:
    """The vectorised gather gives what the per-row Batch accessors give."""
    objs = [
        Obj(image=f"{i % 3}.jpg", category="ab"[i % 2], bbox=[1, 1, 2, 2], annotator=["p", "q", None][i % 3])
        for i in range(12)
    ]
    batch = make_batch(objs, images={f"{k}.jpg": (10, 10) for k in range(3)}, categories=["a", "b"])
    rows = np.array([11, 0, 5, 5, 7])
    fs = findings_for_rows(batch, rows, gate="g", rule="r", messages=[f"m{i}" for i in rows], values=[1, 2, 3, 4, 5])
    for k, (f, i) in enumerate(zip(fs, rows.tolist(), strict=True)):
        assert (f.image, f.category, f.annotator) == (
            batch.image_name(i),
            batch.category_name(i),
            batch.annotator_name(i),
        )
        assert (f.file, f.pointer, f.line) == (
            batch.source_file(i),
            batch.pointer(i),
            int(batch.annotations.line[i]) or None,
        )
        assert (f.annotation_id, f.message, f.value) == (int(batch.annotations.id[i]), f"m{i}", float(k + 1))


def test_long_names_through_geometry_and_schema_stay_small() -> None:
    """The issue's case, scaled down: a 256 KB class, image and annotator name on bad boxes."""
    batch = _bad_boxes(50, category=LONG, image=LONG + ".jpg", annotator=LONG)
    for gate, rules in ((geometry, {}), (schema, {"taxonomy": {"classes": ["person"]}})):
        r = _run(gate, batch, rules=rules)
        assert r.findings, gate
        for f in r.findings:
            _bounded(f)
        size = len(json.dumps([f.to_dict() for f in r.findings]))
        assert size < 50 * 4_000, (gate, size)  # was 50 x 3 x 256 KB
    unknown = [f for f in _run(schema, batch, rules={"taxonomy": {"classes": ["person"]}}).findings]
    assert any(f.rule == "unknown_class" and len(f.message) < 400 for f in unknown)


def test_long_names_whole_result_stays_small() -> None:
    """The cost facts name every defective row's class and annotator: cut there too."""
    batch = _bad_boxes(200, category=LONG, annotator=LONG)
    r = _run(geometry, batch)
    assert len(json.dumps(r.to_dict())) < 1_000_000


# --------------------------------------------------------------------------- the cap and exact counts


def test_cap_keeps_n_findings_and_counts_all_of_them() -> None:
    """5,000 bad boxes, cap 100: 100 findings, counts and the check value say 5,000."""
    batch = _bad_boxes(5_000)
    section = {
        "thresholds": {
            "max_findings_per_rule": 100,
            "box_nonpositive": {"max_count": 4_999, "per_class": {"x": {"max_count": 4_999, "max_rate": 0.5}}},
        }
    }
    r = _run(geometry, batch, section)
    kept = [f for f in r.findings if f.rule == "box_nonpositive"]
    assert len(kept) == 100
    assert r.counts_by_rule()["box_nonpositive"] == 5_000
    assert r.finding_counts["box_nonpositive"] == 5_000
    assert r.findings_dropped == 4_900
    assert _check(r, "box_nonpositive.count").value == 5_000
    assert _check(r, "box_nonpositive.count", "class:x").value == 5_000
    assert _check(r, "box_nonpositive.rate", "class:x").value == 1.0
    assert r.verdict == "failed" and not _check(r, "box_nonpositive.count").passed
    assert r.metrics["findings_by_type"]["box_nonpositive"] == 5_000
    assert r.metrics["findings"] == 5_000
    # the cost estimate still sees every defective row
    assert r.cost is not None
    assert sum(len(d.rows) for d in r.cost.exact if d.error_type == "box_nonpositive") == 5_000
    # the cap is not an error type
    assert not any(c.metric.startswith("max_findings_per_rule") for c in r.checks)


def test_thresholds_judge_all_defects_not_the_kept_ones() -> None:
    """A limit between the cap and the true count must fail the gate."""
    batch = _bad_boxes(300)
    r = _run(geometry, batch, {"thresholds": {"max_findings_per_rule": 10, "box_nonpositive": {"max_count": 50}}})
    assert len(r.findings) == 10
    assert _check(r, "box_nonpositive.count").value == 300
    assert r.verdict == "failed"


def test_default_cap() -> None:
    batch = _bad_boxes(DEFAULT_MAX_FINDINGS_PER_RULE + 500)
    r = _run(geometry, batch)
    assert len([f for f in r.findings if f.rule == "box_nonpositive"]) == DEFAULT_MAX_FINDINGS_PER_RULE
    assert r.counts_by_rule()["box_nonpositive"] == DEFAULT_MAX_FINDINGS_PER_RULE + 500


def test_schema_gate_caps_and_counts(tmp_path: Path) -> None:
    """Dangling image ids: every one counted, 100 kept, the check sees all."""
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": i + 1, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]} for i in range(5_000)],
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    r = _run(schema, load_batch(path), {"thresholds": {"max_findings_per_rule": 100}})
    assert len([f for f in r.findings if f.rule == "dangling_image_id"]) == 100
    assert r.counts_by_rule()["dangling_image_id"] == 5_000
    assert _check(r, "dangling_image_id.count").value == 5_000


def test_from_checks_caps_findings_of_any_gate() -> None:
    """A gate that builds all its findings (golden, agreement) still hands on a bounded result."""
    fs = [Finding(gate="g", rule="a" if i % 2 else "b", message="m", file="f") for i in range(5_000)]
    r = GateResult.from_checks(gate="g", population=5_000, checks=[], findings=fs, max_findings_per_rule=30)
    assert len(r.findings) == 60
    assert r.counts_by_rule() == {"a": 2_500, "b": 2_500}
    # findings kept are the first of each rule, in order
    assert r.findings[:2] == fs[:2]


def test_finding_log_builds_only_kept_rows() -> None:
    batch = _bad_boxes(1_000)
    log = FindingLog(max_per_rule=7)
    calls: list[int] = []

    def make() -> Finding:
        calls.append(1)
        return Finding(gate="g", rule="one", message="m", file="f")

    for _ in range(20):
        log.add_one("one", "x", make)
    log.add_rows(batch, np.arange(600), gate="g", rule="rows", messages=["m"] * 7)  # messages only for the kept
    log.add_rows(batch, np.arange(600, 1_000), gate="g", rule="rows", messages="m")
    assert len(calls) == 7
    assert log.counts() == {"one": 20, "rows": 1_000}
    assert log.tally.by_rule_class[("rows", "x")] == 1_000
    assert len(log.findings) == 14
    with pytest.raises(ValueError):
        FindingLog(max_per_rule=-1)


# --------------------------------------------------------------------------- the rules key


def _rules(tmp_path: Path, text: str) -> Mapping[str, Any]:
    p = tmp_path / "annogate.toml"
    p.write_text(text)
    return load_rules(p, sections=dict(Engine().sections)).data


@pytest.mark.parametrize("value", ["-1", "1.5", '"many"', "nan", "true", "{ a = 1 }"])
@pytest.mark.parametrize("gate", ["geometry", "schema"])
def test_max_findings_per_rule_is_validated(tmp_path: Path, gate: str, value: str) -> None:
    with pytest.raises(RulesError, match=r"max_findings_per_rule|finite"):
        _rules(tmp_path, f"[{gate}.thresholds]\nmax_findings_per_rule = {value}\n")


def test_max_findings_per_rule_from_a_rules_file(tmp_path: Path) -> None:
    data = _rules(tmp_path, "[geometry.thresholds]\nmax_findings_per_rule = 3\n")
    r = _run(geometry, _bad_boxes(40), data["geometry"])
    assert len(r.findings) == 3 and r.counts_by_rule()["box_nonpositive"] == 40


# --------------------------------------------------------------------------- transport and size


def test_round_trip_keeps_counts_and_cost() -> None:
    r = _run(geometry, _bad_boxes(400), {"thresholds": {"max_findings_per_rule": 25}})
    assert r.cost is not None and r.cost.exact
    d = json.loads(json.dumps(r.to_dict()))
    back = GateResult.from_dict(d)
    assert back.finding_counts == r.finding_counts == {"box_nonpositive": 400}
    assert back.counts_by_rule() == r.counts_by_rule()
    assert back.cost == r.cost
    assert back.to_dict() == r.to_dict()
    # an older dict without finding_counts still loads: its findings are complete
    d.pop("finding_counts")
    assert GateResult.from_dict(d).counts_by_rule() == {"box_nonpositive": 25}


@pytest.mark.slow  # ~4-8 s: 300,000 annotations written, read and gated
def test_300k_defects_make_a_bounded_result(tmp_path: Path) -> None:
    """300,000 defective rows: the result (findings and counts) stays well under a MB per rule."""
    n = 300_000
    doc = {
        "images": [{"id": k, "file_name": f"{k}.jpg", "width": 100, "height": 100} for k in range(1, 101)],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [
            {"id": i + 1, "image_id": i % 100 + 1, "category_id": 1, "bbox": [i % 90, 5, -1, 4]} for i in range(n)
        ],
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    r = _run(geometry, load_batch(path))
    assert r.counts_by_rule()["box_nonpositive"] == n
    assert len(r.findings) <= DEFAULT_MAX_FINDINGS_PER_RULE * len(r.counts_by_rule())
    findings_size = len(json.dumps([f.to_dict() for f in r.findings]))
    assert findings_size < 1_000_000, findings_size  # was ~90 MB
    # the cost's per-row lists (row, annotator, class) are the only part that grows with defects
    whole = len(json.dumps(r.to_dict()))
    assert whole < findings_size + 24 * n, whole
