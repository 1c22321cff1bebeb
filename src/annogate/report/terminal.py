"""Plain-text blocks for the terminal: a failing gate, a batch's cost, the session.

Why plain lists of strings: the pytest plugin prints them through pytest's
terminal writer (which adds colours and knows the real width), pre-commit prints
them as they are, and tests can check them line by line. Every line fits in
``width`` columns (80 by default): cells are shortened with an ellipsis, paths
from the left, because the end of a path is the part that tells files apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from annogate.cost import CostEstimate
from annogate.findings import Finding, GateResult, ThresholdCheck

if TYPE_CHECKING:
    from annogate.report import BatchOutcome

__all__ = [
    "clean",
    "cost_lines",
    "failure_lines",
    "format_money",
    "format_number",
    "gate_failure_lines",
    "summary_lines",
    "table",
    "truncate",
]

ELLIPSIS = "…"

# C0 and C1 controls, DEL, and the bidirectional overrides/isolates ("Trojan
# Source"): none of them may reach a terminal or a CI log raw.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(text: str, *, keep: str = "") -> str:
    """``text`` with every control character escaped (ESC as ``\\x1b``, CR as ``\\x0d``).

    Why: class names, annotator names, file names and messages come from label
    files a contributor wrote. Raw, an ANSI escape could repaint the terminal
    (hide a failure, fake a pass), a CR could overwrite the line, a bidi override
    could reorder what a reviewer reads. Escaped, they stay visible and inert.
    Characters in ``keep`` pass (GitHub's own escaping encodes CR and LF).
    """
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
    return _CONTROL.sub(_escape, text)


def truncate(text: str, width: int, *, left: bool = False) -> str:
    """``text`` (control characters escaped) cut to ``width`` characters with an
    ellipsis (at the start when ``left``)."""
    text = clean(text.replace("\n", " "))
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    return ELLIPSIS + text[-(width - 1) :] if left else text[: width - 1] + ELLIPSIS


def format_number(v: float | None) -> str:
    """Integers as integers, other figures with four significant digits; nan as ``-``."""
    if v is None or math.isnan(v):
        return "-"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def format_money(v: float) -> str:
    return f"{v:,.2f}"


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.1%}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    align: str,
    width: int = 80,
    indent: int = 2,
    shrink: int | None = None,
    left_truncate: Sequence[int] = (),
) -> list[str]:
    """A fixed-width table: header, dashes, rows, cut to fit ``width``.

    ``align`` has one letter per column, ``l`` or ``r``. When the natural width is
    too wide, the widest column is cut one character at a time (``shrink`` wins
    ties), so the result always fits; ``left_truncate`` columns lose their start.
    """
    body = [[clean(c) for c in r] for r in rows]
    headers = [clean(h) for h in headers]
    ncol = len(headers)
    widths = [max([len(headers[i])] + [len(r[i]) for r in body]) for i in range(ncol)]
    sep = 2
    over = sum(widths) - (width - indent - sep * (ncol - 1))
    while over > 0:
        # The widest column gives way first, so long names and paths share the cut.
        i = max(range(ncol), key=lambda k: (widths[k], k == shrink))
        if widths[i] <= 1:
            break
        widths[i] -= 1
        over -= 1

    def fmt(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            c = truncate(c, widths[i], left=i in left_truncate)
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return (" " * indent + (" " * sep).join(out)).rstrip()

    lines = [fmt(headers), (" " * indent + (" " * sep).join("-" * w for w in widths)).rstrip()]
    lines.extend(fmt(r) for r in body)
    return lines


# --------------------------------------------------------------------------- failing gate


def _limit_text(check: ThresholdCheck) -> str:
    if check.metric.endswith(".rate"):
        return f"{check.op} {check.limit:.2%}"
    return f"{check.op} {format_number(check.limit)}"


def _miss(c: ThresholdCheck) -> str:
    """By how much a check misses its limit, in the check's own unit."""
    d = c.value - c.limit
    if c.metric.endswith(".rate"):
        return f"{d * 100:+.2f} pp"
    return f"{d:+,.0f}" if float(d).is_integer() else f"{d:+.4g}"


def gate_failure_lines(
    result: GateResult,
    *,
    max_findings: int | None = None,
    verbosity: int = 0,
    width: int = 80,
) -> list[str]:
    """What a failing gate prints: findings by type, missed thresholds, first offenders.

    Shows the first ``max_findings`` offending annotations (``file:line  id
    message``; by default 10, 50 at ``-v``) and all of them at ``-vv``, so a batch
    with 100,000 defects does not flood the terminal while one with three shows all.
    """
    lines: list[str] = []
    counts = result.counts_by_rule()
    pop = result.population
    head = f"{result.gate}: {result.verdict}"
    if counts:
        head += f"; {sum(counts.values()):,} findings ({len(counts)} type{'s' if len(counts) > 1 else ''})"
    head += f" in {pop:,} annotations"
    if result.checks:
        head += f"; {len(result.failed_checks)}/{len(result.checks)} checks failed"
    lines.append(truncate(head, width))
    if result.reason:
        # whole, not cut to the width: it is the one line that says what went wrong
        # (a gate's exception, a golden file that cannot be read)
        lines.append(clean(result.reason.replace("\n", " ")))

    shown_checks: set[int] = set()
    if counts:
        by_metric: dict[str, list[int]] = {}
        for k, c in enumerate(result.checks):
            if c.scope == "overall":
                by_metric.setdefault(c.metric, []).append(k)
        rows = []
        for rule, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            ks = by_metric.get(f"{rule}.count", []) + by_metric.get(f"{rule}.rate", [])
            shown_checks.update(ks)
            checks = [result.checks[k] for k in ks]
            limits = ", ".join(_limit_text(c) for c in checks) or "-"
            missed = [_miss(c) for c in checks if not c.passed]
            status = "-" if not checks else (", ".join(missed) if missed else "ok")
            rows.append([rule, f"{n:,}", _pct(n / pop) if pop else "-", limits, status])
        lines.append("")
        lines.extend(table(["type", "count", "rate", "threshold", "miss"], rows, align="lrrll", width=width))

    check_rows = [
        [c.metric, c.scope, format_number(c.value), f"{c.op} {format_number(c.limit)}", _miss(c), c.severity]
        for k, c in enumerate(result.checks)
        if not c.passed and k not in shown_checks
    ]
    if check_rows:
        lines.append("")
        lines.extend(
            table(["check", "scope", "value", "limit", "miss", "level"], check_rows, align="llrrrl", width=width)
        )

    if result.findings:
        limit = max_findings if max_findings is not None else (50 if verbosity >= 1 else 10)
        shown = len(result.findings) if verbosity >= 2 else limit
        first = result.findings[: max(0, shown)]
        total = len(result.findings)
        lines.append("")
        lines.append(f"first {len(first):,} of {total:,} findings:" if len(first) < total else "findings:")
        lines.extend(_finding_line(f, width) for f in first)
        if total > len(first):
            more = "-vv shows all" if verbosity >= 1 else "-v shows more, -vv all"
            lines.append(f"  ... {total - len(first):,} more ({more})")
    return lines


def _finding_line(f: Finding, width: int) -> str:
    """``  file:line  id  message``; a long path gives way (from the left) to the message."""
    ident = str(f.annotation_id) if f.annotation_id is not None else "-"
    loc = clean(f.location())
    msg = clean(f.message.replace("\n", " "))
    room = width - 2 - len(ident) - 4 - len(msg)
    if len(loc) > room:
        loc = truncate(loc, max(room, min(len(loc), 24)), left=True)
    return truncate(f"  {loc}  {ident}  {msg}", width)


def failure_lines(
    outcome: BatchOutcome,
    result: GateResult,
    *,
    max_findings: int | None = None,
    verbose: int = 0,
    width: int = 80,
) -> list[str]:
    """A failing item's whole report: the gate's block, then its batch's cost table.

    The cost is the batch's, not the gate's: a reviewer deciding on one failing
    gate needs to know what accepting the batch costs.
    """
    lines = gate_failure_lines(result, max_findings=max_findings, verbosity=verbose, width=width)
    if outcome.cost is not None:
        lines.append("")
        lines.extend(cost_lines(outcome.cost, width=width))
    return lines


# --------------------------------------------------------------------------- cost


def cost_lines(estimate: CostEstimate, *, width: int = 80, top: int = 5) -> list[str]:
    """The batch's cost table (category, amount, share), its range and where it comes from."""
    e = estimate
    sh = e.shares
    rows = [
        ["direct", format_money(e.direct), _pct(sh["direct"])],
        ["QA review", format_money(e.qa), _pct(sh["qa"])],
        ["rework", format_money(e.rework), _pct(sh["rework"])],
        ["downstream", format_money(e.downstream), _pct(sh["downstream"])],
        ["total", format_money(e.total), _pct(1.0 if e.total else 0.0)],
    ]
    lines = [truncate(f"rework-cost estimate ({e.currency}), {e.n_labels:,} labels", width)]
    lines.extend(table(["category", "amount", "share"], rows, align="lrr", width=width))
    lines.append("")
    over = "-" if e.overhead_ratio is None else f"{e.overhead_ratio:.1%}"
    lines.append(truncate(f"overhead (QA + rework + downstream) / direct: {over}", width))
    if e.golden_sample:
        lines.append(
            truncate(
                f"rework {format_money(e.low.rework)} .. {format_money(e.high.rework)} at {e.confidence:.0%} "
                f"(defect rate {e.low.defect_rate:.2%} .. {e.high.defect_rate:.2%}, "
                f"{e.golden_defects}/{e.golden_sample} on the golden set)",
                width,
            )
        )
    lines.append(
        truncate(
            f"defects: {format_number(round(e.expected.first_pass_defects, 1))} expected "
            f"({format_number(e.deterministic_defects)} known exactly), "
            f"corrections {format_number(round(e.expected.corrections, 1))} over {e.max_cycles} cycles",
            width,
        )
    )
    for title, items in (("error type", e.by_error_type), ("annotator", e.by_annotator)):
        if items and any(b.amount for b in items):
            lines.append("")
            body = [[b.key, format_number(round(b.defects, 1)), format_money(b.amount)] for b in items[:top]]
            if len(items) > top:
                rest = items[top:]
                body.append(
                    [
                        f"({len(rest)} more)",
                        format_number(round(sum(b.defects for b in rest), 1)),
                        format_money(sum(b.amount for b in rest)),
                    ]
                )
            lines.extend(table([title, "defects", "rework"], body, align="lrr", width=width))
    if e.patterns:
        lines.append("")
        body = [[p.key, format_number(round(p.pattern.affected, 1)), format_money(p.amount)] for p in e.patterns]
        lines.extend(table(["systematic pattern", "labels", "downstream"], body, align="lrr", width=width))
    for note in e.notes:
        lines.append(truncate(f"note: {note}", width))
    return lines


# --------------------------------------------------------------------------- session


def summary_lines(outcomes: Sequence[BatchOutcome], *, width: int = 80) -> list[str]:
    """One row per batch (sorted by path) then totals; amounts per currency when mixed."""
    items = sorted(outcomes, key=lambda o: o.path)
    currencies = sorted({o.cost.currency for o in items if o.cost is not None})
    one = len(currencies) <= 1
    cur = currencies[0] if currencies else ""
    rows = []
    for o in items:
        defects = ", ".join(f"{g} {n:,}" for g, n in o.defects_by_gate().items()) or "-"
        if o.cost is None:
            rework, over = "-", "-"
        else:
            rework = format_money(o.cost.rework) + ("" if one else f" {o.cost.currency}")
            over = _pct(o.cost.overhead_ratio)
        rows.append([o.path, o.verdict.upper(), defects, rework, over])
    for c in currencies or [""]:
        members = items if one else [o for o in items if o.cost is not None and o.cost.currency == c]
        n_failed = sum(1 for o in members if o.verdict == "failed")
        costs = [o.cost for o in members if o.cost is not None]
        direct = sum(x.direct for x in costs)
        extra = sum(x.qa + x.rework + x.downstream for x in costs)
        total_defects = sum(sum(o.defects_by_gate().values()) for o in members)
        rows.append(
            [
                f"total ({len(items)} batch{'' if len(items) == 1 else 'es'})" if one else f"total {c}",
                f"{n_failed} FAILED" if n_failed else "passed",
                f"{total_defects:,}",
                (format_money(sum(x.rework for x in costs)) + ("" if one else f" {c}")) if costs else "-",
                _pct(extra / direct) if direct else "-",
            ]
        )
    header = ["batch", "verdict", "defects by gate", f"rework {cur}".rstrip() if one else "rework", "overhead"]
    lines = table(header, rows, align="lllrr", width=width, shrink=0, left_truncate=(0,))
    # A rule above the totals, as pytest's summary does.
    n_tot = len(currencies) or 1
    lines.insert(len(lines) - n_tot, lines[1])
    return lines
