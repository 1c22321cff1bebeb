"""The terminal report on the bundled defective batch (issue 10): each failing item shows
its own gate, the cost appears once and adds up, width and verbosity change the layout
and never the content, skip reasons reach the summary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from annogate.engine import Engine
from annogate.findings import Finding, GateResult, ThresholdCheck
from annogate.report.terminal import cost_lines, gate_failure_lines, plural, session_lines

ROOT = Path(__file__).resolve().parent.parent
DEFECTIVE = ROOT / "examples" / "defective" / "batch.json"
GATES = ["schema", "geometry", "golden", "confusion", "agreement"]


@pytest.fixture(scope="module")
def defective():  # type: ignore[no-untyped-def]
    run = Engine().run_batch(DEFECTIVE, GATES)
    return run.outcome()


def _words(lines: list[str]) -> list[str]:
    return " ".join(lines).split()


def test_golden_failure_names_bob_in_the_drift_table(defective) -> None:  # type: ignore[no-untyped-def]
    lines = gate_failure_lines(defective.gates[GATES.index("golden")], width=100)
    rows = [ln.split() for ln in lines]
    header = next(r for r in rows if r[:2] == ["annotator", "labels"])
    assert "drift" in header
    bob = next(r for r in rows if r and r[0] == "bob")
    # bob's boxes are shifted sideways by ~12% of their width: his left/right drift shows it
    assert bob[4] == bob[6] and float(bob[4].rstrip("%")) > 10
    assert all(abs(float(r[4].rstrip("%"))) < 1 for r in rows if r and r[0] in ("alice", "carol"))
    # the check on bob's drift shows the estimate with its 95% interval
    check = next(ln for ln in lines if "annotator:bob" in ln)
    assert re.search(r"\d+\.\d% \.\. \d+\.\d%", check)


def test_confusion_failure_shows_the_worst_cells(defective) -> None:  # type: ignore[no-untyped-def]
    lines = gate_failure_lines(defective.gates[GATES.index("confusion")], width=100)
    text = " ".join(lines)
    assert "cyclist->pedestrian 2 of 8" in text
    assert "95% CI" in lines[1]


def test_schema_counts_name_what_they_count(defective) -> None:  # type: ignore[no-untyped-def]
    schema = defective.gates[0]
    head = gate_failure_lines(schema, width=100)[0]
    assert f"in {schema.metrics['annotations']} annotations, " in head
    assert f"{schema.population} annotations" not in head
    assert "1 finding in" in head and "1 findings" not in head


def test_plurals() -> None:
    assert plural(1, "finding") == "1 finding"
    assert plural(2, "finding") == "2 findings"
    assert plural(1, "batch", "batches") == "1 batch"
    assert plural(1000, "annotation") == "1,000 annotations"


def test_width_changes_wrapping_not_content(defective) -> None:  # type: ignore[no-untyped-def]
    for g in defective.gates:
        if g.verdict != "failed":
            continue
        wide = gate_failure_lines(g, width=120, verbosity=1)
        narrow = gate_failure_lines(g, width=80, verbosity=1)
        assert all(len(ln) <= 80 for ln in narrow), g.gate
        # tables pad differently; the words of every finding message are all there at both widths
        for f in g.findings[:50]:
            for w in f.message.split():
                assert w in _words(narrow) and w in _words(wide), (g.gate, w)
    assert defective.cost is not None
    wide_cost = cost_lines(defective.cost, width=120)
    narrow_cost = cost_lines(defective.cost, width=80)
    assert _words(wide_cost) == _words(narrow_cost)
    assert len(narrow_cost) > len(wide_cost)


def test_v_shows_whole_messages(defective) -> None:  # type: ignore[no-untyped-def]
    geo = defective.gates[1]
    long = max(geo.findings, key=lambda f: len(f.message))
    default = " ".join(gate_failure_lines(geo, width=80))
    verbose = " ".join(" ".join(gate_failure_lines(geo, width=80, verbosity=1)).split())
    assert long.message not in default
    assert long.message in verbose


def _cost_block(lines: list[str]) -> list[str]:
    start = next(i for i, ln in enumerate(lines) if ln.startswith("cost of accepting"))
    return lines[start:]


def _money(s: str) -> float:
    return float(s.replace(",", "").rstrip(";,"))


def test_cost_block_adds_up(defective) -> None:  # type: ignore[no-untyped-def]
    lines = _cost_block(session_lines([defective], width=100))
    words = " ".join(lines).split()
    i = words.index("direct")
    parts = [_money(words[i + 1]), _money(words[i + 4]), _money(words[i + 7]), _money(words[i + 10])]
    assert words[i + 11 : i + 13] == ["=", "total"]
    total = _money(words[i + 13])
    assert round(sum(parts), 2) == total
    # the headline is that total with its interval
    assert lines[0].split()[5] == words[i + 13].rstrip(";")
    lo, hi = re.search(r"interval ([\d,.]+) \.\. ([\d,.]+)", lines[0]).groups()  # type: ignore[union-attr]
    assert _money(lo) <= total <= _money(hi)
    # each itemisation adds up to the figure printed in the sum
    text = " ".join(" ".join(lines).split())
    seen = 0
    for title, printed in (
        ("rework by error type", parts[2]),
        ("rework by annotator", parts[2]),
        ("downstream by pattern", parts[3]),
    ):
        m = re.search(re.escape(title) + r" ([\d,.]+): (.*?)(?= rework by| downstream by| partial:| note:|$)", text)
        if m is None:
            continue
        seen += 1
        figure, items = m.groups()
        assert _money(figure) == printed, title
        amounts = re.findall(r" (\d[\d,]*\.\d\d)(?= \(|,|$)", " " + items)
        assert round(sum(_money(a) for a in amounts), 2) == printed, (title, amounts)
    assert seen == 3
    assert "bob" in " ".join(lines)


def test_cost_appears_once_per_batch(pytester: pytest.Pytester) -> None:
    import shutil

    shutil.copytree(ROOT / "examples", pytester.path / "examples")
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "examples/clean", "examples/defective")
    out = run.stdout.str()
    assert out.count("cost of accepting") == 1
    assert "rework-cost estimate" not in out
    failures = out[out.index("FAILURES") : out.index("= annogate =")]
    assert "cost" not in failures.lower().replace("no_consensus", "")
    # the clean batch's skipped gate and its reason, without -rs
    summary = out[out.index("= annogate =") :]
    assert re.search(r"\S*clean/batch.json: agreement skipped: no image was labelled", summary)
    assert re.search(r"clean/batch\.json\s+PASSED\s+-\s+agreement", summary)


def test_minified_json_shows_the_pointer() -> None:
    f = Finding(gate="geometry", rule="tiny_box", message="tiny", file="b/batch.json", line=1, pointer="/annotations/7")
    r = GateResult.from_checks(
        gate="geometry",
        population=10,
        checks=[ThresholdCheck(metric="tiny_box.count", scope="overall", value=1, limit=0, op="<=")],
        findings=[f],
    )
    lines = gate_failure_lines(r, base="b")
    assert any(ln.startswith("  batch.json#/annotations/7 ") for ln in lines)
    assert not any("batch.json:1 " in ln for ln in lines)


def test_findings_over_the_cap_are_counted() -> None:
    fs = [Finding(gate="g", rule="r", message=f"m{i}", file="f.json", line=i + 2) for i in range(4)]
    r = GateResult.from_checks(gate="g", population=100, checks=[], findings=fs, finding_counts={"r": 40})
    lines = gate_failure_lines(r)
    assert lines[1].startswith("40 findings: 40 r")
    assert "  ... 36 more not kept (max_findings_per_rule)" in lines
