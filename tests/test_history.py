"""History, trend and baseline comparison: statistics against SciPy and Newcombe (1998)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from annogate.history import (
    HistoryEntry,
    append_history,
    compare,
    entries_from_report,
    fisher_worse,
    load_history,
    metric_of,
    newcombe_interval,
    parse_margin,
    trend,
)

scipy_stats = pytest.importorskip("scipy.stats")


def test_newcombe_hybrid_score_interval_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80,
    # method 10 (hybrid score, no continuity correction): 0.0524 to 0.3339
    lo, hi = newcombe_interval(56, 70, 48, 80)
    assert lo == pytest.approx(0.0524, abs=5e-5)
    assert hi == pytest.approx(0.3339, abs=5e-5)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(15, 100, 5, 200), (1, 10, 0, 10), (3, 50, 3, 50), (0, 40, 9, 60)])
def test_fisher_one_sided_equals_scipy(k1: int, n1: int, k2: int, n2: int) -> None:
    _, p = scipy_stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")
    assert fisher_worse(k1, n1, k2, n2) == pytest.approx(p, rel=1e-9, abs=1e-12)


def _report(when: str, who: dict[str, tuple[int, int]], *, recall: float = 0.95, tp: int = 95) -> dict[str, Any]:
    k = sum(v[0] for v in who.values())
    n = sum(v[1] for v in who.values())
    return {
        "report_format": "annogate-report/1",
        "generated_at": when,
        "rules": {"sha256": "r", "content": {"cost": {"cohorts": {"alice": "vendorA", "bob": "vendorB"}}}},
        "batches": [
            {
                "path": "batches/week/batch.json",
                "sha256": "s",
                "format": "coco",
                "verdict": "passed",
                "n_annotations": 1000,
                "gates": [
                    {
                        "gate": "golden",
                        "checks": [{"metric": "recall", "scope": "overall", "value": recall}],
                        "metrics": {"overall": {"tp": tp, "golden_objects": 100, "extra": 2, "mislabelled": 1}},
                        "cost": {
                            "sampled": {"defects": k, "sample": n, "by_annotator": {a: list(v) for a, v in who.items()}}
                        },
                    }
                ],
                "cost": {"total": 80.0, "currency": "EUR"},
            }
        ],
    }


def test_entries_history_roundtrip_and_cohorts(tmp_path: Path) -> None:
    rep = _report("2026-11-01T00:00:00Z", {"alice": (2, 100), "bob": (3, 100)})
    entries = entries_from_report(rep)
    assert len(entries) == 1
    e = entries[0]
    assert (e.defects, e.sample) == (5, 200)
    assert e.annotators == {"alice": (2, 100), "bob": (3, 100)}
    assert e.cohorts == {"vendorA": (2, 100), "vendorB": (3, 100)}
    assert e.metrics["golden.recall"] == 0.95
    target = append_history(tmp_path / "hist", entries)
    append_history(tmp_path / "hist", entries)
    assert target.read_text().count("\n") == 2
    back = load_history(tmp_path / "hist")
    assert back == [e, e]
    assert HistoryEntry.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_trend_flags_the_annotator_who_got_significantly_worse() -> None:
    runs = [
        _report("2026-11-01T00:00:00Z", {"alice": (2, 100), "bob": (2, 100)}),
        _report("2026-11-08T00:00:00Z", {"alice": (3, 100), "bob": (2, 100)}),
        _report("2026-11-15T00:00:00Z", {"alice": (2, 100), "bob": (15, 100)}),
    ]
    entries = [e for r in runs for e in entries_from_report(r)]
    series = {(s.kind, s.key): s for s in trend(entries)}
    assert series[("annotator", "bob")].regressed
    assert series[("annotator", "bob")].p_value is not None and series[("annotator", "bob")].p_value < 0.001
    assert not series[("annotator", "alice")].regressed
    assert series[("cohort", "vendorB")].regressed
    assert len(series[("source", "batches/week")].points) == 3


def test_a_small_wobble_is_not_a_regression() -> None:
    runs = [_report(f"2026-11-0{i}T00:00:00Z", {"bob": (k, 50)}) for i, k in ((1, 2), (2, 3), (3, 4))]
    entries = [e for r in runs for e in entries_from_report(r)]
    bob = next(s for s in trend(entries) if s.key == "bob")
    assert not bob.regressed


@pytest.mark.parametrize(
    ("text", "metric", "direction", "amount", "unit"),
    [
        ("golden.recall:-2%", "golden.recall", -1, 2.0, "%"),
        ("defect_rate:+1pt", "defect_rate", 1, 1.0, "pt"),
        ("golden.drift.left[annotator:bob]:+0.005", "golden.drift.left[annotator:bob]", 1, 0.005, ""),
    ],
)
def test_parse_margin(text: str, metric: str, direction: int, amount: float, unit: str) -> None:
    m = parse_margin(text)
    assert (m.metric, m.direction, m.amount, m.unit) == (metric, direction, amount, unit)


@pytest.mark.parametrize("bad", ["recall", "recall:2%", "recall:-x%", "recall:-2%%", ":-2%", "recall:-nan"])
def test_parse_margin_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="margin"):
        parse_margin(bad)


def test_compare_fails_on_regression_beyond_margin_with_interval() -> None:
    base = _report("2026-11-01T00:00:00Z", {"bob": (2, 100)}, recall=0.95, tp=95)
    now = _report("2026-11-15T00:00:00Z", {"bob": (9, 100)}, recall=0.90, tp=90)
    res = compare(now["batches"][0], base, [parse_margin("golden.recall:-2%"), parse_margin("defect_rate:+1pt")])
    recall, rate = res
    assert recall.failed and recall.baseline == 0.95 and recall.now == 0.90
    assert recall.allowed == pytest.approx(0.95 * 0.98)
    assert recall.interval is not None and recall.interval[0] < -0.05 < recall.interval[1]
    assert rate.failed and rate.difference == pytest.approx(0.07)
    assert rate.interval == pytest.approx(newcombe_interval(9, 100, 2, 100))
    assert "REGRESSED" in rate.describe()
    ok = compare(now["batches"][0], base, [parse_margin("golden.recall:-10%"), parse_margin("defect_rate:+10pt")])
    assert not any(c.failed for c in ok)


def test_compare_missing_metric_or_batch_does_not_fail() -> None:
    base = _report("2026-11-01T00:00:00Z", {"bob": (2, 100)})
    now = _report("2026-11-15T00:00:00Z", {"bob": (2, 100)})
    (c,) = compare(now["batches"][0], base, [parse_margin("agreement.alpha:-5%")])
    assert not c.failed and "not measured" in c.reason
    other = dict(now["batches"][0], path="elsewhere.json")
    (c,) = compare(other, base, [parse_margin("golden.recall:-2%")])
    assert not c.failed and "baseline" in c.reason
    assert metric_of(now["batches"][0], "defect_rate[annotator:bob]") is not None


def test_load_history_refuses_what_is_not_history(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text('{"nope": 1}\n')
    with pytest.raises(ValueError, match=r"history\.jsonl:1"):
        load_history(tmp_path)
    (tmp_path / "history.jsonl").unlink()
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not an annogate audit report"):
        load_history(tmp_path)
