"""Rules' ``cohort_field``: annotator cohorts read from a per-annotation field.

The examples' defective COCO batch and CVAT export are copied with a vendor field added;
the expected grouping (each annotator's majority vendor) is computed here from the file
written, and must show in the golden per-annotator table (``cohort:<name>`` rows), the
per-cohort metrics and the cost itemisation (``estimate.by_annotator`` keyed by cohort).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from annogate.cohorts import batch_cohorts, cohort_value
from annogate.engine import Engine
from annogate.formats import load_batch
from annogate.rules import RulesError, load_rules

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RULES = (EXAMPLES / "annogate.toml").read_text()


def _vendor(annotator: str, k: int) -> str:
    """A vendor per annotator, with every 5th object of the first one in another vendor (a conflict)."""
    if annotator == "alice" and k % 5 == 0:
        return "Borg"
    return "Acme" if annotator < "c" else "Borg"


def _coco_batch(tmp_path: Path, rules_extra: str, *, field_path: tuple[str, ...] = ("vendor",)) -> Path:
    d = json.loads((EXAMPLES / "defective" / "batch.json").read_text())
    seen: Counter[str] = Counter()
    for a in d["annotations"]:
        who = a["annotator_id"]
        seen[who] += 1
        v = _vendor(who, seen[who])
        if field_path == ("vendor",):
            a["vendor"] = v
        else:
            a.setdefault(field_path[0], {})[field_path[1]] = v
    (tmp_path / "golden").mkdir()
    shutil.copy(EXAMPLES / "golden" / "golden.json", tmp_path / "golden" / "golden.json")
    (tmp_path / "annogate.toml").write_text(rules_extra + "\n" + RULES)
    out = tmp_path / "batch.json"
    out.write_text(json.dumps(d))
    return out


def _expected(path: Path, get: Any) -> dict[str, str]:
    """Each annotator's majority vendor, from the file (ties: alphabetically first)."""
    counts: dict[str, Counter[str]] = {}
    for a in json.loads(path.read_text())["annotations"]:
        v = get(a)
        if v is not None:
            counts.setdefault(a["annotator_id"], Counter())[v] += 1
    return {k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in counts.items()}


def _run(path: Path) -> Any:
    eng = Engine()
    return eng, eng.run_batch(path, ["schema", "golden", "confusion"])


def test_coco_vendor_field_gives_cohort_rows_and_cost_keys(tmp_path: Path) -> None:
    path = _coco_batch(tmp_path, 'cohort_field = "vendor"')
    want = _expected(path, lambda a: a.get("vendor"))
    assert len(set(want.values())) == 2  # the fixture does group annotators
    _, run = _run(path)
    golden = run.gates["golden"]
    names = [r[0] for r in golden.tables["golden_per_annotator"][1:]]
    assert [n for n in names if n.startswith("cohort:")] == [f"cohort:{c}" for c in sorted(set(want.values()))]
    per, coh = golden.metrics["per_annotator"], golden.metrics["per_cohort"]
    for c in set(want.values()):
        members = [a for a, v in want.items() if v == c]
        assert coh[c]["batch_objects"] == sum(per[a]["batch_objects"] for a in members)
    cost = run.outcome().cost
    assert cost is not None
    keys = {b.key for b in cost.by_annotator}
    assert keys and keys <= set(want.values()) | {"(unknown)", "unknown"}
    assert not keys & set(want)  # no annotator shown by name: each is in a cohort
    # alice's objects name two vendors: a warning of the schema gate, not a failure of it
    conflicts = [f for f in run.gates["schema"].findings if f.rule == "cohort_conflict"]
    assert len(conflicts) == 1 and "'alice'" in conflicts[0].message


def test_nested_coco_field(tmp_path: Path) -> None:
    path = _coco_batch(tmp_path, 'cohort_field = "attributes.vendor"', field_path=("attributes", "vendor"))
    want = _expected(path, lambda a: a.get("attributes", {}).get("vendor"))
    _, run = _run(path)
    assert set(run.gates["golden"].metrics["per_cohort"]) == set(want.values())


def test_explicit_cost_cohorts_win(tmp_path: Path) -> None:
    path = _coco_batch(tmp_path, 'cohort_field = "vendor"')
    rules = (tmp_path / "annogate.toml").read_text()
    rules = rules.replace("[cost]\n", '[cost]\ncohorts = { bob = "Hand" }\n')
    (tmp_path / "annogate.toml").write_text(rules)
    want = _expected(path, lambda a: a.get("vendor"))
    want["bob"] = "Hand"
    _, run = _run(path)
    assert set(run.gates["golden"].metrics["per_cohort"]) == set(want.values())
    cost = run.outcome().cost
    assert cost is not None and "Hand" in {b.key for b in cost.by_annotator} | set(want.values())


