"""A third-party plugin (examples/plugin: annogate-csvboxes) extends annogate through its hooks.

Why these tests: issue 13 asks that a third-party reader and gate register through the
same ``annogate`` entry points as the built-ins. The acceptance tests make the example
package importable *without* installing it into the shared venv: its source and a
hand-written ``.dist-info`` folder (METADATA + ``entry_points.txt``) go into a temporary
folder on PYTHONPATH, which is all ``importlib.metadata`` (and so pluggy's
``load_setuptools_entrypoints``) looks at. They assert on stable things only: pytest's
``-v`` item lines, exit codes and the JSON audit report (``--annogate-report``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from annogate.formats import LoadError, detect_format, load_batch
from annogate.formats import _builtin_formats as builtin_formats
from annogate.gates import GateContext

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "examples" / "plugin" / "src"
HEADER = "image,width,height,label,x,y,w,h\n"
# car is 2 of 3 objects (67%): above max_share 0.6, within 0.8.
SKEWED = HEADER + "a.jpg,640,480,car,10,20,100,50\na.jpg,640,480,car,200,20,100,50\nb.jpg,320,240,person,5,5,30,60\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The plugin as an installed distribution would look, without installing it."""
    site = tmp_path / "site"
    shutil.copytree(PLUGIN_SRC / "annogate_csvboxes", site / "annogate_csvboxes")
    info = site / "annogate_csvboxes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: annogate-csvboxes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[annogate]\ncsvboxes = annogate_csvboxes\n")
    return site


def _batch(folder: Path, text: str, max_share: float | None = None) -> Path:
    folder.mkdir(parents=True)
    if max_share is not None:
        (folder / "annogate.toml").write_text(f"[label_balance]\nmax_share = {max_share}\n")
    p = folder / "batch.csv"
    p.write_text(text)
    return p


def _items(stdout: str) -> dict[str, str]:
    """``{node id: outcome}`` from pytest's ``-v`` lines."""
    return dict(re.findall(r"^(\S+::\w+) (PASSED|FAILED|SKIPPED|ERROR)", stdout, re.M))


