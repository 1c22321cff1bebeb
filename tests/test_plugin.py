"""Acceptance: real pytest sessions (pytester) over label batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    """A label repository: rules, a golden file, a clean and a defective batch."""
    root = pytester.path
    shutil.copy(EXAMPLES / "annogate.toml", root / "annogate.toml")
    for sub in ("golden", "clean", "defective"):
        shutil.copytree(EXAMPLES / sub, root / sub)
    (root / "package.json").write_text('{"name": "labels", "version": "1.0.0"}')
    return root


def test_without_flag_nothing_is_collected(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.no_fnmatch_line("*batch.json*")


def test_items_per_gate_and_exit_code(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("--annogate", "--collect-only", "-q", "-p", "no:cacheprovider")
    lines = [ln for ln in result.outlines if "::" in ln]
    assert "clean/batch.json::schema" in lines and "defective/batch.json::geometry" in lines
    assert not any("golden.json" in ln or "package.json" in ln for ln in lines)
    gates = {ln.split("::")[1] for ln in lines}
    assert gates == {"schema", "geometry", "golden", "confusion", "agreement"}
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = run.parseoutcomes()
    assert outcomes["failed"] >= 3 and outcomes["passed"] >= 4
    run.stdout.fnmatch_lines(["*defective/batch.json::schema*", "*category_id 99*"])
    run.stdout.fnmatch_lines(["*annogate*", "*FAILED*"])


def test_clean_batch_passes(pytester: pytest.Pytester, repo: Path) -> None:
    run = pytester.runpytest("--annogate", "clean", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.OK


def test_k_selects_gates(pytester: pytest.Pytester, repo: Path) -> None:
    run = pytester.runpytest("--annogate", "-k", "schema", "-p", "no:cacheprovider")
    outcomes = run.parseoutcomes()
    assert outcomes == {"failed": 1, "passed": 1, "deselected": 8}


def test_junitxml_has_items_and_properties(pytester: pytest.Pytester, repo: Path) -> None:
    xml = repo / "out.xml"
    pytester.runpytest("--annogate", f"--junitxml={xml}", "-p", "no:cacheprovider")
    tree = ElementTree.parse(xml)
    cases = tree.findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert {"schema", "geometry", "golden"} <= names
    props = {p.get("name") for p in tree.findall(".//property")}
    assert "annogate.verdict" in props
    assert not any(p and p.startswith("annogate_result") for p in props)  # transport stays internal


def test_unreadable_batch_is_one_failing_item(pytester: pytest.Pytester) -> None:
    bad = pytester.path / "broken.json"
    text = (DATA / "invalid" / "coco" / "unreadable__truncated.json").read_text()
    bad.write_text(text)
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "-rs")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert run.parseoutcomes()["failed"] == 1
    run.stdout.fnmatch_lines(["*broken.json*unexpected end of file*"])
    run.stdout.no_fnmatch_line("*INTERNALERROR*")
    run.stdout.no_fnmatch_line("*Traceback*")
    assert bad.read_text() == text  # label files are never written to


def test_bad_rules_key_is_a_usage_error(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "annogate.toml").write_text('pack = "detection"\n[geometry]\ntolerance_pixelz = 3\n')
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*annogate.toml*tolerance_pixelz*"])


def test_rules_from_pyproject(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "annogate.toml").unlink()
    (repo / "pyproject.toml").write_text(
        '[tool.annogate]\npack = "detection"\n[tool.annogate.golden]\nfile = "golden/golden.json"\nmin_recall = 1.01\n'
    )
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.USAGE_ERROR  # 1.01 is not a rate
    run.stderr.fnmatch_lines(["*pyproject.toml*min_recall*"])


def _report(pytester: pytest.Pytester, name: str, *extra: str) -> dict[str, object]:
    path = pytester.path / name
    rework = pytester.path / (name + ".rework.csv")
    pytester.runpytest(
        "--annogate", f"--annogate-report={path}", f"--annogate-rework={rework}", "-p", "no:cacheprovider", *extra
    )
    data: dict[str, object] = json.loads(path.read_text())
    data["_rework"] = rework.read_text()
    return data


def test_report_schema_determinism_and_xdist_equality(pytester: pytest.Pytester, repo: Path) -> None:
    pytest.importorskip("xdist")
    from annogate.report.audit import schema_path

    one = _report(pytester, "r1.json")
    two = _report(pytester, "r2.json")
    par = _report(pytester, "r3.json", "-n", "2")
    schema = json.loads(schema_path().read_text())
    for r in (one, two, par):
        rework = r.pop("_rework")
        assert isinstance(rework, str) and "defective" in rework
        jsonschema.validate(r, schema)
        r.pop("generated_at")
    assert one == two
    assert one == par
    verdicts = {b["path"]: b["verdict"] for b in one["batches"]}  # type: ignore[union-attr, index]
    assert verdicts == {"clean/batch.json": "passed", "defective/batch.json": "failed"}


def test_github_annotations_and_summary(pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = repo / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run = pytester.runpytest_subprocess("--annogate", "-p", "no:cacheprovider")
    run.stdout.fnmatch_lines(["::error file=defective/batch.json,line=*"])
    assert "defective/batch.json" in summary.read_text()


def test_console_script_keeps_no_batches_a_failure_unless_allowed(pytester: pytest.Pytester) -> None:
    """Zero batches is exit 5 from the console script too (issue 13: a gate that reads
    nothing is no pass); the pre-commit hook's --annogate-allow-empty makes it 0."""
    (pytester.path / "package.json").write_text('{"name": "x"}')
    from annogate.cli import main

    args = [str(pytester.path / "package.json"), "-p", "no:cacheprovider"]
    assert main(args) == pytest.ExitCode.NO_TESTS_COLLECTED
    assert main([*args, "--annogate-allow-empty"]) == 0
