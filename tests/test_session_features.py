"""Real sessions over the bundled examples: history + trend, baseline comparison, shards + merge.

Issue 11's acceptance: three runs of the examples (the third with a planted regression
of one annotator) make ``annogate trend`` flag that annotator and
``--annogate-compare-fail`` fail; issue 12's: CI shards merged by ``annogate merge``
say what one run over all batches says.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from annogate.commands import main_merge, main_trend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "labels"
    repo.mkdir()
    for part in ("clean", "golden"):
        shutil.copytree(EXAMPLES / part, repo / part)
    shutil.copy(EXAMPLES / "annogate.toml", repo / "annogate.toml")
    return repo


def _annogate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from annogate.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def _plant_regression(batch: Path, who: str) -> int:
    """Relabel every object of ``who`` on the golden images as another class."""
    data = json.loads(batch.read_text())
    golden = json.loads((EXAMPLES / "golden" / "golden.json").read_text())
    names = {im["file_name"] for im in golden["images"]}
    gold_images = {im["id"] for im in data["images"] if im["file_name"] in names}
    cats = [c["id"] for c in data["categories"]]
    n = 0
    for a in data["annotations"]:
        if a.get("annotator_id", a.get("annotator")) == who and a["image_id"] in gold_images:
            a["category_id"] = cats[(cats.index(a["category_id"]) + 1) % len(cats)]
            n += 1
    batch.write_text(json.dumps(data, indent=1))
    return n


def test_history_trend_and_baseline_flag_the_regressing_annotator(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    hist = tmp_path / "history"
    for k in (1, 2):
        r = _annogate(
            tmp_path, "labels/clean", "-q", "--annogate-history", str(hist), "--annogate-report", f"r{k}.json"
        )
        assert r.returncode == 0, r.stdout + r.stderr
    assert _plant_regression(repo / "clean" / "batch.json", "bob") >= 5
    r = _annogate(
        tmp_path,
        "labels/clean",
        "-q",
        "--annogate-history",
        str(hist),
        "--annogate-compare",
        "r1.json",
        "--annogate-compare-fail",
        "defect_rate:+1pt",
        "golden.precision:-2%",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "labels/clean/batch.json::baseline" in r.stdout
    assert "defect_rate: baseline 0, now" in r.stdout
    assert len((hist / "history.jsonl").read_text().splitlines()) == 3
    out = io.StringIO()
    assert main_trend([str(hist), "--json"], out=out) == 1
    series = {(s["kind"], s["key"]): s for s in json.loads(out.getvalue())}
    assert series[("annotator", "bob")]["regressed"]
    assert not series[("annotator", "alice")]["regressed"]
    assert not series[("annotator", "carol")]["regressed"]
    # the labels were only read
    assert not list((repo).rglob("*.jsonl")) and not list(repo.rglob(".pytest_cache"))


def test_history_inside_the_gated_folder_is_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    r = _annogate(tmp_path, "labels", "-q", "--annogate-history", str(repo / "hist"))
    assert r.returncode == 4
    assert "being gated" in (r.stdout + r.stderr)
    assert not (repo / "hist").exists()


@pytest.mark.parametrize("bad", [["--annogate-compare-fail", "recall:2%"], ["--annogate-shard", "3/2"]])
def test_bad_compare_and_shard_options_are_usage_errors(tmp_path: Path, bad: list[str]) -> None:
    _repo(tmp_path)
    (tmp_path / "base.json").write_text(json.dumps({"report_format": "annogate-report/1", "batches": []}))
    r = _annogate(tmp_path, "labels", "-q", "--annogate-compare", "base.json", *bad)
    assert r.returncode == 4, r.stdout + r.stderr


def _strip(report: dict[str, Any]) -> dict[str, Any]:
    report = dict(report)
    report.pop("generated_at")
    return report


def test_shards_merged_equal_one_run(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    shutil.copytree(EXAMPLES / "defective", repo / "defective")
    shutil.copytree(EXAMPLES / "clean", repo / "clean2")
    full = _annogate(tmp_path, "labels", "-q", "--annogate-report", "full.json")
    assert full.returncode == 1
    for k in (1, 2, 3):
        r = _annogate(tmp_path, "labels", "-q", "--annogate-shard", f"{k}/3", "--annogate-report", f"s{k}.json")
        assert r.returncode in (0, 1, 5), r.stdout + r.stderr
    shards = [
        json.loads((tmp_path / f"s{k}.json").read_text()) for k in (1, 2, 3) if (tmp_path / f"s{k}.json").exists()
    ]
    assert sum(len(s["batches"]) for s in shards) == 3  # each batch in exactly one shard
    out = io.StringIO()
    code = main_merge(
        [
            "-o",
            str(tmp_path / "merged.json"),
            *(str(tmp_path / f"s{k}.json") for k in (1, 2, 3) if (tmp_path / f"s{k}.json").exists()),
        ],
        out=out,
    )
    assert code == 1 and "verdict failed" in out.getvalue()
    merged = json.loads((tmp_path / "merged.json").read_text())
    one = json.loads((tmp_path / "full.json").read_text())
    assert _strip(merged) == _strip(one)