def _gates(report: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    (batch,) = [b for b in report["batches"] if b["path"] == path]
    return {g["gate"]: g for g in batch["gates"]}


def _run(pytester: pytest.Pytester, site: Path | None, *args: str) -> tuple[int, str, str]:
    """Run a command in ``pytester.path`` with the plugin's folder (or nothing) on PYTHONPATH;
    returns the exit code, stdout, and stdout + stderr for assertion messages."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PYTEST_ADDOPTS", raising=False)
        if site is None:
            mp.delenv("PYTHONPATH", raising=False)
        else:
            mp.setenv("PYTHONPATH", str(site))
        r = pytester.run(*args, timeout=300)
    out = "\n".join(r.outlines)
    return int(r.ret), out, out + "\n" + "\n".join(r.errlines)


def _pytest(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "pytest", "--annogate", *args, "-p", "no:cacheprovider")


# -- acceptance: pytest --annogate with the plugin on PYTHONPATH ----------------
def test_plugin_reader_and_gate_run_as_pytest_items(pytester: pytest.Pytester, site: Path) -> None:
    root = pytester.path
    _batch(root / "strict", SKEWED, max_share=0.6)
    _batch(root / "loose", SKEWED, max_share=0.8)
    # line 3: a non-number; line 4: a box past the image's right edge (the built-in geometry gate's job)
    _batch(
        root / "bad", HEADER + "a.jpg,640,480,car,1,2,3,4\na.jpg,640,480,car,1x0,2,3,4\na.jpg,640,480,dog,600,2,100,4\n"
    )
    ret, stdout, out = _run(pytester, site, *_pytest(".", "-v", "--annogate-report", "report.json"))
    items = _items(stdout)
    for b in ("strict", "loose", "bad"):
        ids = [i.split("::")[1] for i in items if i.startswith(f"{b}/batch.csv::")]
        assert ids[0] == "schema" and "geometry" in ids and "label_balance" in ids, out
    assert items["strict/batch.csv::label_balance"] == "FAILED", out
    assert items["loose/batch.csv::label_balance"] == "PASSED", out
    assert items["bad/batch.csv::label_balance"] == "SKIPPED", out  # no max_share in its rules
    assert items["strict/batch.csv::schema"] == items["loose/batch.csv::schema"] == "PASSED", out
    assert items["bad/batch.csv::schema"] == "FAILED", out
    assert items["bad/batch.csv::geometry"] == "FAILED", out
    assert ret == 1, out
    assert "bad/batch.csv:3" in stdout, out  # the terminal names file:line of the bad row

    report = json.loads((root / "report.json").read_text())
    assert {b["path"]: b["format"] for b in report["batches"]} == {
        "strict/batch.csv": "csvboxes",
        "loose/batch.csv": "csvboxes",
        "bad/batch.csv": "csvboxes",
    }
    bad = _gates(report, "bad/batch.csv")
    (f,) = bad["schema"]["findings"]
    assert (f["file"], f["line"], f["rule"]) == ("bad/batch.csv", 3, "number")
    assert "1x0" in f["message"]
    assert [(g["line"], g["category"]) for g in bad["geometry"]["findings"]] == [(4, "dog")]
    strict = _gates(report, "strict/batch.csv")["label_balance"]
    (check,) = [c for c in strict["checks"] if not c["passed"]]
    assert (check["metric"], check["scope"], check["limit"], check["op"]) == ("class_share", "class:car", 0.6, "<=")
    assert check["value"] == pytest.approx(2 / 3)
    (f,) = strict["findings"]
    assert (f["file"], f["line"], f["category"]) == ("strict/batch.csv", 2, "car")  # where car first appears
    loose = _gates(report, "loose/batch.csv")["label_balance"]
    assert loose["verdict"] == "passed" and all(c["passed"] for c in loose["checks"]) and len(loose["checks"]) == 2


def test_console_script_loads_the_plugin(pytester: pytest.Pytester, site: Path) -> None:
    script = Path(sys.executable).with_name("annogate")
    assert script.is_file(), f"the annogate console script is not installed beside {sys.executable}"
    _batch(pytester.path / "labels", SKEWED, max_share=0.6)
    ret, stdout, out = _run(pytester, site, str(script), "labels", "--annogate-report", "report.json", "-v")
    assert ret == 1, out
    assert _items(stdout)["labels/batch.csv::label_balance"] == "FAILED", out
    report = json.loads((pytester.path / "report.json").read_text())
    assert _gates(report, "labels/batch.csv")["label_balance"]["verdict"] == "failed"
    assert not (pytester.path / ".pytest_cache").exists()


def test_plugin_rules_section_is_validated_by_its_schema(pytester: pytest.Pytester, site: Path) -> None:
    """The gate's JSON Schema joins the rules schema: a bad value is a usage error
    naming the key; without the plugin the section itself is unknown."""
    _batch(pytester.path / "labels", SKEWED, max_share=2)
    ret, _, out = _run(pytester, site, *_pytest("labels"))
    assert ret == 4, out
    assert "max_share" in out and "annogate.toml" in out, out

    (pytester.path / "labels" / "annogate.toml").write_text("[label_balance]\nmax_share = 0.5\n")
    ret, _, out = _run(pytester, None, *_pytest("labels"))
    assert ret == 4, out  # no plugin: [label_balance] is no known section
    assert "label_balance" in out, out


# -- unit: the reader and the gate, called directly -----------------------------
@pytest.fixture
def csvboxes(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    return import_module("annogate_csvboxes")


def test_reader_builds_the_columnar_model(csvboxes: ModuleType, tmp_path: Path) -> None:
    p = _batch(tmp_path / "b", SKEWED)
    fmt = csvboxes.FORMAT
    assert detect_format(p, formats=(*builtin_formats(), fmt)) is fmt
    assert detect_format(p) is None  # the built-ins alone do not claim it
    batch = load_batch(p, formats=[fmt])
    assert batch.format == "csvboxes" and batch.problems == [] and batch.sha256
    assert list(batch.images.file_name) == ["a.jpg", "b.jpg"]
    assert batch.images.width.tolist() == [640, 320] and batch.images.height.tolist() == [480, 240]
    assert list(batch.categories.name) == ["car", "person"] and batch.categories.line.tolist() == [2, 4]
    ann = batch.annotations
    assert ann.bbox.tolist() == [[10, 20, 100, 50], [200, 20, 100, 50], [5, 5, 30, 60]]
    assert ann.line.tolist() == [2, 3, 4] and ann.image.tolist() == [0, 0, 1] and ann.category.tolist() == [0, 0, 1]
    assert batch.pointer(0) is None  # findings locate CSV rows by line, not by a JSON pointer


@pytest.mark.parametrize(
    ("row", "rule", "text"),
    [
        (b"a.jpg,640,480,car,1,2,3", "fields", "7 fields"),
        (b"a.jpg,640,480,car,1,2,nan,4", "number", "w 'nan'"),
        (b"a.jpg,640,480,car,1,2,3,inf", "number", "h 'inf'"),
        (b"a.jpg,640,480,,1,2,3,4", "required", "label"),
        (b"a.jpg,0,480,car,1,2,3,4", "image_size", "0x480"),
        (b"b.jpg,640,480,car,1,2,3,4", "image_size", "320x240 on line 2"),
        (b"a.jpg,640,480,caf\xe9,1,2,3,4", "encoding", "not UTF-8"),
        (b"a.jpg,640,480,car,1,2,3,4," + b"x" * 200_000, "syntax", "field larger than field limit"),
    ],
)
def test_each_bad_row_is_a_source_problem_with_its_line(
    csvboxes: ModuleType, tmp_path: Path, row: bytes, rule: str, text: str
) -> None:
    p = tmp_path / "batch.csv"
    p.write_bytes(HEADER.encode() + b"b.jpg,320,240,car,1,2,3,4\n" + row + b"\na.jpg,640,480,car,5,6,7,8\n")
    batch = csvboxes.load_csvboxes(p)
    (prob,) = batch.problems
    assert (prob.rule, prob.line) == (rule, 3) and text in prob.message
    assert batch.annotations.line.tolist() == [2, 4]  # the bad row is dropped, the rows around it kept


def test_a_file_without_the_header_is_unreadable(csvboxes: ModuleType, tmp_path: Path) -> None:
    p = tmp_path / "other.csv"
    p.write_text("id,name\n1,x\n")
    assert not csvboxes.sniff(p, p.read_bytes())
    with pytest.raises(LoadError) as e:
        load_batch(p, format="csvboxes", formats=[csvboxes.FORMAT])
    assert (e.value.line, e.value.path) == (1, p) and "header" in e.value.msg


def test_label_balance_gate(csvboxes: ModuleType, tmp_path: Path) -> None:
    batch = csvboxes.load_csvboxes(_batch(tmp_path / "b", SKEWED))
    gate = csvboxes.LABEL_BALANCE

    def run(section: dict[str, Any]) -> Any:
        ctx = GateContext(section=section, rules={}, base_dir=tmp_path, load=csvboxes.load_csvboxes)
        return gate.run(batch, ctx)

    assert run({}).verdict == "skipped"
    strict, loose = run({"max_share": 0.6}), run({"max_share": 0.7})
    assert (strict.verdict, loose.verdict) == ("failed", "passed")
    assert strict.population == 3 and [f.category for f in strict.findings] == ["car"]
    assert {c.scope: round(c.value, 4) for c in loose.checks} == {"class:car": 0.6667, "class:person": 0.3333}
    assert np.isclose(sum(c.value for c in loose.checks), 1.0)


def test_the_readme_section_shows_the_package_code() -> None:
    """Every code line of docs/writing-a-plugin.md (bar ``...`` and comments) is in the
    package, whitespace aside: the README section cannot drift from the tested code."""
    doc = (PLUGIN_SRC.parents[2] / "docs" / "writing-a-plugin.md").read_text()
    source = re.sub(r"\s+", "", (PLUGIN_SRC / "annogate_csvboxes" / "__init__.py").read_text())
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    code = [ln for ln in lines if ln and not ln.startswith(("...", "#"))]
    assert len(code) > 15
    assert [ln for ln in code if re.sub(r"\s+", "", ln) not in source] == []


def test_a_plugin_gate_can_name_exact_defective_rows_for_the_cost_estimate() -> None:
    from annogate.cost import estimate_cost
    from annogate.defects import CostFacts, DefectRows
    from annogate.findings import GateResult

    facts = CostFacts(exact=(DefectRows(error_type="wrong_class", rows=(0, 1), categories=("car", "car")),))
    result = GateResult(**{"gate": "plugin_gate", "verdict": "failed", "cost": facts})
    estimate = estimate_cost(n_labels=10, results=[result], params={})
    assert estimate.to_dict()["deterministic_defects"] == 2
