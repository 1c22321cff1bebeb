"""The class-confusion gate: which golden classes the batch labels as which.

Why: a mislabel rate hides *where* the errors go. "3% of cyclists labelled
pedestrian" is a systematic annotator habit that QA sampling rarely catches and
that teaches a model the wrong boundary; a threshold per class pair catches it.

The matrix is golden class x batch class over the golden gate's matching (shared
through ``ctx.cache``, so the batch is matched once): same-class matches on the
diagonal, class-agnostic (mislabelled) pairs off it, a ``missing`` column for
golden objects without a counterpart and an ``extra`` row for batch objects
without one. The rate of pair ``a->b`` is count(a, b) / all golden ``a`` objects
(row total, missing included).

Rules, ``[tool.annogate.confusion]`` (``additionalProperties: false``)::

    pairs = { "cyclist->pedestrian" = 0.02 }   # rate of golden cyclists labelled pedestrian <= 2%
    max_pair_rate = 0.05                        # the worst off-diagonal class pair
    min_support = 20                            # golden objects a class needs for max_pair_rate
    # file / iou_type / iou / max_dets / oks_sigmas / reference / quorum: default to [tool.annogate.golden]'s

With ``reference = "consensus"`` (see :mod:`annogate.checks.golden`) the rows are
the class the *other* annotators' consensus gave each object (leave-one-out), so
"cyclist->pedestrian" is the rate at which an annotator calls pedestrian what the
others call cyclist.

Findings: one per confused object, rule ``confusion`` (a single error type, so the
cost model and thresholds see one kind of defect) with the pair in the message
("golden 'cyclist' labelled 'pedestrian'"); severity ``error`` when the object's
pair breaks a limit, else ``warning``. These objects are also the golden gate's
``mislabelled`` findings: the cost model should count them once. Checks use
metric ``pair_rate`` (named pairs) and ``pair_rate.max`` (worst pair), scope
``pair:a->b``, which the cost model reads as systematic confusion patterns.

A pair's rate is measured on a sample (the golden objects of its class), so it is
judged on its 95% Wilson interval, as the golden gate judges drift: a limit is
broken only when the whole interval lies above it (the check's ``value`` is the
interval's low end, the rate the sample is sure of). A pair whose interval straddles
the limit is *undecided*: the gate passes it, and the tables, metrics and findings
say so with the interval and about how many more golden objects of the class would
decide it. The worst pair is the one with the highest low end.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from annogate.checks.golden import MATCH_SCHEMA, cohort_map, match_or_result
from annogate.defects import CostFacts, Pattern
from annogate.findings import Finding, GateResult, ThresholdCheck, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.matching import Status
from annogate.model import Batch
from annogate.stats import RateDecision, rate_decision

__all__ = ["GATE", "RULES_SCHEMA", "confusion_counts"]

MISSING = "missing"
EXTRA = "extra"
TOP_PAIRS = 10

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Class confusion on golden images: limits per class pair and on the worst pair.",
    "additionalProperties": False,
    "properties": {
        **MATCH_SCHEMA,
        "pairs": {
            "type": "object",
            "propertyNames": {"pattern": "^.+->.+$"},
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            "description": 'Max rate per "golden->batch" class pair.',
        },
        "max_pair_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "min_support": {"type": "integer", "minimum": 1, "default": 1},
    },
}


def confusion_counts(
    batch: Batch, golden: Batch, batch_status: np.ndarray, batch_match: np.ndarray, gold_status: np.ndarray
) -> Counter[tuple[str, str]]:
    """(golden class, batch class) -> count, with ``missing`` / ``extra`` as the odd column / row."""
    gn = [str(n) for n in golden.categories.name.tolist()]
    bn = [str(n) for n in batch.categories.name.tolist()]
    gc = golden.annotations.category
    bc = batch.annotations.category

    def g(i: int) -> str:
        return gn[gc[i]] if gc[i] >= 0 else "<unknown>"

    def b(i: int) -> str:
        return bn[bc[i]] if bc[i] >= 0 else "<unknown>"

    out: Counter[tuple[str, str]] = Counter()
    paired = np.flatnonzero((batch_status == Status.MATCHED) | (batch_status == Status.MISLABELLED))
    for k, j in Counter(zip(gc[batch_match[paired]].tolist(), bc[paired].tolist(), strict=True)).items():
        out[(gn[k[0]] if k[0] >= 0 else "<unknown>", bn[k[1]] if k[1] >= 0 else "<unknown>")] += j
    for i in np.flatnonzero(gold_status == Status.UNMATCHED).tolist():
        out[(g(i), MISSING)] += 1
    for i in np.flatnonzero(batch_status == Status.UNMATCHED).tolist():
        out[(EXTRA, b(i))] += 1
    return out


@dataclass(frozen=True, kw_only=True)
class _Groups:
    """Per annotator (and per cohort) confusion: metrics, table rows, checks and what prices them."""

    metrics: dict[str, dict[str, Any]]
    cohorts: dict[str, dict[str, Any]]
    table: list[list[Any]]
    checks: list[ThresholdCheck]
    #: scope -> (group labels, paired objects of the group, count of the pair)
    sizes: dict[str, tuple[int, int, int]]
    failing: set[tuple[str, str]]  # (annotator, pair) whose own or cohort's check fails


def _per_group(
    batch: Batch,
    golden: Batch,
    res: Any,
    limits: dict[str, float],
    max_rate: Any,
    support: int,
    cohort_of: dict[str, str],
) -> _Groups:
    """Each annotator's (and cohort's) confused pairs, checked against the pair's limit.

    Why: "cyclists labelled pedestrian" is usually one annotator's (or one vendor's)
    habit; the table names who, with each rate's Wilson interval and its decision
    against the pair's limit (the named pair's, else ``max_pair_rate`` when the
    group has ``min_support`` objects of the class), and a check with scope
    ``annotator:<name>|pair:a->b`` (``cohort:<name>|pair:a->b``) fails when the whole
    interval lies above the limit. The denominator is the group's objects paired
    with a reference object of the class (a missed golden object has no annotator).
    """
    head = ["annotator", "pair", "count", "golden", "rate", "ci95_low", "ci95_high", "limit", "decision"]
    out = _Groups(metrics={}, cohorts={}, table=[head], checks=[], sizes={}, failing=set())
    if not batch.annotators:
        return out
    paired = np.flatnonzero((res.batch_status == Status.MATCHED) | (res.batch_status == Status.MISLABELLED))
    gc = golden.annotations.category[res.batch_match[paired]].tolist()
    bc = batch.annotations.category[paired].tolist()
    who = batch.annotations.annotator[paired].tolist()
    gn = [str(n) for n in golden.categories.name.tolist()]
    bn = [str(n) for n in batch.categories.name.tolist()]
    names = [str(n) for n in batch.annotators]
    labels = np.bincount(batch.annotations.annotator[batch.annotations.annotator >= 0], minlength=len(names))
    groups: dict[tuple[str, str], list[int]] = {}
    for w, n in enumerate(names):
        groups[("annotator", n)] = [w]
        if n in cohort_of:
            groups.setdefault(("cohort", cohort_of[n]), []).append(w)
    member = {w: [g for g, ws in groups.items() if w in ws] for w in range(len(names))}
    cells: Counter[tuple[tuple[str, str], str, str]] = Counter()
    totals: Counter[tuple[tuple[str, str], str]] = Counter()
    objects: Counter[tuple[str, str]] = Counter()
    for w, g, b in zip(who, gc, bc, strict=True):
        if w < 0:
            continue
        a = gn[g] if g >= 0 else "<unknown>"
        for grp in member[w]:
            cells[(grp, a, bn[b] if b >= 0 else "<unknown>")] += 1
            totals[(grp, a)] += 1
            objects[grp] += 1
    for (grp, a, b), k in sorted(cells.items(), key=lambda x: (x[0][0][0] != "annotator", x[0][0][1], *x[0][1:])):
        if a == b:
            continue
        kind, name = grp
        pair = f"{a}->{b}"
        total = totals[(grp, a)]
        lim = limits.get(pair, float(max_rate) if max_rate is not None and total >= support else math.nan)
        d = rate_decision(k, total, lim, "<=")
        rec = {
            "count": k,
            "golden": total,
            "rate": d.rate,
            "ci95_low": d.low,
            "ci95_high": d.high,
            "limit": None if lim != lim else lim,
            "decision": None if lim != lim else d.state,
        }
        (out.metrics if kind == "annotator" else out.cohorts).setdefault(name, {})[pair] = rec
        label = name if kind == "annotator" else f"cohort:{name}"
        out.table.append(
            [label, pair, k, total, round(d.rate, 4), round(d.low, 4), round(d.high, 4), rec["limit"], rec["decision"]]
        )
        if lim == lim:
            scope = f"{kind}:{name}|pair:{pair}"
            check = ThresholdCheck(metric="pair_rate", scope=scope, value=d.bound, limit=lim, op="<=")
            out.checks.append(check)
            out.sizes[scope] = (int(sum(labels[w] for w in groups[grp])), objects[grp], k)
            if not check.passed:
                out.failing.update((names[w], pair) for w in groups[grp])
    return out


def _decision_word(d: RateDecision | None) -> str | None:
    return None if d is None else d.state


def _decision_note(d: RateDecision | None, golden_class: str, ref: str = "golden") -> str:
    """The pair's rate with its interval and what it means, for a finding's message."""
    return "" if d is None else f"; pair rate {d.text(f'{ref} {golden_class!r} objects')}"


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Confusion matrix on the golden images, checked per named pair and on the worst pair."""
    gm = match_or_result(batch, ctx, gate="confusion")
    if isinstance(gm, GateResult):
        return gm
    res, golden = gm.result, gm.golden
    sec = ctx.section
    counts = confusion_counts(batch, golden, res.batch_status, res.batch_match, res.gold_status)
    row_total: Counter[str] = Counter()
    for (a, _), n in counts.items():
        if a != EXTRA:
            row_total[a] += n

    def rate(a: str, b: str) -> float:
        return counts[(a, b)] / row_total[a] if row_total[a] else 0.0

    def decide(a: str, b: str, limit: float) -> RateDecision:
        return rate_decision(counts[(a, b)], row_total[a], limit, "<=")

    def sure(p: tuple[str, str]) -> float:
        """The rate the sample is sure of: the Wilson interval's low end."""
        lo = decide(*p, 0.0).low
        return 0.0 if lo != lo else lo

    off = sorted(
        ((a, b) for (a, b) in counts if a != b and a != EXTRA and b != MISSING),
        key=lambda p: (-rate(*p), -counts[p], p),
    )
    checks: list[ThresholdCheck] = []
    limits: dict[str, float] = {}
    decisions: dict[str, RateDecision] = {}
    for pair, lim in sorted(dict(sec.get("pairs", {})).items()):
        a, b = pair.split("->", 1)
        a, b = a.strip(), b.strip()
        limits[f"{a}->{b}"] = float(lim)
        d = decide(a, b, float(lim))
        decisions[f"{a}->{b}"] = d
        checks.append(
            ThresholdCheck(metric="pair_rate", scope=f"pair:{a}->{b}", value=d.bound, limit=float(lim), op="<=")
        )
    worst: tuple[str, str] | None = None
    support = int(sec.get("min_support", 1))
    # the worst pair is the one the sample is surest is bad (highest Wilson low end)
    eligible = sorted((p for p in off if row_total[p[0]] >= support), key=lambda p: (-sure(p), -rate(*p), p))
    if eligible:
        worst = eligible[0]
    if "max_pair_rate" in sec:
        lim = float(sec["max_pair_rate"])
        for a, b in eligible:
            decisions.setdefault(f"{a}->{b}", decide(a, b, lim))
        if worst is not None:
            checks.append(
                ThresholdCheck(
                    metric="pair_rate.max",
                    scope=f"pair:{worst[0]}->{worst[1]}",
                    value=decide(*worst, lim).bound,
                    limit=lim,
                    op="<=",
                )
            )
        else:
            checks.append(ThresholdCheck(metric="pair_rate.max", scope="overall", value=0.0, limit=lim, op="<="))
    failing = {c.scope[len("pair:") :] for c in checks if not c.passed and c.scope.startswith("pair:")}
    if "max_pair_rate" in sec:
        mx = float(sec["max_pair_rate"])
        failing |= {f"{a}->{b}" for a, b in eligible if decide(a, b, mx).state == "fails"}
    grp = _per_group(batch, golden, res, limits, sec.get("max_pair_rate"), support, cohort_map(ctx))
    checks += grp.checks

    mis = res.batch_rows(Status.MISLABELLED)
    ref = "golden" if gm.consensus is None else "consensus"
    findings: list[Finding] = []
    if mis.size:
        gnames = [golden.category_name(int(g)) or "<unknown>" for g in res.batch_match[mis].tolist()]
        bnames = [batch.category_name(int(i)) or "<unknown>" for i in mis.tolist()]
        anames = [str(n) if n is not None else None for n in _annotator_names(batch, mis)]
        bad = [
            f"{gnames[k]}->{bnames[k]}" in failing or (anames[k], f"{gnames[k]}->{bnames[k]}") in grp.failing
            for k in range(len(mis))
        ]
        for sev in ("error", "warning"):
            sel = [k for k in range(len(mis)) if bad[k] == (sev == "error")]
            if sel:
                findings += findings_for_rows(
                    batch,
                    mis[sel],
                    gate="confusion",
                    rule="confusion",
                    severity=sev,  # type: ignore[arg-type]
                    messages=[
                        (
                            f"golden {gnames[k]!r} labelled {bnames[k]!r} (golden annotation "
                            f"{int(golden.annotations.id[res.batch_match[mis[k]]])})"
                            if gm.consensus is None
                            else f"{gm.ref_name(int(res.batch_match[mis[k]]))} says {gnames[k]!r}, labelled "
                            f"{bnames[k]!r} ({gm.ref_object(int(res.batch_match[mis[k]]))})"
                        )
                        + _decision_note(decisions.get(f"{gnames[k]}->{bnames[k]}"), gnames[k], ref)
                        for k in sel
                    ],
                    values=res.batch_iou[mis[sel]],
                )

    gold_classes = sorted({a for a, _ in counts if a != EXTRA})
    batch_classes = sorted({b for _, b in counts if b != MISSING})
    matrix: list[list[Any]] = [["golden \\ batch", *batch_classes, MISSING]]
    for a in [*gold_classes, EXTRA]:
        matrix.append([a, *(counts[(a, b)] for b in batch_classes), counts[(a, MISSING)]])
    top: list[list[Any]] = [["pair", "count", "golden", "rate", "ci95_low", "ci95_high", "limit", "decision"]]
    for a, b in off[:TOP_PAIRS]:
        p = f"{a}->{b}"
        d = decisions.get(p) or decide(a, b, math.nan)
        top.append(
            [
                p,
                counts[(a, b)],
                row_total[a],
                round(rate(a, b), 4),
                round(d.low, 4),
                round(d.high, 4),
                limits.get(p, float(sec["max_pair_rate"]) if "max_pair_rate" in sec else None),
                _decision_word(decisions.get(p)),
            ]
        )
    metrics = {
        "pairs": {
            f"{a}->{b}": {
                "count": counts[(a, b)],
                "golden": row_total[a],
                "rate": rate(a, b),
                "ci95_low": decide(a, b, math.nan).low,
                "ci95_high": decide(a, b, math.nan).high,
                "decision": _decision_word(decisions.get(f"{a}->{b}")),
                "more_to_decide": None if f"{a}->{b}" not in decisions else decisions[f"{a}->{b}"].more,
            }
            for a, b in off
        },
        "worst_pair": None
        if worst is None
        else {"pair": f"{worst[0]}->{worst[1]}", "rate": rate(*worst), "ci95_low": sure(worst)},
        "confused": int(sum(counts[p] for p in off)),
        "matrix": {
            "rows": [*gold_classes, EXTRA],
            "columns": [*batch_classes, MISSING],
            "counts": [r[1:] for r in matrix[1:]],
        },
        "golden_file": None if gm.consensus is not None else str(gm.golden_path),
        "reference": "file" if gm.consensus is None else "consensus",
    }
    metrics["per_annotator"] = grp.metrics
    metrics["per_cohort"] = grp.cohorts
    population = int(sum(row_total.values()))
    return GateResult.from_checks(
        gate="confusion",
        population=population,
        checks=checks,
        findings=findings,
        metrics=metrics,
        tables={"confusion_matrix": matrix, "confusion_top_pairs": top, "confusion_per_annotator": grp.table},
        cost=_cost_facts(checks, counts, row_total, n_labels=len(batch.annotations), groups=grp.sizes),
    )


