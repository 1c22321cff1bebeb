"""Reports: audit JSON (schema, determinism, atomic write), GitHub output, rework list, terminal."""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annogate.cost import estimate_cost
from annogate.findings import Finding, GateResult, ThresholdCheck
from annogate.report import (
    BatchOutcome,
    append_step_summary,
    build_report,
    cost_lines,
    escape_data,
    escape_property,
    failure_lines,
    gate_failure_lines,
    rework_items,
    rework_json,
    step_summary,
    summary_lines,
    workflow_commands,
    write_report,
    write_rework,
)
from annogate.report.audit import dumps, schema_path
from annogate.report.github import annotation_command
from annogate.report.terminal import table

T0 = datetime(2024, 5, 17, 12, 0, 0, tzinfo=timezone.utc)
LONG = "a_really_long_class_name_that_someone_thought_was_a_good_idea_" * 2


def F(
    rule: str,
    ann: int | None,
    image: str | None,
    *,
    gate: str = "geometry",
    file: str = "labels/a.json",
    line: int | None = 10,
    category: str | None = "car",
    severity: str = "error",
    message: str | None = None,
) -> Finding:
    return Finding(
        gate=gate,
        rule=rule,
        message=message or f"{rule} on annotation {ann}",
        file=file,
        line=line,
        annotation_id=ann,
        image=image,
        category=category,
        annotator="alice",
        severity=severity,  # type: ignore[arg-type]
    )


def outcomes() -> list[BatchOutcome]:
    geo_findings = [F("tiny_box", i, f"img{i % 3}.jpg", line=100 + i) for i in range(6)]
    geo_findings.append(F("area_mismatch", 99, "img0.jpg", severity="warning", line=500))
    geo = GateResult.from_checks(
        gate="geometry",
        population=1000,
        checks=[ThresholdCheck(metric="tiny_box.count", scope="overall", value=6.0, limit=0.0, op="<=")],
        findings=geo_findings,
    )
    gold = GateResult.from_checks(
        gate="golden",
        population=200,
        checks=[
            ThresholdCheck(metric="precision", scope="overall", value=0.8, limit=0.9, op=">="),
            ThresholdCheck(metric="recall", scope="class:bus", value=float("nan"), limit=0.9, op=">="),
            ThresholdCheck(metric="drift.left", scope="class:car", value=3.0, limit=2.0, op="<="),
        ],
        findings=[F("mislabelled", 7, "gold1.jpg", gate="golden", line=70)],
        metrics={
            "overall": {
                "tp": np.int64(180),
                "mislabelled": 8,
                "missing": 7,
                "extra": 5,
                "golden_objects": 195,
                "miou": np.float64(0.81),
            },
            "per_class": {"bus": {"recall": float("nan")}},
        },
    )
    schema = GateResult(gate="schema", verdict="passed", population=1000)
    cost = estimate_cost(n_labels=1000, results=[schema, geo, gold])
    a = BatchOutcome(
        path="labels/a.json", sha256="a" * 64, format="coco", n_annotations=1000, gates=[schema, geo, gold], cost=cost
    )
    b = BatchOutcome(
        path="labels/b.json",
        sha256="b" * 64,
        format="coco",
        n_annotations=3,
        gates=[GateResult(gate="schema", verdict="passed", population=3)],
        cost=estimate_cost(n_labels=3, results=[]),
    )
    c = BatchOutcome(
        path="labels/c.json",
        sha256="",
        format="coco",
        n_annotations=0,
        gates=[GateResult(gate="schema", verdict="skipped", reason="empty")],
        cost=None,
    )
    return [a, b, c]


def build(outs: list[BatchOutcome], when: datetime = T0) -> dict[str, Any]:
    return build_report(
        outs,
        rules={"cost": {"currency": "USD"}, "format": "coco"},
        rules_path="pyproject.toml",
        rules_sha256="c" * 64,
        version="0.1.0",
        generated_at=when,
    )


# --------------------------------------------------------------------------- audit


