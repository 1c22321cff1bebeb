"""Plain-text blocks for the terminal: a failing gate, a batch's cost, the session.

Why plain lists of strings: the pytest plugin prints them through pytest's
terminal writer (which adds colours and knows the real width), pre-commit prints
them as they are, and tests can check them line by line. Every line fits in
``width`` columns (the terminal's; 80 when unknown): table cells are shortened
with an ellipsis (paths from the left, because the end of a path tells files
apart), prose (the cost block, skip reasons, whole messages at ``-v``) wraps.

What goes where (issue 10): a failing item shows its own gate only (checks with
their 95% interval, the table that explains them, its findings); the cost of a
batch appears once, in the annogate summary at the end, itemised so the figures
can be added up by the reader.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
    "plural",
    "session_lines",
    "summary_lines",
    "table",
    "truncate",
    "wrap",
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


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    align: str,
    width: int = 80,
    indent: int = 2,
    shrink: int | None = None,
    left_truncate: Sequence[int] = (),
    dashes: bool = True,
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

    lines = [fmt(headers)]
    if dashes:
        lines.append((" " * indent + (" " * sep).join("-" * w for w in widths)).rstrip())
    lines.extend(fmt(r) for r in body)
    return lines


def plural(n: float, noun: str, nouns: str | None = None) -> str:
    """``1 finding``, ``2 findings``, ``1,000 annotations`` (``nouns`` for irregular plurals)."""
    word = noun if n == 1 else (nouns or noun + "s")
    return f"{format_number(n)} {word}"


def wrap(text: str, width: int, *, indent: str = "", hang: str = "    ") -> list[str]:
    """``text`` (control characters escaped) wrapped to ``width``: nothing is cut.

    Long words (a path, a class name) are broken rather than overflow, so every line
    fits; joining the lines gives back the text, whatever the width.
    """
    body = clean(text.replace("\r", " ").replace("\n", " "))
    return textwrap.wrap(
        body,
        width=max(width, len(indent) + 10, len(hang) + 10),
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


# --------------------------------------------------------------------------- failing gate

#: Metrics whose values are shares (printed as percentages); ``drift.*`` is a share of
#: the box's size, ``*.rate`` a share of the population.
_SHARE_METRICS = ("precision", "recall", "accuracy", "pair_rate", "match_rate", "class_agreement", "defect_rate")


def _is_share(metric: str) -> bool:
    base = metric.removesuffix(".max").removesuffix(".min")
    return base.endswith(".rate") or base.startswith("drift.") or base in _SHARE_METRICS


def _value(v: float | None, share: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1%}" if share else format_number(v)


def _miss(c: ThresholdCheck) -> str:
    """By how much a check misses its limit, in the check's own unit (``ok`` when it does not)."""
    if c.passed:
        return "ok"
    d = c.value - c.limit
    if _is_share(c.metric):
        return f"{d * 100:+.2f} pp"
    return f"{d:+,.0f}" if float(d).is_integer() else f"{d:+.4g}"


