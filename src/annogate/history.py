"""Quality over time: history entries, trends with a significance test, baseline comparison.

Why: a single gate run says whether this batch is acceptable; a labelling lead also
needs to see a vendor or an annotator getting worse across batches (asked for in
CVAT #8027 and Label Studio #8125), and a dataset CI needs to fail a pull request
that makes quality regress against a baseline (deepchecks #1383, Great Expectations
#4186; pytest-benchmark's ``--benchmark-compare-fail`` is the convention users know).

Everything here works on audit reports (``annogate-report/1`` JSON, see
``annogate.report.audit``) as plain data, so a history folder, an artifact from an
earlier CI run and the report of this run are all the same kind of input.

* :func:`entries_from_report` turns a report into one :class:`HistoryEntry` per batch:
  when, which inputs (hashes), the verdict, flat metrics per gate and scope, the
  sampled defect counts overall and per annotator (and cohort), the cost.
* :func:`append_history` appends them to ``DIR/history.jsonl`` (one JSON object a
  line, appended with ``O_APPEND`` so concurrent CI shards do not interleave lines).
* :func:`trend` groups a history by batch source, annotator and cohort and flags a
  series whose latest defect rate is significantly worse than its past (one-sided
  Fisher exact test on the 2x2 table latest-vs-earlier, defective-vs-not).
* :func:`compare` checks a report against a baseline with margins such as
  ``golden.recall:-2%`` (may drop by at most 2 % of its baseline value) or
  ``defect_rate:+1pt`` (may rise by at most one percentage point); a proportion's
  difference carries Newcombe's hybrid-score 95 % interval.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from annogate.planning import hypergeom_cdf, wilson

__all__ = [
    "Comparison",
    "HistoryEntry",
    "Margin",
    "Measure",
    "TrendPoint",
    "TrendSeries",
    "append_history",
    "compare",
    "entries_from_report",
    "fisher_worse",
    "load_history",
    "metric_of",
    "newcombe_interval",
    "parse_margin",
    "trend",
]

HISTORY_FILE = "history.jsonl"
MAX_LINE = 16 << 20  # a history line larger than this is refused when read (hostile file)


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One batch of one run, as kept in the history."""

    when: str
    path: str
    sha256: str
    format: str
    verdict: str
    rules_sha256: str | None
    n_annotations: int
    metrics: Mapping[str, float | None]
    defects: int | None = None  # sampled (golden-set) defects ...
    sample: int | None = None  # ... out of this many objects
    annotators: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (defects, sample)
    cohorts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    cost_total: float | None = None
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["annotators"] = {k: list(v) for k, v in sorted(self.annotators.items())}
        d["cohorts"] = {k: list(v) for k, v in sorted(self.cohorts.items())}
        d["metrics"] = dict(sorted(self.metrics.items()))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            when=str(d["when"]),
            path=str(d["path"]),
            sha256=str(d.get("sha256", "")),
            format=str(d.get("format", "")),
            verdict=str(d.get("verdict", "")),
            rules_sha256=d.get("rules_sha256"),
            n_annotations=int(d.get("n_annotations", 0)),
            metrics={str(k): (None if v is None else float(v)) for k, v in dict(d.get("metrics", {})).items()},
            defects=None if d.get("defects") is None else int(d["defects"]),
            sample=None if d.get("sample") is None else int(d["sample"]),
            annotators={str(k): (int(v[0]), int(v[1])) for k, v in dict(d.get("annotators", {})).items()},
            cohorts={str(k): (int(v[0]), int(v[1])) for k, v in dict(d.get("cohorts", {})).items()},
            cost_total=None if d.get("cost_total") is None else float(d["cost_total"]),
            currency=d.get("currency"),
        )


def _flat_metrics(batch: Mapping[str, Any]) -> dict[str, float | None]:
    """``gate.metric`` (scope overall) and ``gate.metric[scope]`` from every check."""
    out: dict[str, float | None] = {}
    for g in batch.get("gates", []):
        for c in g.get("checks", []):
            scope = str(c.get("scope", "overall"))
            name = f"{g['gate']}.{c['metric']}" + ("" if scope == "overall" else f"[{scope}]")
            v = c.get("value")
            out[name] = None if v is None else float(v)
    return out