def _annotator_names(batch: Batch, rows: np.ndarray) -> list[str | None]:
    names = batch.annotators
    return [names[w] if 0 <= w < len(names) else None for w in batch.annotations.annotator[rows].tolist()]


def _cost_facts(
    checks: list[ThresholdCheck],
    counts: Counter[tuple[str, str]],
    row_total: Counter[str],
    *,
    n_labels: int,
    groups: dict[str, tuple[int, int, int]] | None = None,
) -> CostFacts:
    """Each failed pair is a systematic pattern (review keeps confusing the two classes).

    It spoils the batch's objects that are truly ``a`` and were labelled ``b``: estimated
    from the golden sample as N x P(truly a) x P(labelled b | a), so a pattern where
    every cyclist became a pedestrian is priced on the cyclists the batch should have,
    not on the cyclists it still has. The mislabelled objects themselves are the golden
    gate's sampled defects: not counted again here.

    A pair failed by an annotator (scope ``annotator:<name>|pair:a->b``) is priced on
    that annotator's labels alone, N_x x count_x(a, b) / paired_x; a cohort's
    (``cohort:<name>|pair:a->b``) on the cohort's labels. The narrowest failing scope
    explains the pattern, so it is priced once: a cohort's pair is not priced when
    one of its annotators' is, and the overall pair not when any group's is. Two
    failed checks on one scope (a named pair that is also the worst) are one pattern.
    """
    gold_total = sum(row_total.values())
    sizes = groups or {}
    failed: dict[str, list[ThresholdCheck]] = {}
    for c in checks:
        if not c.passed and c.severity == "error" and "pair:" in c.scope:
            failed.setdefault(c.scope, []).append(c)
    named: dict[str, set[str]] = {"annotator": set(), "cohort": set()}
    for scope in failed:
        kind, _, rest = scope.partition(":")
        if kind in named:
            named[kind].add(rest.partition("|pair:")[2])
    pats: list[Pattern] = []
    for scope, cs in sorted(failed.items()):
        kind, _, rest = scope.partition(":")
        who: str | None = None
        if kind == "pair":
            pair = rest
            if pair in named["annotator"] or pair in named["cohort"]:
                continue
        else:
            name, _, pair = rest.partition("|pair:")
            if kind == "cohort" and pair in named["annotator"]:
                continue
            who = name if kind == "annotator" else None
        a, _, b = pair.partition("->")
        if kind == "pair":
            if not row_total[a] or not gold_total:
                continue
            affected = n_labels * (row_total[a] / gold_total) * (counts[(a, b)] / row_total[a])
        else:
            labels, paired, k = sizes.get(scope, (0, 0, 0))
            if not paired:
                continue
            affected = labels * k / paired
        pats.append(
            Pattern(
                kind="confusion",
                scope=scope,
                affected=affected,
                annotator=who,
                category=a,
                checks=tuple(c.to_dict() for c in cs),
            )
        )
    return CostFacts(patterns=tuple(pats))


GATE = Gate(
    name="confusion",
    run=run,
    rules_schema=RULES_SCHEMA,
    description="Golden class x batch class on matched objects, with limits per class pair.",
    order=40,
)