def _node(metrics: Mapping[str, Any], scope: str) -> Mapping[str, Any] | None:
    """The metrics of one scope (``overall``, ``class:car``, ``annotator:bob``, ``pair:a->b``)."""
    kind, _, name = scope.partition(":")
    where: dict[str, tuple[str, ...]] = {
        "overall": ("overall",),
        "class": ("per_class",),
        "annotator": ("per_annotator",),
        "cohort": ("per_cohort",),
        "pair": ("pairs",),
    }
    if kind == "overall":
        node = metrics.get("overall")
        return node if isinstance(node, Mapping) else metrics
    for key in where.get(kind, ()):
        group = metrics.get(key)
        if isinstance(group, Mapping) and isinstance(group.get(name), Mapping):
            node = group[name]
            assert isinstance(node, Mapping)
            return node
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def check_interval(result: GateResult, check: ThresholdCheck) -> tuple[float | None, float | None, float | None]:
    """(estimate, 95% low, 95% high) behind ``check`` when the gate measured it on a sample.

    Gates that estimate from a sample (golden, confusion) judge a bound of the 95%
    interval, so the check's value is that bound; the reader needs the estimate and
    both bounds. Read from ``result.metrics`` in the shapes the built-in gates use
    (``drift.left`` -> ``{"mean", "low", "high"}``, ``precision`` -> ``intervals``,
    ``pair_rate`` -> ``{"rate", "ci95_low", "ci95_high"}``); (None, None, None) when
    there is no interval, which is the case for exact counts.
    """
    first, *rest = check.scope.split("|")
    node = _node(result.metrics, first)
    for part in rest:  # "annotator:alice|pair:a->b": alice's figures for that pair
        name = part.partition(":")[2]
        sub = node.get(name) if node is not None else None
        if not isinstance(sub, Mapping) and node is not None and isinstance(node.get("pairs"), Mapping):
            sub = node["pairs"].get(name)
        node = sub if isinstance(sub, Mapping) else None
    if node is None:
        return None, None, None
    base = check.metric.removesuffix(".max").removesuffix(".min")
    head, _, edge = base.partition(".")
    sub = node.get(head)
    if edge and isinstance(sub, Mapping) and isinstance(sub.get(edge), Mapping):
        d = sub[edge]
        return _num(d.get("mean")), _num(d.get("low")), _num(d.get("high"))
    intervals = node.get("intervals")
    if isinstance(intervals, Mapping) and isinstance(intervals.get(base), Mapping):
        d = intervals[base]
        return _num(node.get(base)), _num(d.get("ci95_low")), _num(d.get("ci95_high"))
    if "ci95_low" in node or "wilson_low" in node:
        est = next(
            (_num(node.get(k)) for k in ("rate", base, "defect_rate", "value") if _num(node.get(k)) is not None), None
        )
        lo = _num(node.get("ci95_low", node.get("wilson_low")))
        hi = _num(node.get("ci95_high", node.get("wilson_high")))
        return est, lo, hi
    return None, None, None


def _population(result: GateResult) -> str:
    """What the gate counted, named: ``186 annotations, 40 images, 5 categories``, not ``231 annotations``."""
    m, pop = result.metrics, result.population
    nouns = (("annotation", "annotations"), ("image", "images"), ("category", "categories"))
    counts = [m.get(many) for _one, many in nouns]
    if all(isinstance(n, int) for n in counts) and sum(int(n or 0) for n in counts) == pop:
        return ", ".join(plural(int(n or 0), one, many) for n, (one, many) in zip(counts, nouns, strict=True) if n)
    if "units" in m and m.get("units") == pop:
        return plural(pop, "object") + " on multi-annotator images"
    if isinstance(m.get("overall"), Mapping) and "golden_objects" in m["overall"]:
        return plural(pop, "object") + " compared with the golden set"
    if "pairs" in m and "golden_file" in m:
        return plural(pop, "golden object")
    if "baseline" in m:
        return plural(pop, "metric")
    return plural(pop, "annotation")


def _rel(path: str, base: str | None, verbose: bool) -> str:
    if verbose or not base:
        return path
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(".." + os.sep + "..") else rel


def _location(f: Finding, base: str | None, verbose: bool) -> str:
    """``file:line``; ``file#/json/pointer`` when the line says nothing (minified JSON)."""
    file = _rel(f.file, base, verbose)
    if f.pointer and (f.line is None or f.line <= 1):
        return f"{file}#{f.pointer}"
    return f"{file}:{f.line}" if f.line else file