def _sampled(batch: Mapping[str, Any]) -> tuple[int | None, int | None, dict[str, tuple[int, int]]]:
    """The sampled defect counts: from a gate's typed cost facts, else the cost block."""
    for g in batch.get("gates", []):
        facts = g.get("cost") or {}
        s = facts.get("sampled") if isinstance(facts, Mapping) else None
        if s:
            who = {str(k): (int(v[0]), int(v[1])) for k, v in dict(s.get("by_annotator", {})).items()}
            return int(s["defects"]), int(s["sample"]), who
    cost = batch.get("cost") or {}
    if cost.get("golden_sample"):
        return int(cost["golden_defects"]), int(cost["golden_sample"]), {}
    return None, None, {}


def entries_from_report(report: Mapping[str, Any], *, cohorts: Mapping[str, str] | None = None) -> list[HistoryEntry]:
    """One entry per batch of an audit report; ``cohorts`` maps annotator -> cohort
    (defaults to the report's own ``[cost] cohorts`` rules)."""
    if cohorts is None:
        cohorts = dict(((report.get("rules") or {}).get("content") or {}).get("cost", {}).get("cohorts", {}))
    when = str(report.get("generated_at", ""))
    rules_sha = (report.get("rules") or {}).get("sha256")
    out: list[HistoryEntry] = []
    for b in report.get("batches", []):
        defects, sample, who = _sampled(b)
        by_cohort: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for name, (k, n) in who.items():
            c = cohorts.get(name)
            if c is not None:
                by_cohort[c][0] += k
                by_cohort[c][1] += n
        cost = b.get("cost") or {}
        out.append(
            HistoryEntry(
                when=when,
                path=str(b["path"]),
                sha256=str(b.get("sha256", "")),
                format=str(b.get("format", "")),
                verdict=str(b.get("verdict", "")),
                rules_sha256=rules_sha,
                n_annotations=int(b.get("n_annotations", 0)),
                metrics=_flat_metrics(b),
                defects=defects,
                sample=sample,
                annotators=who,
                cohorts={k: (v[0], v[1]) for k, v in by_cohort.items()},
                cost_total=cost.get("total"),
                currency=cost.get("currency"),
            )
        )
    return out


