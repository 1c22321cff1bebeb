"""``annogate plan`` and ``annogate trend``: the sub-commands print what the library computes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from annogate.commands import main_plan, main_trend, run_subcommand
from annogate.history import append_history, entries_from_report
from annogate.planning import acceptance_plan, estimation_plan

from .test_history import _report


def test_plan_prints_the_exact_sizes() -> None:
    out = io.StringIO()
    code = main_plan(
        [
            "--expected-defect-rate",
            "0.05",
            "--margin",
            "0.01",
            "--batch-size",
            "20000",
            "--aql",
            "0.01",
            "--ltpd",
            "0.05",
        ],
        out=out,
    )
    text = out.getvalue()
    est = estimation_plan(expected_rate=0.05, margin=0.01, batch_size=20000)
    plan = acceptance_plan(aql=0.01, ltpd=0.05, lot=20000)
    assert code == 0
    assert f"golden objects needed: {est.objects:,}" in text
    assert f"inspect n = {plan.n:,} objects" in text and f"c = {plan.c} defective" in text
    assert "code letter M, sample size 315" in text


@pytest.mark.parametrize(
    "bad", [["--expected-defect-rate", "nan"], ["--expected-defect-rate", "5"], ["--margin", "0.01"]]
)
def test_plan_rejects_bad_numbers(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main_plan(bad, out=io.StringIO())
    assert e.value.code == 2


def test_trend_flags_and_exits_1(tmp_path: Path) -> None:
    for when, k in (("2026-11-01T00:00:00Z", 2), ("2026-11-08T00:00:00Z", 3), ("2026-11-15T00:00:00Z", 20)):
        append_history(tmp_path, entries_from_report(_report(when, {"alice": (2, 100), "bob": (k, 100)})))
    out = io.StringIO()
    assert main_trend([str(tmp_path)], out=out) == 1
    assert "annotator bob  REGRESSED" in out.getvalue()
    out = io.StringIO()
    main_trend([str(tmp_path), "--json"], out=out)
    series = {s["key"]: s for s in json.loads(out.getvalue())}
    assert series["bob"]["regressed"] and not series["alice"]["regressed"]


def test_trend_on_garbage_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("not json\n")
    assert main_trend([str(tmp_path)], out=io.StringIO()) == 4


def test_run_subcommand_only_for_known_words() -> None:
    assert run_subcommand(["examples/"]) is None
    assert run_subcommand([]) is None