def _finding_lines(findings: Sequence[Finding], *, width: int, verbose: bool, base: str | None) -> list[str]:
    """One aligned row per finding (location, id, image, class, annotator, message).

    At default verbosity a long message is cut at the terminal's width (one line per
    finding keeps a failure on one screen); at ``-v`` paths and messages are whole and
    wrap under the row.
    """
    rows = [
        [
            clean(_location(f, base, verbose)),
            f"#{f.annotation_id}" if f.annotation_id is not None else "-",
            clean(f.image or "-"),
            clean(f.category or "-"),
            clean(f.annotator or "-"),
        ]
        for f in findings
    ]
    if not rows:
        return []
    # at default verbosity the message keeps at least a third of the line
    caps = (max(20, width // 3), 12, max(10, width // 6), max(8, width // 8), max(8, width // 8))
    caps = caps if not verbose else (10_000,) * 5
    widths = [min(caps[i], max(len(r[i]) for r in rows)) for i in range(5)]
    out: list[str] = []
    for f, r in zip(findings, rows, strict=True):
        cells = [truncate(c, widths[i], left=i == 0).ljust(widths[i]) for i, c in enumerate(r)]
        head = "  " + "  ".join(cells) + "  "
        warn = "(warning) " if f.severity == "warning" else ""
        msg = warn + clean(f.message.replace("\n", " "))
        if verbose:
            out.extend(wrap(head + msg, width, hang="      "))
        else:
            room = width - len(head)
            if room < 20:  # a narrow terminal: the message goes under the row
                out.append(truncate(head.rstrip(), width))
                out.append(truncate("      " + msg, width))
            else:
                out.append(head + truncate(msg, room))
    return out


_Fmt = Callable[[Any], str]


def _share(v: Any) -> str:
    return _value(_num(v), True)


def _signed_share(v: Any) -> str:
    x = _num(v)
    return "-" if x is None else f"{x:+.1%}"


def _plain(v: Any) -> str:
    x = _num(v)
    if x is None:
        return "-" if v is None or isinstance(v, float) else str(v)
    return format_number(x)


def _text(v: Any) -> str:
    return "-" if v is None else str(v)


def _select(
    rows: Sequence[Sequence[Any]],
    columns: Sequence[tuple[str, str, _Fmt]],
    *,
    width: int,
    limit: int | None = None,
    order: Callable[[Mapping[str, Any]], float] | None = None,
    noun: str = "row",
) -> list[str]:
    """A gate table (header row first) shown with chosen columns, titles and formats.

    A column the gate did not emit is left out; ``(low, high)`` pairs given as
    ``"a|b"`` print as one ``a .. b`` interval cell. ``limit`` keeps the first rows
    (after ``order``) and says how many more there are.
    """
    if not rows or len(rows) < 2:
        return []
    header = [str(h) for h in rows[0]]
    records = [dict(zip(header, r, strict=False)) for r in rows[1:]]
    if order is not None:
        records.sort(key=order)
    cols = [(k, t, f) for k, t, f in columns if all(part in header for part in k.split("|"))]
    if not cols:
        return []
    shown = records if limit is None else records[:limit]
    body = []
    for rec in shown:
        cells = []
        for k, _t, f in cols:
            if "|" in k:
                lo, hi = (rec.get(p) for p in k.split("|"))
                cells.append("-" if _num(lo) is None else f"{f(lo)} .. {f(hi)}")
            else:
                cells.append(f(rec.get(k)))
        body.append(cells)
    align = "".join("l" if f is _text else "r" for _k, _t, f in cols)
    lines = table([t for _k, t, _f in cols], body, align=align, width=width, dashes=False)
    if len(records) > len(shown):
        lines.append(f"  ... {plural(len(records) - len(shown), 'more ' + noun, 'more ' + noun + 's')} (-v shows all)")
    return lines


def _col(rows: Sequence[Sequence[Any]], name: str) -> list[int]:
    """The index of column ``name`` in a gate table, as a 0- or 1-element list."""
    return [i for i, h in enumerate(rows[0] if rows else []) if h == name][:1]


def _worst_cells(matrix: Sequence[Sequence[Any]], top: int) -> list[tuple[str, str, int, int]]:
    """Off-diagonal cells of a confusion matrix (golden rows, batch columns), largest first:
    (golden class, batch class, count, golden row total)."""
    if len(matrix) < 2:
        return []
    cols = [str(c) for c in matrix[0][1:]]
    cells = []
    for row in matrix[1:]:
        name = str(row[0])
        counts = [int(_num(v) or 0) for v in row[1:]]
        total = sum(counts)
        for col, n in zip(cols, counts, strict=False):
            if n and col != name:
                cells.append((name, col, n, total))
    cells.sort(key=lambda c: (-c[2], c[0], c[1]))
    return cells[:top]


def _explain(result: GateResult, *, width: int, verbosity: int) -> list[str]:
    """The tables that explain a gate's verdict, from ``result.tables``.

    Default verbosity shows the one a lead acts on (who drifts, which classes are
    confused by whom, which annotator pairs disagree); ``-v`` adds the rest.
    """
    t = result.tables
    v = verbosity >= 1
    limit = None if v else 5
    blocks: list[list[str]] = []
    failed_metrics = {c.metric.split(".")[0] for c in result.checks if not c.passed}
    failed_scopes = {c.scope.partition(":")[0] for c in result.checks if not c.passed}

    if "golden_per_annotator" in t:

        def worst_drift(r: Mapping[str, Any]) -> float:
            return -max(abs(_num(r.get(f"drift_{e}")) or 0.0) for e in ("left", "top", "right", "bottom"))

        blocks.append(
            _select(
                t["golden_per_annotator"],
                [
                    ("annotator", "annotator", _text),
                    ("batch", "labels", _plain),
                    ("precision", "precision", _share),
                    ("mean_iou", "mean IoU", _plain),
                    ("drift_left", "drift left", _signed_share),
                    ("drift_top", "top", _signed_share),
                    ("drift_right", "right", _signed_share),
                    ("drift_bottom", "bottom", _signed_share),
                ],
                width=width,
                limit=limit,
                order=worst_drift,
                noun="annotator",
            )
        )
    if "golden_per_class" in t and (
        v or failed_metrics & {"precision", "recall", "accuracy"} or "class" in failed_scopes
    ):
        blocks.append(
            _select(
                t["golden_per_class"],
                [
                    ("class", "class", _text),
                    ("golden", "golden", _plain),
                    ("batch", "batch", _plain),
                    ("tp", "matched", _plain),
                    ("mislabelled", "mislabelled", _plain),
                    ("missing", "missing", _plain),
                    ("extra", "extra", _plain),
                    ("precision", "precision", _share),
                    ("recall", "recall", _share),
                ],
                width=width,
            )
        )
    if "golden_drift" in t and v:
        blocks.append(
            _select(
                t["golden_drift"],
                [
                    ("scope", "drift of", _text),
                    ("edge", "edge", _text),
                    ("mean", "mean", _signed_share),
                    ("ci95_low|ci95_high", "95% CI", _signed_share),
                    ("n", "n", _plain),
                ],
                width=width,
            )
        )
    if "confusion_matrix" in t:
        cells = _worst_cells(t["confusion_matrix"], 10_000 if v else 4)
        if cells:
            text = "worst cells (golden -> batch): " + ", ".join(
                f"{g}->{b} {n} of {total}" if g != "extra" else f"{g}->{b} {n}" for g, b, n, total in cells
            )
            blocks.append(wrap(text, width, indent="  "))
        if v:
            m = t["confusion_matrix"]
            blocks.append(
                table(
                    [str(c) for c in m[0]],
                    [[str(c) for c in r] for r in m[1:]],
                    align="l" + "r" * (len(m[0]) - 1),
                    width=width,
                    dashes=False,
                )
            )
    if "confusion_top_pairs" in t and v:
        blocks.append(
            _select(
                t["confusion_top_pairs"],
                [
                    ("pair", "pair (golden->batch)", _text),
                    ("count", "count", _plain),
                    ("golden", "of golden", _plain),
                    ("rate", "rate", _share),
                    ("ci95_low|ci95_high", "95% CI", _share),
                    ("limit", "limit", _share),
                    ("decision", "decision", _text),
                ],
                width=width,
            )
        )
    if "confusion_per_annotator" in t and v:
        blocks.append(
            _select(
                t["confusion_per_annotator"],
                [
                    ("annotator", "annotator", _text),
                    ("pair", "pair (golden->batch)", _text),
                    ("count", "count", _plain),
                    ("golden", "of golden", _plain),
                    ("rate", "rate", _share),
                    ("ci95_low|ci95_high", "95% CI", _share),
                    ("decision", "decision", _text),
                ],
                width=width,
                limit=limit,
                noun="annotator pair",
            )
        )
    if "pairs" in t:
        blocks.append(
            _select(
                t["pairs"],
                [
                    ("annotator_a", "annotator", _text),
                    ("annotator_b", "with", _text),
                    ("images", "images", _plain),
                    ("matched", "matched", _plain),
                    ("match_rate", "match rate", _share),
                    ("mean_iou", "mean IoU", _plain),
                    ("class_agreement", "same class", _share),
                    ("alpha", "alpha", _plain),
                ],
                width=width,
                limit=limit,
                noun="pair",
            )
        )
    has_defects = any(
        (_num(r[i]) or 0) > 0 for r in t.get("annotators", [[]])[1:] for i in _col(t["annotators"], "defects")
    )
    if "annotators" in t and (v or has_defects):
        blocks.append(
            _select(
                t["annotators"],
                [
                    ("annotator", "annotator", _text),
                    ("alpha", "alpha", _plain),
                    ("objects", "objects", _plain),
                    ("defects", "defects", _plain),
                    ("defect_rate", "defect rate", _share),
                    ("wilson_low|wilson_high", "95% CI", _share),
                    ("no_consensus", "no consensus", _plain),
                ],
                width=width,
                limit=limit,
                noun="annotator",
            )
        )
    if "baseline" in t:
        blocks.append(
            _select(
                t["baseline"],
                [
                    ("metric", "metric", _text),
                    ("baseline", "baseline", _plain),
                    ("now", "now", _plain),
                    ("difference", "difference", _plain),
                    ("ci95_low|ci95_high", "95% CI", _plain),
                    ("allowed", "allowed", _plain),
                ],
                width=width,
            )
        )
    known = {
        "golden_per_annotator",
        "golden_per_class",
        "golden_drift",
        "confusion_matrix",
        "confusion_top_pairs",
        "confusion_per_annotator",
        "pairs",
        "annotators",
        "baseline",
    }
    if v:  # a plugin gate's own tables, as they are
        for name, rows in t.items():
            if name in known or len(rows) < 2:
                continue
            blocks.append([f"  {clean(name)}:"])
            blocks.append(
                table(
                    [str(c) for c in rows[0]],
                    [[_plain(c) if not isinstance(c, str) else c for c in r] for r in rows[1:]],
                    align="l" * len(rows[0]),
                    width=width,
                )
            )
    out: list[str] = []
    for b in blocks:
        if b:
            out.extend(b)
    return out


def gate_failure_lines(
    result: GateResult,
    *,
    max_findings: int | None = None,
    verbosity: int = 0,
    width: int = 80,
    base: str | None = None,
) -> list[str]:
    """What a failing gate prints: its checks, the table that explains them, its findings.

    The first line is the verdict (pytest repeats it in the short summary); then
    the failing checks (every check at ``-v``) with the estimate and its 95%
    interval where the gate measured on a sample; then the gate's explaining
    tables; then the first ``max_findings`` findings (5 by default, 50 at ``-v``,
    all kept at ``-vv``) with file:line, id, image, class, annotator and message.
    Paths are shown relative to ``base`` (the batch's folder) unless ``-v``.
    """
    v = verbosity >= 1
    lines: list[str] = []
    counts = result.counts_by_rule()
    n_findings = sum(counts.values())
    failed = result.failed_checks
    head = f"{result.gate} {result.verdict}"
    if result.checks:
        head += f": {len(failed)} of {plural(len(result.checks), 'check')} failed"
    head += f"; {plural(n_findings, 'finding')} in {_population(result)}"
    lines.extend(wrap(head, width))
    if result.reason:
        lines.extend(wrap(result.reason, width))

    # A count/rate limit on an error type is shown with that type's findings (at -v in
    # the table too): the table keeps the checks the findings do not explain.
    per_rule: dict[str, list[ThresholdCheck]] = {}
    for c in result.checks:
        rule, dot, kind = c.metric.rpartition(".")
        if dot and kind in ("count", "rate") and c.scope == "overall" and rule in counts:
            per_rule.setdefault(rule, []).append(c)
    folded = {id(c) for cs in per_rule.values() for c in cs}
    shown = [c for c in result.checks if v or (not c.passed and id(c) not in folded)]
    if shown:
        lines.extend(_check_table(result, shown, width=width))

    lines.extend(_explain(result, width=width, verbosity=verbosity))

    if n_findings:
        types = []
        for rule, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            limits = [c for c in per_rule.get(rule, []) if not c.passed]
            miss = "".join(f" (limit {c.op} {_value(c.limit, _is_share(c.metric))})" for c in limits)
            types.append(f"{n:,} {clean(rule)}{miss}")
        limit = max_findings if max_findings is not None else (50 if v else 3)
        total = len(result.findings)
        k = total if verbosity >= 2 else min(total, max(0, limit))
        lines.extend(wrap(f"{plural(n_findings, 'finding')}: {', '.join(types)}", width))
        lines.extend(_finding_lines(_interleave(result.findings)[:k], width=width, verbose=v, base=base))
        if total > k:
            more = "-vv shows all" if v else "-v shows more, -vv all"
            lines.append(f"  ... {total - k:,} more ({more})")
        dropped = result.findings_dropped
        if dropped > 0:
            lines.append(f"  ... {dropped:,} more not kept (max_findings_per_rule)")
    return lines


def _r9(x: float | None) -> float | None:
    return None if x is None else round(x, 9)


def _interleave(findings: Sequence[Finding]) -> list[Finding]:
    """Findings reordered so the first few show every type: the first of each rule, then
    the second of each, ... (each rule keeps its own order)."""
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    out: list[Finding] = []
    depth = max((len(fs) for fs in by_rule.values()), default=0)
    for i in range(depth):
        out.extend(fs[i] for fs in by_rule.values() if i < len(fs))
    return out


def _check_table(result: GateResult, checks: Sequence[ThresholdCheck], *, width: int) -> list[str]:
    """Checks with estimate, 95% interval (sample estimates), limit and miss.

    Checks of one scope that differ only in the edge and have the same figures
    (``drift.left`` and ``drift.right`` of a box shifted sideways) share a row
    (``drift.left/right``), so a shift reads as one line.
    """
    rows: list[list[str]] = []
    keys: dict[tuple[Any, ...], int] = {}
    names: list[list[str]] = []
    any_ci = False
    for c in checks:
        est, lo, hi = check_interval(result, c)
        share = _is_share(c.metric)
        head, dot, tail = c.metric.partition(".")
        key = (head, c.scope, round(c.value, 9), c.limit, c.op, c.severity, *(_r9(x) for x in (est, lo, hi)))
        if dot and key in keys:
            names[keys[key]].append(tail)
            continue
        any_ci = any_ci or lo is not None
        keys[key] = len(rows)
        names.append([c.metric])
        rows.append(
            [
                "",
                clean(c.scope),
                _value(est if est is not None else c.value, share),
                "-" if lo is None else f"{_value(lo, share)} .. {_value(hi, share)}",
                f"{c.op} {_value(c.limit, share)}",
                _miss(c) + (" (warning)" if c.severity == "warning" and not c.passed else ""),
            ]
        )
    for row, ns in zip(rows, names, strict=True):
        row[0] = "/".join(ns)
    if not any_ci:
        rows = [r[:3] + r[4:] for r in rows]
    header = ["check", "scope", "estimate" if any_ci else "value", *(["95% CI"] if any_ci else []), "limit", "miss"]
    return table(header, rows, align="llr" + ("r" if any_ci else "") + "rr", width=width, dashes=False)


def _base(path: str) -> str:
    """The folder paths are shown from: a batch file's folder, or a batch folder itself."""
    return os.path.dirname(path) if os.path.splitext(path)[1] else path


def failure_lines(
    outcome: BatchOutcome,
    result: GateResult,
    *,
    max_findings: int | None = None,
    verbose: int = 0,
    width: int = 80,
) -> list[str]:
    """A failing item's report: its own gate only.

    The batch's cost is not repeated under each failing gate: it appears once, in
    the annogate summary (:func:`session_lines`).
    """
    return gate_failure_lines(
        result, max_findings=max_findings, verbosity=verbose, width=width, base=_base(outcome.path)
    )


# --------------------------------------------------------------------------- cost


def rounded_parts(parts: Sequence[float], total: float | None = None) -> tuple[list[float], float]:
    """``parts`` rounded to cents so that they add up to the rounded ``total`` (their sum).

    Largest-remainder rounding: a reader who adds the printed figures gets the printed
    total (14.88 + 2.98 + 3.98 + 117.76 = 139.60, not 139.59). When ``total`` is not the
    parts' sum (beyond rounding), each part is rounded on its own.
    """
    if not all(math.isfinite(p) for p in parts) or (total is not None and not math.isfinite(total)):
        return list(parts), (sum(parts) if total is None else total)  # shown as they are, never a crash
    cents = [p * 100 for p in parts]
    target_exact = sum(cents) if total is None else total * 100
    target = round(target_exact)
    floors = [math.floor(c) for c in cents]
    short = target - sum(floors)
    if abs(sum(cents) - target_exact) > 0.5 * max(1, len(parts)) or not 0 <= short <= len(parts):
        return [round(p, 2) for p in parts], round(target / 100, 2)
    order = sorted(range(len(parts)), key=lambda i: (-(cents[i] - floors[i]), i))
    for i in order[:short]:
        floors[i] += 1
    return [f / 100 for f in floors], target / 100


def _breakdown_text(title: str, total: float, items: Sequence[tuple[str, float, float | None]], top: int) -> str:
    # ``total`` is the figure as the headline printed it, so both agree to the cent
    """``title total: a 1.30 (7.3 defects), b 0.65 (3.6), 2 more 0.36``, parts adding up to total."""
    head = list(items[:top])
    rest = items[top:]
    names = [k for k, _a, _d in head]
    amounts = [a for _k, a, _d in head]
    defects = [d for _k, _a, d in head]
    if rest:
        names.append(f"{len(rest)} more")
        amounts.append(sum(a for _k, a, _d in rest))
        ds = [d for _k, _a, d in rest]
        defects.append(None if any(d is None for d in ds) else sum(d for d in ds if d is not None))
    rounded, shown_total = rounded_parts(amounts, total)
    cells = []
    for i, (name, amt, d) in enumerate(zip(names, rounded, defects, strict=True)):
        label = (
            f" ({format_number(round(d, 1))} {'defects' if i == 0 else ''})".replace(" )", ")") if d is not None else ""
        )
        cells.append(f"{clean(name)} {format_money(amt)}{label}")
    return f"{title} {format_money(shown_total)}: " + ", ".join(cells)


def cost_lines(
    estimate: CostEstimate, *, width: int = 80, top: int = 5, path: str | None = None, verbosity: int = 0
) -> list[str]:
    """A batch's cost block: the total cost of accepting it with its interval, then
    the sum that makes it (direct + QA + rework + downstream = total, figures rounded so
    they add up) and where rework and downstream come from (error type, annotator or
    cohort, systematic pattern). Prose lines wrap; nothing is cut."""
    e = estimate
    where = f" {path}" if path else ""
    lines: list[str] = []
    (direct, qa, rework, downstream), total = rounded_parts([e.direct, e.qa, e.rework, e.downstream], e.total)
    interval = ""
    if e.golden_sample or e.low.total != e.high.total:
        interval = f" ({e.confidence:.0%} interval {format_money(e.low.total)} .. {format_money(e.high.total)})"
    lines += wrap(
        f"cost of accepting{where}: {e.currency} {format_money(total)}{interval} for {plural(e.n_labels, 'label')}",
        width,
    )
    over = "" if e.overhead_ratio is None else f"; overhead {e.overhead_ratio:.1%} of direct"
    lines += wrap(
        f"direct {format_money(direct)} + QA {format_money(qa)} + rework {format_money(rework)} + downstream "
        f"{format_money(downstream)} = total {format_money(total)}{over}",
        width,
        indent="  ",
    )
    sample = ""
    if e.golden_sample:
        sample = (
            f"; golden sample {e.golden_defects}/{e.golden_sample} defective, "
            f"rate {e.low.defect_rate:.2%} .. {e.high.defect_rate:.2%}"
        )
    lines += (
        []
        if verbosity < 1
        else wrap(
            f"defects: {format_number(round(e.expected.first_pass_defects, 1))} expected "
            f"({format_number(e.deterministic_defects)} known exactly{sample}), "
            f"{format_number(round(e.expected.corrections, 1))} corrections over {plural(e.max_cycles, 'cycle')}",
            width,
            indent="  ",
        )
    )
    for title, items in (("rework by error type", e.by_error_type), ("rework by annotator", e.by_annotator)):
        if items and any(b.amount for b in items):
            lines += wrap(
                _breakdown_text(title, rework, [(b.key, b.amount, b.defects) for b in items], top),
                width,
                indent="  ",
            )
    if e.patterns:
        pats = []
        for p in e.patterns:
            kind, scope = p.pattern.kind, p.pattern.scope
            name = f"{kind} {scope}" + ("" if p.gate == kind else f" ({p.gate})")
            pats.append((f"{name} on {plural(round(p.pattern.affected, 1), 'label')}", p.amount, None))
        lines += wrap(_breakdown_text("downstream by pattern", downstream, pats, top), width, indent="  ")
    if e.partial:
        lines += wrap(
            f"partial: {', '.join(e.partial)} did not run, so the estimate lacks their defects",
            width,
            indent="  ",
        )
    for note in e.notes:
        lines += wrap(f"note: {note}", width, indent="  ")
    return lines


# --------------------------------------------------------------------------- session


def _findings_by_gate(o: BatchOutcome) -> dict[str, int]:
    """Error-level findings per gate, those kept and those only counted (over the cap)."""
    out: dict[str, int] = {}
    for g in o.gates:
        warning_rules = {f.rule for f in g.findings if f.severity == "warning"}
        error_rules = {f.rule for f in g.findings if f.severity == "error"}
        n = sum(c for r, c in g.counts_by_rule().items() if r in error_rules or r not in warning_rules)
        if n:
            out[g.gate] = out.get(g.gate, 0) + n
    return out


def summary_lines(outcomes: Sequence[BatchOutcome], *, width: int = 80) -> list[str]:
    """One row per batch (sorted by path) then totals: verdict, findings by gate, skipped
    gates, and the total expected cost of accepting the batch (per currency when mixed)."""
    items = sorted(outcomes, key=lambda o: o.path)
    currencies = sorted({o.cost.currency for o in items if o.cost is not None})
    one = len(currencies) <= 1
    cur = currencies[0] if currencies else ""
    rows = []
    for o in items:
        defects = ", ".join(f"{g} {n:,}" for g, n in _findings_by_gate(o).items()) or "-"
        skipped = ", ".join(g.gate for g in o.gates if g.verdict == "skipped") or "-"
        if o.cost is None:
            cost = "-"
        else:
            cost = format_money(
                rounded_parts([o.cost.direct, o.cost.qa, o.cost.rework, o.cost.downstream], o.cost.total)[1]
            )
            cost += "" if one else f" {o.cost.currency}"
        rows.append([o.path, o.verdict.upper(), defects, skipped, cost])
    for c in currencies or [""]:
        members = items if one else [o for o in items if o.cost is not None and o.cost.currency == c]
        n_failed = sum(1 for o in members if o.verdict == "failed")
        costs = [o.cost for o in members if o.cost is not None]
        total_defects = sum(sum(_findings_by_gate(o).values()) for o in members)
        shown = [rounded_parts([x.direct, x.qa, x.rework, x.downstream], x.total)[1] for x in costs]
        rows.append(
            [
                f"total ({plural(len(items), 'batch', 'batches')})" if one else f"total {c}",
                f"{n_failed} FAILED" if n_failed else "passed",
                f"{total_defects:,}",
                "",
                (format_money(sum(shown)) + ("" if one else f" {c}")) if costs else "-",
            ]
        )
    header = ["batch", "verdict", "findings by gate", "skipped", f"cost {cur}".rstrip() if one else "cost"]
    lines = table(header, rows, align="lllll"[:4] + "r", width=width, shrink=0, left_truncate=(0,))
    # A rule above the totals, as pytest's summary does.
    n_tot = len(currencies) or 1
    lines.insert(len(lines) - n_tot, lines[1])
    return lines


def session_lines(outcomes: Sequence[BatchOutcome], *, width: int = 80, verbosity: int = 0) -> list[str]:
    """The annogate summary: the batch table, why gates were skipped, then each failing
    batch's cost block (every batch's at ``-v``), once per batch."""
    items = sorted(outcomes, key=lambda o: o.path)
    lines = summary_lines(items, width=width)
    for o in items:
        # one line per batch and reason (a session stopped by -x skips every gate alike)
        reasons: dict[str, list[str]] = {}
        for g in o.gates:
            if g.verdict == "skipped":
                reasons.setdefault(g.reason or "nothing to check", []).append(g.gate)
        for reason, gates in reasons.items():
            lines += wrap(f"{o.path}: {', '.join(gates)} skipped: {reason}", width, indent="  ")
    for o in items:
        if o.cost is not None and (o.verdict == "failed" or verbosity >= 1):
            lines.append("")
            lines += cost_lines(o.cost, width=width, path=o.path, verbosity=verbosity)
    return lines