def append_history(directory: str | os.PathLike[str], entries: Iterable[HistoryEntry]) -> Path:
    """Append entries to ``DIR/history.jsonl`` (created with the user's umask).

    Each line is written with a single ``write`` on an ``O_APPEND`` descriptor, so
    lines from concurrent runs never interleave. The caller (the pytest adapter)
    has already refused a folder that holds label files.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    target = d / HISTORY_FILE
    data = "".join(json.dumps(e.to_dict(), sort_keys=True, allow_nan=False) + "\n" for e in entries)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)
    return target


def load_history(source: str | os.PathLike[str]) -> list[HistoryEntry]:
    """Entries from a history folder (its ``history.jsonl``), a ``.jsonl`` file, or audit
    reports (``*.json`` files in the folder are read as reports), oldest first."""
    p = Path(source)
    files = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.json")) if p.is_dir() else [p]
    out: list[HistoryEntry] = []
    for f in files:
        if f.suffix == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if len(line) > MAX_LINE:
                        raise ValueError(f"{f}:{n}: history line longer than {MAX_LINE} bytes")
                    if line.strip():
                        try:
                            out.append(HistoryEntry.from_dict(json.loads(line)))
                        except (ValueError, KeyError, TypeError) as e:
                            raise ValueError(f"{f}:{n}: not a history entry ({e})") from None
        else:
            report = json.loads(f.read_text("utf-8"))
            if not (
                isinstance(report, Mapping) and str(report.get("report_format", "")).startswith("annogate-report/")
            ):
                raise ValueError(f"{f}: not an annogate audit report")
            out.extend(entries_from_report(report))
    out.sort(key=lambda e: (e.when, e.path))
    return out


# --------------------------------------------------------------------------- statistics


def fisher_worse(k_new: int, n_new: int, k_old: int, n_old: int) -> float:
    """One-sided Fisher exact p-value that the new rate k_new/n_new is higher than the old.

    Conditional on the margins, the defects in the new sample are hypergeometric;
    the p-value is P(X >= k_new).
    """
    total, defects = n_new + n_old, k_new + k_old
    if n_new <= 0 or n_old <= 0 or defects == 0:
        return 1.0
    return max(0.0, 1.0 - hypergeom_cdf(k_new - 1, total, defects, n_new))


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (method 10 of Newcombe 1998)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, lower), min(1.0, upper))


# --------------------------------------------------------------------------- trend


@dataclass(frozen=True, kw_only=True)
class TrendPoint:
    when: str
    defects: int
    sample: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True, kw_only=True)
class TrendSeries:
    """The defect rate of one batch source, annotator or cohort over time."""

    kind: str  # "source", "annotator", "cohort"
    key: str
    points: tuple[TrendPoint, ...]
    p_value: float | None  # latest vs all earlier, one-sided (worse)
    regressed: bool


def _series(kind: str, key: str, pts: Sequence[tuple[str, int, int]], alpha: float) -> TrendSeries:
    points = tuple(
        TrendPoint(when=w, defects=k, sample=n, rate=k / n, low=wilson(k, n)[0], high=wilson(k, n)[1])
        for w, k, n in pts
        if n > 0
    )
    p: float | None = None
    if len(points) >= 2:
        last = points[-1]
        k_old = sum(x.defects for x in points[:-1])
        n_old = sum(x.sample for x in points[:-1])
        p = fisher_worse(last.defects, last.sample, k_old, n_old)
    return TrendSeries(kind=kind, key=key, points=points, p_value=p, regressed=p is not None and p < alpha)


def trend(entries: Sequence[HistoryEntry], *, alpha: float = 0.05) -> list[TrendSeries]:
    """Defect-rate series per batch source (the batch's folder), annotator and cohort.

    A series is flagged when its latest run's rate is significantly higher than all
    its earlier runs pooled (one-sided Fisher exact test at ``alpha``), not by eye.
    """
    grouped: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for e in entries:
        if e.defects is not None and e.sample:
            src = str(Path(e.path).parent) if Path(e.path).suffix else e.path
            acc = grouped[("source", src)][e.when]
            acc[0] += e.defects
            acc[1] += e.sample
        for kind, table in (("annotator", e.annotators), ("cohort", e.cohorts)):
            for name, (k, n) in table.items():
                acc = grouped[(kind, name)][e.when]
                acc[0] += k
                acc[1] += n
    out = [
        _series(kind, key, [(w, v[0], v[1]) for w, v in sorted(by_when.items())], alpha)
        for (kind, key), by_when in grouped.items()
    ]
    order = {"source": 0, "cohort": 1, "annotator": 2}
    return sorted(out, key=lambda s: (order.get(s.kind, 9), s.key))


# --------------------------------------------------------------------------- baseline comparison

_MARGIN = re.compile(r"^(?P<metric>[A-Za-z0-9_.\[\]:>\-]+?):(?P<sign>[+-])(?P<amount>\d+(?:\.\d+)?)(?P<unit>%|pt)?$")


@dataclass(frozen=True, kw_only=True)
class Margin:
    """``golden.recall:-2%``: the metric may move in the bad direction (the sign) by at
    most the amount: ``%`` relative to the baseline, ``pt`` percentage points of a rate,
    no unit the metric's own units."""

    metric: str
    direction: int  # -1: lower is worse, +1: higher is worse
    amount: float
    unit: str  # "%", "pt" or ""

    def allowed(self, baseline: float) -> float:
        """The worst value still accepted."""
        if self.unit == "%":
            step = abs(baseline) * self.amount / 100
        elif self.unit == "pt":
            step = self.amount / 100
        else:
            step = self.amount
        return baseline + self.direction * step


def parse_margin(text: str) -> Margin:
    m = _MARGIN.match(text.strip())
    if m is None:
        raise ValueError(
            f"bad --annogate-compare-fail margin {text!r}: expected METRIC:+N%, METRIC:-Npt or METRIC:+N "
            "(e.g. golden.recall:-2% or defect_rate:+1pt)"
        )
    amount = float(m["amount"])
    if not math.isfinite(amount):
        raise ValueError(f"margin {text!r} is not a finite number")
    return Margin(metric=m["metric"], direction=1 if m["sign"] == "+" else -1, amount=amount, unit=m["unit"] or "")


@dataclass(frozen=True, kw_only=True)
class Measure:
    """A metric's value, with its counts when it is a proportion (for an interval)."""

    value: float
    k: int | None = None
    n: int | None = None


def metric_of(batch: Mapping[str, Any], name: str) -> Measure | None:
    """A metric of a report's batch: ``defect_rate`` (sampled, with counts), a check
    (``gate.metric`` or ``gate.metric[scope]``), or ``gate.metric`` from the gate's
    ``metrics['overall']`` (golden's precision/recall with their counts)."""
    if name == "defect_rate":
        k, n, _ = _sampled(batch)
        return Measure(value=k / n, k=k, n=n) if k is not None and n else None
    if name.startswith("defect_rate[annotator:") and name.endswith("]"):
        who = name[len("defect_rate[annotator:") : -1]
        _, _, table = _sampled(batch)
        if who in table and table[who][1]:
            k, n = table[who]
            return Measure(value=k / n, k=k, n=n)
        return None
    flat = _flat_metrics(batch)
    if name in flat and flat[name] is not None:
        value = flat[name]
        assert value is not None
        counts = _counts_for(batch, name)
        return Measure(value=value, k=counts[0], n=counts[1]) if counts else Measure(value=value)
    gate, _, metric = name.partition(".")
    for g in batch.get("gates", []):
        if g.get("gate") == gate:
            overall = (g.get("metrics") or {}).get("overall")
            if isinstance(overall, Mapping) and isinstance(overall.get(metric), (int, float)):
                counts = _counts_for(batch, name)
                v = float(overall[metric])
                return Measure(value=v, k=counts[0], n=counts[1]) if counts else Measure(value=v)
    return None


def _counts_for(batch: Mapping[str, Any], name: str) -> tuple[int, int] | None:
    """Counts behind golden precision/recall (tp over tp+extra / golden objects)."""
    if name not in ("golden.precision", "golden.recall"):
        return None
    for g in batch.get("gates", []):
        if g.get("gate") == "golden":
            o = (g.get("metrics") or {}).get("overall") or {}
            tp = o.get("tp")
            if not isinstance(tp, int):
                return None
            if name == "golden.recall" and isinstance(o.get("golden_objects"), int):
                return (tp, int(o["golden_objects"])) if o["golden_objects"] else None
            if name == "golden.precision" and isinstance(o.get("extra"), int):
                den = tp + int(o["extra"]) + int(o.get("mislabelled", 0) or 0)
                return (tp, den) if den else None
    return None


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One metric of one batch against its baseline."""

    path: str
    margin: Margin
    baseline: float | None
    now: float | None
    difference: float | None
    interval: tuple[float, float] | None
    allowed: float | None
    failed: bool
    reason: str = ""

    def describe(self) -> str:
        m = self.margin
        if self.baseline is None or self.now is None:
            return f"{m.metric}: {self.reason}"
        ci = f" (95% CI {self.interval[0]:+.4g} .. {self.interval[1]:+.4g})" if self.interval else ""
        verdict = "REGRESSED" if self.failed else "ok"
        return (
            f"{m.metric}: baseline {self.baseline:.4g}, now {self.now:.4g}, "
            f"difference {self.difference:+.4g}{ci}; worst allowed {self.allowed:.4g}: {verdict}"
        )


def compare(
    report_batch: Mapping[str, Any], baseline: Mapping[str, Any], margins: Sequence[Margin]
) -> list[Comparison]:
    """Compare one batch of a report with the same batch (by path) of a baseline report.

    A margin fails when the value now is worse than the baseline by more than the
    margin. A metric missing from either side does not fail (it is reported), so a
    baseline from an older rules file cannot fail a run by itself.
    """
    path = str(report_batch.get("path"))
    base = next((b for b in baseline.get("batches", []) if str(b.get("path")) == path), None)
    out: list[Comparison] = []
    for m in margins:
        if base is None:
            out.append(
                Comparison(
                    path=path,
                    margin=m,
                    baseline=None,
                    now=None,
                    difference=None,
                    interval=None,
                    allowed=None,
                    failed=False,
                    reason="batch not in the baseline",
                )
            )
            continue
        b, n = metric_of(base, m.metric), metric_of(report_batch, m.metric)
        if b is None or n is None:
            side = "baseline" if b is None else "this run"
            out.append(
                Comparison(
                    path=path,
                    margin=m,
                    baseline=None if b is None else b.value,
                    now=None if n is None else n.value,
                    difference=None,
                    interval=None,
                    allowed=None,
                    failed=False,
                    reason=f"{m.metric} not measured in {side}",
                )
            )
            continue
        allowed = m.allowed(b.value)
        worse = n.value < allowed if m.direction < 0 else n.value > allowed
        interval = None
        if b.k is not None and b.n and n.k is not None and n.n:
            interval = newcombe_interval(n.k, n.n, b.k, b.n)
        out.append(
            Comparison(
                path=path,
                margin=m,
                baseline=b.value,
                now=n.value,
                difference=n.value - b.value,
                interval=interval,
                allowed=allowed,
                failed=worse,
            )
        )
    return out