def test_report_validates_against_shipped_schema() -> None:
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    report = build(outcomes())
    jsonschema.validate(report, schema, format_checker=jsonschema.FormatChecker())
    assert report["summary"]["verdict"] == "failed"
    assert report["summary"]["failed"] == 1 and report["summary"]["passed"] == 1 and report["summary"]["skipped"] == 1
    assert report["generated_at"] == "2024-05-17T12:00:00Z"
    gold = next(g for g in report["batches"][0]["gates"] if g["gate"] == "golden")
    assert gold["metrics"]["overall"]["tp"] == 180  # NumPy made plain
    assert gold["metrics"]["per_class"]["bus"]["recall"] is None  # nan is not JSON
    json.dumps(report, allow_nan=False)


def test_report_is_deterministic_apart_from_generated_at() -> None:
    outs = outcomes()
    shuffled = []
    rng = random.Random(3)
    for o in reversed(outs):
        gates = []
        for g in reversed(o.gates):
            fs = list(g.findings)
            rng.shuffle(fs)
            gates.append(
                GateResult(
                    gate=g.gate,
                    verdict=g.verdict,
                    population=g.population,
                    reason=g.reason,
                    metrics=g.metrics,
                    checks=list(reversed(g.checks)),
                    findings=fs,
                )
            )
        shuffled.append(
            BatchOutcome(
                path=o.path, sha256=o.sha256, format=o.format, n_annotations=o.n_annotations, gates=gates, cost=o.cost
            )
        )
    one = build(outs)
    two = build(shuffled, when=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert one["generated_at"] != two["generated_at"]
    one.pop("generated_at")
    two.pop("generated_at")
    assert dumps(one) == dumps(two)
    assert [b["path"] for b in one["batches"]] == ["labels/a.json", "labels/b.json", "labels/c.json"]
    assert list(one) == sorted(one)


def test_write_report_is_atomic_and_canonical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "annogate-report.json"
    report = build(outcomes())
    write_report(target, report)
    first = target.read_bytes()
    write_report(target, report)
    assert target.read_bytes() == first
    assert json.loads(first) == report
    assert first.endswith(b"\n") and b"NaN" not in first
    with pytest.raises(TypeError):
        write_report(target, {"x": object()})  # not serialisable: nothing written

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("annogate.report.audit.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, {**report, "annogate_version": "9"})
    assert target.read_bytes() == first  # the old report survives a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["annogate-report.json"]  # no temp left


# --------------------------------------------------------------------------- github


def test_escaping_follows_the_runner() -> None:
    assert escape_data("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert escape_data("literal %0A stays") == "literal %250A stays"
    assert escape_property("dir,1/a:b%.json\n") == "dir%2C1/a%3Ab%25.json%0A"
    assert (
        annotation_command(
            "error", "bad: 50%\nsecond, line", file="x,y/a:b.json", line=7, title="annogate geometry: tiny_box"
        )
        == "::error file=x%2Cy/a%3Ab.json,line=7,title=annogate geometry%3A tiny_box::bad: 50%25%0Asecond, line"
    )
    assert annotation_command("warning", "w") == "::warning::w"


def test_workflow_commands_first_k_per_file(tmp_path: Path) -> None:
    out = workflow_commands(outcomes(), max_per_file=2)
    geo_lines = [c for c in out if "line=" in c and "labels/a.json" in c]
    assert (
        geo_lines[0]
        == "::error file=labels/a.json,line=100,title=annogate geometry%3A tiny_box::tiny_box on annotation 0 [id 0]"
    )
    assert len(geo_lines) == 2
    assert any(c.startswith("::notice file=labels/a.json,") and "6 more findings" in c for c in out)
    assert (
        "::error file=labels/a.json,title=annogate golden%3A threshold missed::precision (overall) = 0.8, limit >= 0.9"
        in out
    )
    assert not any("tiny_box.count" in c for c in out)  # its findings are annotated one by one
    assert not any("recall" in c for c in out)  # nan: nothing measured
    warn = workflow_commands(outcomes(), max_per_file=100)
    assert any(c.startswith("::warning file=labels/a.json,line=500,") for c in warn)
    absolute = [
        BatchOutcome(
            path=str(tmp_path / "x.json"),
            sha256="",
            format="coco",
            n_annotations=1,
            gates=[
                GateResult(
                    gate="geometry",
                    verdict="failed",
                    findings=[F("r", 1, "i.jpg", file=str(tmp_path / "x.json"), line=3)],
                )
            ],
        )
    ]
    assert workflow_commands(absolute, root=tmp_path)[0].startswith("::error file=x.json,line=3,")


def test_step_summary_markdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outs = outcomes()
    outs.append(
        BatchOutcome(
            path="weird|name.json",
            sha256="",
            format="coco",
            n_annotations=1,
            gates=[GateResult(gate="schema", verdict="passed")],
        )
    )
    md = step_summary(outs)
    assert "**1 of 4 batches failed.**" in md
    assert "| `labels/a.json` | ❌ failed | 1,000 | geometry 6, golden 1 |" in md
    assert "`weird\\|name.json`" in md
    assert "| geometry | tiny_box | 6 |" in md
    assert "| **total** |" in md
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary(md) is False
    target = tmp_path / "summary.md"
    target.write_text("before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary(md) is True
    assert target.read_text() == "before\n" + md


# --------------------------------------------------------------------------- rework


def rework_outcomes() -> list[BatchOutcome]:
    # person labels cost 3.0, others 1.0; no re-corrections (r = 0): a correction costs its price.
    params = {
        "price_per_label": {"default": 1.0, "classes": {"person": 3.0}},
        "correction_error_rate": 0.0,
        "rework_multiplier": 1.0,
    }
    fs = [
        F("tiny_box", 1, "a.jpg"),  # 1.0
        F("tiny_box", 2, "b.jpg", category="person"),  # one person annotation, two rules: 3.0
        F("outside_image", 2, "b.jpg", category="person"),
        F("tiny_box", 3, "c.jpg"),  # two annotations: 2.0
        F("tiny_box", 4, "c.jpg"),
        F("area_mismatch", 5, "d.jpg", severity="warning"),  # tolerated: not sent back
        F("tiny_box", 6, "=HYPERLINK(evil).jpg", message="=1+2"),  # 1.0, ties with a.jpg
    ]
    geo = GateResult(gate="geometry", verdict="failed", findings=fs)
    cost = estimate_cost(n_labels=100, results=[geo], params=params)
    one = BatchOutcome(path="one.json", sha256="", format="coco", n_annotations=100, gates=[geo], cost=cost)
    many = GateResult(
        gate="geometry", verdict="failed", findings=[F("tiny_box", i, "e.jpg", file="two.json") for i in range(5)]
    )
    two = BatchOutcome(path="two.json", sha256="", format="coco", n_annotations=5, gates=[many], cost=None)
    return [two, one]


def test_rework_ordered_by_expected_cost() -> None:
    items = rework_items(rework_outcomes())
    assert [(r.rank, r.image, r.expected_cost) for r in items] == [
        (1, "b.jpg", pytest.approx(3.0)),
        (2, "c.jpg", pytest.approx(2.0)),
        (3, "=HYPERLINK(evil).jpg", pytest.approx(1.0)),  # tie at 1.0: by image name
        (4, "a.jpg", pytest.approx(1.0)),
        (5, "e.jpg", None),  # no estimate: last
    ]
    assert items[0].annotation_ids == [2] and items[0].rules == ["outside_image", "tiny_box"]
    assert items[0].corrections == pytest.approx(1.0)
    assert all(r.image != "d.jpg" for r in items)
    assert any(r.image == "d.jpg" for r in rework_items(rework_outcomes(), include_warnings=True))


def test_rework_csv_and_json(tmp_path: Path) -> None:
    write_rework(tmp_path / "rework.csv", rework_outcomes())
    with open(tmp_path / "rework.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["rank"], r["image"], r["rule"]) for r in rows[:3]] == [
        ("1", "b.jpg", "outside_image"),
        ("1", "b.jpg", "tiny_box"),
        ("2", "c.jpg", "tiny_box"),
    ]
    assert rows[0]["image_expected_cost"] == "3.0000" and rows[0]["currency"] == "USD"
    evil = next(r for r in rows if r["rank"] == "3")
    assert evil["image"] == "'=HYPERLINK(evil).jpg" and evil["message"] == "'=1+2"  # no formula injection
    assert rows[-1]["image"] == "e.jpg" and rows[-1]["image_expected_cost"] == ""

    write_rework(tmp_path / "rework.json", rework_outcomes())
    data = json.loads((tmp_path / "rework.json").read_text())
    assert data == rework_json(rework_outcomes())
    assert [t["data"]["image"] for t in data["tasks"]] == ["b.jpg", "c.jpg", "=HYPERLINK(evil).jpg", "a.jpg", "e.jpg"]
    assert data["tasks"][0]["findings"][0] == {
        "annotation_id": 2,
        "gate": "geometry",
        "rule": "outside_image",
        "severity": "error",
        "category": "person",
        "annotator": "alice",
        "file": "labels/a.json",
        "line": 10,
        "message": "outside_image on annotation 2",
    }
    first = (tmp_path / "rework.json").read_bytes()
    write_rework(tmp_path / "rework.json", list(reversed(rework_outcomes())))
    assert (tmp_path / "rework.json").read_bytes() == first
    with pytest.raises(ValueError, match=r"csv or \.json"):
        write_rework(tmp_path / "rework.txt", rework_outcomes())


# --------------------------------------------------------------------------- terminal


def long_outcomes() -> list[BatchOutcome]:
    fs = [
        F(
            LONG,
            i,
            "x.jpg",
            file="/very/deep/directory/structure/of/a/label/repository/batches/2024/05/batch.json",
            line=123456,
            message="m" * 200,
        )
        for i in range(30)
    ]
    checks = [
        ThresholdCheck(metric=f"{LONG}.count", scope="overall", value=30.0, limit=0.0, op="<="),
        ThresholdCheck(metric=f"{LONG}.rate", scope=f"class:{LONG}", value=0.3, limit=0.01, op="<="),
        ThresholdCheck(metric="pair", scope=f"pair:{LONG}->{LONG}", value=0.5, limit=0.02, op="<="),
    ]
    from annogate.defects import CostFacts, DefectRows, Pattern, SampledDefects

    exact = DefectRows(error_type=LONG, rows=tuple(range(30)), annotators=("alice",) * 30, categories=(LONG,) * 30)
    g = GateResult.from_checks(
        gate="geometry", population=100, checks=checks, findings=fs, cost=CostFacts(exact=(exact,))
    )
    pattern = Pattern(kind="confusion", scope=f"pair:{LONG}->{LONG}", affected=12.0, category=LONG)
    conf = GateResult.from_checks(
        gate="confusion", population=100, checks=checks[2:], findings=[], cost=CostFacts(patterns=(pattern,))
    )
    gold = GateResult(
        gate="golden",
        verdict="failed",
        cost=CostFacts(sampled=SampledDefects(defects=3, sample=50, by_annotator={"alice": (3, 50)})),
    )
    params = {"cohorts": {"alice": LONG}, "currency": "EUR"}
    cost = estimate_cost(n_labels=123_456_789, results=[g, conf, gold], params=params)
    return [
        BatchOutcome(path=fs[0].file, sha256="", format="coco", n_annotations=123_456_789, gates=[g, conf], cost=cost),
        BatchOutcome(
            path="short.json",
            sha256="",
            format="coco",
            n_annotations=1,
            gates=[GateResult(gate="schema", verdict="passed")],
            cost=estimate_cost(n_labels=1, results=[]),
        ),
    ]


def test_terminal_blocks_fit_80_columns() -> None:
    outs = long_outcomes()
    g = outs[0].gates[0]
    assert outs[0].cost is not None
    blocks = {
        "gate": gate_failure_lines(g),
        "gate -vv": gate_failure_lines(g, verbosity=2),
        "cost": cost_lines(outs[0].cost),
        "summary": summary_lines(outs),
    }
    for name, lines in blocks.items():
        assert lines, name
        too_wide = [line for line in lines if len(line) > 80]
        assert not too_wide, (name, too_wide)
    # -vv: every finding, whole (wrapped: the 200-char message is on the rows under it)
    assert len([ln for ln in blocks["gate -vv"] if ":123456  #" in ln]) == 30
    assert "".join(blocks["gate -vv"]).count("m" * 50) >= 30
    assert len([ln for ln in blocks["gate"] if "123456" in ln]) == 3
    assert "  ... 27 more (-v shows more, -vv all)" in blocks["gate"]
    # The id and the start of the message survive a long path.
    first = next(ln for ln in blocks["gate"] if "123456" in ln)
    assert first.startswith("  …") and ":123456  #0  " in first and "m" * 20 in first


def test_gate_failure_lines_content() -> None:
    (a, *_) = outcomes()
    geo = a.gates[1]
    lines = gate_failure_lines(geo, max_findings=3)
    assert lines[0] == "geometry failed: 1 of 1 check failed; 7 findings in 1,000 annotations"
    # the count limit is shown with its type (the findings explain it), not in a table
    assert lines[1] == "7 findings: 6 tiny_box (limit <= 0), 1 area_mismatch"
    assert "  labels/a.json:100  #0   img0.jpg  car  alice  tiny_box on annotation 0" in lines
    # the first rows show every type, not three of the commonest
    assert any("(warning) area_mismatch" in ln for ln in lines[2:5])
    assert "  ... 4 more (-v shows more, -vv all)" in lines
    assert len([ln for ln in gate_failure_lines(geo, verbosity=1) if ln.startswith("  labels/")]) == 7
    assert len([ln for ln in gate_failure_lines(geo, max_findings=2, verbosity=1) if ln.startswith("  labels/")]) == 2
    assert "  ... 5 more (-vv shows all)" in gate_failure_lines(geo, max_findings=2, verbosity=1)
    # -v lists every check, passed ones too
    assert any(ln.split()[:2] == ["tiny_box.count", "overall"] for ln in gate_failure_lines(geo, verbosity=1))


def test_failure_lines_leave_the_cost_to_the_summary() -> None:
    (a, *_) = outcomes()
    lines = failure_lines(a, a.gates[1], max_findings=2, verbose=0)
    assert lines == gate_failure_lines(a.gates[1], max_findings=2, base=a.path.rpartition("/")[0])
    assert not any("cost" in ln or "rework" in ln for ln in lines)
    assert all(len(ln) <= 80 for ln in lines)


def test_cost_and_summary_figures() -> None:
    outs = rework_outcomes()
    est = outs[1].cost
    assert est is not None
    lines = cost_lines(est)
    assert lines[0].startswith(f"cost of accepting: {est.currency} {est.total:,.2f}")
    # direct 100 x 1.0 (class prices without a label mix: default price), QA 20 %
    assert lines[1].split()[:5] == ["direct", "100.00", "+", "QA", "20.00"]
    summary = summary_lines(outs)
    assert summary[0].split() == ["batch", "verdict", "findings", "by", "gate", "skipped", "cost", "USD"]
    assert summary[2].split()[:4] == ["one.json", "FAILED", "geometry", "6"]
    assert summary[3].split()[:4] == ["two.json", "FAILED", "geometry", "5"]
    assert summary[-2] == summary[1]  # a rule above the totals
    assert summary[-1].split()[:5] == ["total", "(2", "batches)", "2", "FAILED"]
    costs = [o.cost for o in outs if o.cost is not None]
    assert summary[-1].split()[-1] == f"{sum(round(c.total, 2) for c in costs):,.2f}"


@settings(max_examples=100, deadline=None)
@given(
    cells=st.lists(st.lists(st.text(max_size=120), min_size=3, max_size=3), max_size=5),
    width=st.integers(40, 120),
)
def test_table_always_fits(cells: list[list[str]], width: int) -> None:
    for line in table(["a", "bb", "ccc"], cells, align="lrl", width=width):
        assert len(line) <= width


def test_batch_outcome_verdict() -> None:
    def o(*verdicts: str) -> BatchOutcome:
        return BatchOutcome(
            path="p",
            sha256="",
            format="coco",
            n_annotations=0,
            gates=[GateResult(gate=str(i), verdict=v) for i, v in enumerate(verdicts)],
        )  # type: ignore[arg-type]

    assert o("passed", "failed").verdict == "failed"
    assert o("passed", "skipped").verdict == "passed"
    assert o("skipped").verdict == "skipped"
    assert o().verdict == "skipped"


def test_defects_by_gate_counts_findings_beyond_the_cap() -> None:
    fs = [F("tiny_box", i, f"{i}.jpg") for i in range(5)] + [F("area_mismatch", 9, "9.jpg", severity="warning")]
    g = GateResult.from_checks(gate="geometry", population=10, checks=[], findings=fs, max_findings_per_rule=2)
    assert len(g.findings) == 3  # 2 tiny_box kept + 1 warning
    out = BatchOutcome(path="a.json", sha256="", format="coco", n_annotations=10, gates=[g])
    assert out.defects_by_gate() == {"geometry": 5}
