"""The console script (``annogate ...``) as pre-commit and CI run it: a subprocess.

Why subprocesses: the script's contract is about what a user's shell sees (exit
codes, files left behind, warnings), and pytest must start fresh for the
assert-rewrite warning to show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = Path(sys.executable).with_name("annogate")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "annogate.toml", tmp_path / "annogate.toml")
    for sub in ("golden", "clean", "defective"):
        shutil.copytree(EXAMPLES / sub, tmp_path / sub)
    return tmp_path


def run(pytester: pytest.Pytester, cwd: Path, *args: str) -> pytest.RunResult:
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    os.chdir(cwd)
    return pytester.run(str(SCRIPT), *args, timeout=120)


@pytest.mark.parametrize(
    ("option", "name"),
    [("--annogate-report", "audit.json"), ("--annogate-rework", "rework.csv"), ("--junitxml", "gate.xml")],
)
def test_option_values_are_not_dropped(pytester: pytest.Pytester, repo: Path, option: str, name: str) -> None:
    """Old script dropped the existing ``audit.json`` (no batch) and pytest then took
    the batch as the option's value: the report overwrote the label file."""
    (repo / name).write_text("old output\n")
    batch = repo / "clean" / "batch.json"
    before = batch.read_bytes()
    res = run(pytester, repo, option, name, "clean/batch.json", "-q")
    assert res.ret == 0, res.stdout.str()
    assert batch.read_bytes() == before
    assert (repo / name).read_text() != "old output\n"


def test_rules_option_value_is_not_taken_for_a_batch(pytester: pytest.Pytester, repo: Path) -> None:
    rules = repo / "r.toml"
    rules.write_text((repo / "annogate.toml").read_text())
    res = run(pytester, repo, "clean", "--annogate-rules", "r.toml", "--annogate-report", "out.json", "-q")
    assert res.ret == 0, res.stdout.str() + res.stderr.str()
    report = json.loads((repo / "out.json").read_text())
    assert [r["path"] for r in report["rules_files"]] == ["r.toml"]


def test_staged_non_batch_files_are_ignored(pytester: pytest.Pytester, repo: Path) -> None:
    """package.json is plainly no label file: skipped. notes.txt is in scope (given) and no
    reader claims it: it fails with why (issue 13: nothing in scope passes unread)."""
    (repo / "package.json").write_text('{"name": "x"}')
    (repo / "notes.txt").write_text("hello\n")
    res = run(pytester, repo, "package.json", "notes.txt", "defective/batch.json", "-q")
    assert res.ret == 1
    assert "defective/batch.json" in res.stdout.str()
    assert "notes.txt::schema" in res.stdout.str() and "text of no known label shape" in res.stdout.str()
    only = run(pytester, repo, "package.json")
    assert only.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    only.stdout.fnmatch_lines(["annogate: no label batches under package.json"])
    allowed = run(pytester, repo, "package.json", "--annogate-allow-empty")
    assert allowed.ret == 0


def test_an_empty_folder_is_no_success(pytester: pytest.Pytester, repo: Path) -> None:
    """Zero batches is exit 0 only for a list of files that are none (pre-commit);
    a folder with no batch (a typo, a wrong checkout) is pytest's exit 5."""
    (repo / "empty").mkdir()
    res = run(pytester, repo, "empty")
    assert res.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_no_cache_left_in_a_batch_folder(pytester: pytest.Pytester, repo: Path) -> None:
    folder = repo / "defective"
    res = run(pytester, folder, "batch.json", "-q")
    assert res.ret == 1
    assert not (folder / ".pytest_cache").exists()
    assert not (repo / ".pytest_cache").exists()


def test_last_failed_keeps_its_cache_outside_the_labels(
    pytester: pytest.Pytester, repo: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    folder = repo  # clean (all gates pass) and defective (every gate fails, as planted)
    first = run(pytester, folder, "clean/batch.json", "defective/batch.json", "--lf", "-q")
    assert first.ret == 1 and first.parseoutcomes().get("passed", 0) >= 1
    again = run(pytester, folder, "clean/batch.json", "defective/batch.json", "--lf", "-q")
    assert again.ret == 1
    assert "passed" not in again.parseoutcomes()  # only the failed gates ran again
    assert not (folder / ".pytest_cache").exists()
    assert list((cache / "annogate" / "pytest").iterdir())


def test_no_assert_rewrite_warning(pytester: pytest.Pytester, repo: Path) -> None:
    res = run(pytester, repo, "clean/batch.json", "-q", "-W", "error::pytest.PytestAssertRewriteWarning")
    assert res.ret == 0, res.stdout.str() + res.stderr.str()
    assert "PytestAssertRewriteWarning" not in res.stdout.str() + res.stderr.str()


# --------------------------------------------------------------------------- the example workflow

WORKFLOW = EXAMPLES / "github" / "annogate.yml"


def _workflow() -> tuple[str, dict[str, object] | None]:
    """The workflow's text with ``${VAR}``/``$VAR`` of its top-level env expanded, and
    the parsed YAML when PyYAML is installed."""
    text = WORKFLOW.read_text()
    env = dict(re.findall(r"^  ([A-Z_]+): *\"?([^\s\"#]+)", text.split("\njobs:")[0].split("\nenv:")[1], re.M))
    for k, v in env.items():
        text = text.replace("${" + k + "}", v).replace("$" + k, v)
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is optional
        return text, None
    data: dict[str, object] = yaml.safe_load(WORKFLOW.read_text())
    return text, data


def test_workflow_takes_rules_and_golden_from_the_base_branch() -> None:
    """A pull request that edits annogate.toml or the golden file must not weaken its
    own gate: both come from the base branch, and the rules are passed explicitly."""
    text, _ = _workflow()
    shows = re.findall(r"git show \"?origin/\$\{?(?:BASE_REF|\{ github\.base_ref)[^\n]*", text)
    assert any("annogate.toml" in ln for ln in shows), shows
    assert any("golden" in ln for ln in shows), shows
    assert re.search(r"annogate [^\n]*\n(?:[^\n]*\\\n)*[^\n]*--annogate-rules", text)


def test_workflow_installs_from_the_repository_and_regates_on_rule_changes() -> None:
    text, data = _workflow()
    assert "git+https://github.com/annogate/annogate" in text
    assert "annogate==" not in text
    if data is not None:
        jobs = data["jobs"]
        assert isinstance(jobs, dict)
        for job in jobs.values():
            for step in job["steps"]:
                w = step.get("with")
                if isinstance(w, dict) and "cache" in w:
                    assert "cache-dependency-path" in w, "cache: pip needs a dependency path"
    else:
        assert "cache: pip" not in text or "cache-dependency-path" in text
    # a change of the golden file or of the rules re-gates every batch
    diff = re.search(r"git diff --name-only [^\n]*-- ([^\n|]*)", text)
    assert diff and "annogate.toml" in diff.group(1) and "golden" in diff.group(1)
