"""The pytest adapter under stress: lazy imports, third-party gates that raise,
items that error outside a gate, symlinks, hostile names, and item names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEAVY = ("numpy", "jsonschema", "orjson", "shapely", "pycocotools", "annogate.engine")


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    shutil.copy(EXAMPLES / "annogate.toml", root / "annogate.toml")
    for sub in ("golden", "clean", "defective"):
        shutil.copytree(EXAMPLES / sub, root / sub)
    return root


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = f"import sys, annogate.plugin, annogate; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # the lazy re-exports still work
    code = "import annogate; print(annogate.Engine.__name__, bool(annogate.__version__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Engine", "True"]


def test_pytest_without_the_flag_loads_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import sys
        def test_light():
            assert [m for m in {HEAVY!r} if m in sys.modules] == []
        """
    )
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0


def install_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    """A third-party annogate plugin, found the real way: an ``annogate`` entry point."""
    site = pytester.path.parent / f"{pytester.path.name}-site"
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[annogate]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(site))


RAISER = """
    from annogate import Gate, hookimpl

    def _boom(kind):
        def run(batch, ctx):
            if kind == "recursion":
                raise RecursionError("maximum recursion depth exceeded")
            if kind == "memory":
                raise MemoryError()
            raise OverflowError("Python int too large to convert to C long")
        return run

    @hookimpl
    def annogate_gates():
        return [Gate(name=f"raise_{k}", run=_boom(k), rules_schema={"type": "object"}, order=50)
                for k in ("overflow", "memory", "recursion")]
"""


def test_a_raising_gate_fails_alone_and_the_report_agrees(
    pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(pytester, monkeypatch, "raiser_gates", RAISER)
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "clean", "--annogate-report", "r.json", "-rA")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    out = run.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out + run.stderr.str()
    run.stdout.fnmatch_lines(["*the raise_overflow gate raised OverflowError: Python int too large*"])
    run.stdout.fnmatch_lines(["*the raise_memory gate raised MemoryError*"])
    run.stdout.fnmatch_lines(["*the raise_recursion gate raised RecursionError*"])
    oc = run.parseoutcomes()
    assert oc["failed"] == 3 and oc["passed"] >= 3  # schema, geometry, golden... still ran
    report = json.loads((repo / "r.json").read_text())
    assert report["summary"]["verdict"] == "failed"
    (batch,) = report["batches"]
    verdicts = {g["gate"]: g["verdict"] for g in batch["gates"]}
    assert verdicts["raise_memory"] == "failed" and verdicts["schema"] == "passed"


SKIPPER = """
    from annogate import Batch, Format, Images, Categories, Annotations, hookimpl

    def load(path, **_):
        return Batch(path=path, format="skipme", images=Images.empty(), categories=Categories.empty(),
                     annotations=Annotations.empty(), files=(str(path),), sha256="0" * 64,
                     skip_reason="a fixture of the skipme format: nothing to gate")

    @hookimpl
    def annogate_formats():
        return [Format(name="skipme", suffixes=(".skipme",), sniff=lambda p, head: True, load=load)]
"""


def test_batch_skip_reason_skips_every_gate(
    pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(pytester, monkeypatch, "skipme_format", SKIPPER)
    (repo / "x.skipme").write_text("anything")
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "x.skipme", "-rs")
    assert run.ret == 0
    assert run.parseoutcomes() == {"skipped": 5}
    run.stdout.fnmatch_lines(["*nothing to gate*"])


def test_report_lists_batches_whose_items_errored_or_were_skipped(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.nodeid.startswith("defective/"):
                    item.add_marker(pytest.mark.skip(reason="parked by a conftest"))

        def pytest_runtest_setup(item):
            if item.nodeid == "clean/batch.json::golden":
                raise RuntimeError("setup broke")
        """
    )
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "--annogate-report", "r.json")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((repo / "r.json").read_text())
    verdicts = {b["path"]: b["verdict"] for b in report["batches"]}
    assert verdicts == {"clean/batch.json": "failed", "defective/batch.json": "skipped"}
    assert report["summary"]["verdict"] == "failed"


def test_collection_error_makes_the_report_fail(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "clean" / "annogate.toml").write_text("[geometry]\nno_such_key = 1\n")
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", ".", "--annogate-report", "r.json")
    assert run.ret != 0
    report = json.loads((repo / "r.json").read_text())
    assert report["summary"]["verdict"] == "failed"
    assert report["summary"]["exit_status"] == int(run.ret)


def test_symlinked_batch_takes_the_rules_of_its_location(pytester: pytest.Pytester, repo: Path) -> None:
    other = repo / "elsewhere"
    other.mkdir()
    (other / "annogate.toml").write_text('pack = "detection"\n')
    (other / "link.json").symlink_to(repo / "clean" / "batch.json")
    run = pytester.runpytest(
        "--annogate", "-p", "no:cacheprovider", "clean", "elsewhere", "--annogate-report", "r.json"
    )
    assert run.ret == 0
    report = json.loads((repo / "r.json").read_text())
    rules = {b["path"]: b["rules"]["path"] for b in report["batches"]}
    assert rules == {"clean/batch.json": "annogate.toml", "elsewhere/link.json": "elsewhere/annogate.toml"}
    files = {r["path"]: r for r in report["rules_files"]}
    assert set(files) == {"annogate.toml", "elsewhere/annogate.toml"}
    assert all(len(r["sha256"]) == 64 for r in files.values())
    assert files["elsewhere/annogate.toml"]["batches"] == ["elsewhere/link.json"]


def test_directory_symlink_loop_is_collected_once(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "clean" / "again").symlink_to(repo / "clean")
    (repo / "clean" / "up").symlink_to("..")
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "clean", "--collect-only", "-q")
    items = [ln for ln in run.outlines if "::" in ln]
    assert len(items) == 5, items


def test_control_characters_never_reach_the_terminal(
    pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads((repo / "defective" / "batch.json").read_text())
    data["categories"][0]["name"] = "car\x1b[2J\x1b[32mPASSED\r"
    evil = repo / "defective" / "evil\x1b[31m.json"
    evil.write_text(json.dumps(data, indent=1))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(repo / "summary.md"))
    run = pytester.runpytest_subprocess("--annogate", "-p", "no:cacheprovider", "defective", "-v", "-rA")
    text = run.stdout.str() + run.stderr.str()
    assert run.ret == 1
    assert "\x1b" not in text and "\r" not in text
    assert "\\x1b[31m.json" in text
    assert "\x1b" not in (repo / "summary.md").read_text()


def test_verbose_item_names_keep_the_file_name(pytester: pytest.Pytester, repo: Path) -> None:
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "clean", "-v")
    run.stdout.fnmatch_lines(["clean/batch.json::golden PASSED*"])
    run.stdout.no_fnmatch_line("*batch::json*")


def test_session_functions_print_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from annogate.engine import Engine
    from annogate.session import write_artifacts

    monkeypatch.chdir(repo)
    engine = Engine()
    run = engine.run_batch(Path("defective/batch.json"), [g.name for g in engine.gates])
    lines = write_artifacts([run.outcome()], engine=engine, report_path=None, rework_path=None, github=True)
    assert capsys.readouterr().out == ""
    assert any(ln.startswith("::error file=defective/batch.json") for ln in lines)