def test_missing_field_leaves_annotators_uncohorted(tmp_path: Path) -> None:
    path = _coco_batch(tmp_path, 'cohort_field = "shift"')
    _, run = _run(path)
    golden = run.gates["golden"]
    assert golden.metrics["per_cohort"] == {}
    assert not [r for r in golden.tables["golden_per_annotator"][1:] if str(r[0]).startswith("cohort:")]
    cost = run.outcome().cost
    assert cost is not None and {b.key for b in cost.by_annotator} <= {"alice", "bob", "carol", "(unknown)"}


def _cvat_batch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The CVAT example with a vendor attribute on every box, by its task's assignee."""
    xml = (EXAMPLES / "cvat" / "annotations.xml").read_text()
    assignee = {
        m.group(1): m.group(2)
        for m in re.finditer(r"<task>\s*<id>(\d+)</id>.*?<assignee>\s*<username>([^<]+)</username>", xml, re.S)
    }
    assert assignee
    want: dict[str, str] = {}
    out: list[str] = []
    task = None
    for line in xml.splitlines(keepends=True):
        m = re.search(r'<image [^>]*task_id="(\d+)"', line)
        if m:
            task = m.group(1)
        if "</box>" in line and task is not None:
            who = assignee[task]
            want[who] = _vendor(who, 1)
            line = line.replace("</box>", f'  <attribute name="vendor">{want[who]}</attribute>\n    </box>')
        out.append(line)
    d = tmp_path / "cvat"
    d.mkdir()
    (tmp_path / "golden").mkdir()
    shutil.copy(EXAMPLES / "golden" / "golden.json", tmp_path / "golden" / "golden.json")
    (d / "annogate.toml").write_text('cohort_field = "vendor"\n' + (EXAMPLES / "cvat" / "annogate.toml").read_text())
    (d / "annotations.xml").write_text("".join(out))
    return d / "annotations.xml", want


def test_cvat_attribute_gives_cohorts(tmp_path: Path) -> None:
    path, want = _cvat_batch(tmp_path)
    batch = load_batch(path)
    assert batch_cohorts(batch, "vendor").cohort_of == want
    _, run = _run(path)
    golden = run.gates["golden"]
    names = [r[0] for r in golden.tables["golden_per_annotator"][1:]]
    assert {n for n in names if n.startswith("cohort:")} == {f"cohort:{c}" for c in want.values()}
    cost = run.outcome().cost
    assert cost is not None and not {b.key for b in cost.by_annotator} & set(want)


def test_cohort_value_only_takes_short_scalars() -> None:
    assert cohort_value({"v": "A"}, "v") == "A"
    assert cohort_value({"v": 3}, "v") == "3"
    assert cohort_value({"a": {"v": "B"}}, "a.v") == "B"
    for bad in ({"v": {"x": 1}}, {"v": ["A"]}, {"v": ""}, {"v": "x" * 10_000}, None, "v"):
        assert cohort_value(bad, "v") is None


def test_rules_schema(tmp_path: Path) -> None:
    f = tmp_path / "annogate.toml"
    f.write_text('cohort_field = "vendor"\n')
    assert load_rules(f, sections={}).data["cohort_field"] == "vendor"
    for bad in ("cohort_field = 3", 'cohort_field = ""', f'cohort_field = "{"x" * 300}"'):
        f.write_text(bad + "\n")
        with pytest.raises(RulesError):
            load_rules(f, sections={})


def test_a_session_report_itemises_cost_by_derived_cohort(tmp_path: Path) -> None:
    """The controller prices from the items' payloads (as under xdist): the derived
    cohorts must travel with the batch, not be looked up in the rules file again."""
    import subprocess
    import sys

    path = _coco_batch(tmp_path, 'cohort_field = "vendor"')
    want = _expected(path, lambda a: a.get("vendor"))
    code = "import sys; from annogate.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", code, str(path), "-q", "--annogate-report", str(tmp_path / "r.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode in (0, 1), r.stdout + r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    keys = {b["key"] for b in report["batches"][0]["cost"]["by_annotator"]}
    assert keys and not keys & set(want)
    assert keys <= set(want.values()) | {"(unknown)"}
