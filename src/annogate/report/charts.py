"""Charts of the HTML report: matplotlib figures rendered to inline SVG text.

Why matplotlib's object API (``Figure``) and not ``pyplot``: pyplot keeps global
state and a backend; the report is rendered inside a pytest session that may have
its own matplotlib users, and a ``Figure`` saved to a buffer needs no backend at
all (the same as ``matplotlib.use("Agg")`` without changing the caller's choice).
Text is kept as SVG ``<text>`` (``svg.fonttype = none``): the file stays small and
the figures on a chart can be searched and copied. Every label that comes from the
report (class, annotator, error type) is hostile input: :func:`safe_label` strips
control characters, neutralises mathtext (``$``) and truncates it, and matplotlib's
SVG writer escapes it as XML text.

matplotlib is imported inside the functions so that ``import annogate`` stays light.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "confusion_heatmap_svg",
    "cost_waterfall_svg",
    "drift_svg",
    "hbar_svg",
    "safe_label",
]

#: Longest label drawn on a chart (the full text is in the tables next to it).
MAX_LABEL = 80
#: Most classes a confusion heatmap shows (the ones with the most confusion); the table has them all.
MAX_HEATMAP_CLASSES = 25
#: Most bars / rows of any chart.
MAX_BARS = 30

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")

# Palette shared with the CSS (report.css): muted, prints well, colour-blind safe pairs.
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
RED = "#c0392b"
GREEN = "#2e7d5b"
BLUE = "#2f6690"
AMBER = "#d9822b"
COST_COLOURS = {"direct": "#52606d", "qa": BLUE, "rework": AMBER, "downstream": RED, "total": INK}


def safe_label(value: Any, limit: int = MAX_LABEL) -> str:
    """A string fit for a matplotlib label: no control or bidi characters, no mathtext, at most ``limit`` chars."""
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # "$" starts mathtext (a parser that can raise on hostile input); "\$" is a literal dollar.
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    # No layout engine: constrained/tight layout measure every text's bounding box and
    # cost more than drawing the chart; margins are set from the label lengths instead.
    fig = Figure(figsize=(width, height), dpi=96)
    fig.patch.set_alpha(0.0)
    return fig


#: Approximate width of one character of 9-point DejaVu Sans, in inches (for margins).
_CHAR_IN = 0.075


def _margins(fig: Figure, *, left: float, bottom: float, top: float = 0.15, right: float = 0.2) -> None:
    """Set the axes margins in inches (converted to the figure's fractions)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=min(left / w, 0.6),
        right=1.0 - min(right / w, 0.3),
        bottom=min(bottom / h, 0.6),
        top=1.0 - min(top / h, 0.4),
    )


def _longest(labels: Sequence[str]) -> int:
    return max((len(x) for x in labels), default=0)


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=9)
    ax.set_axisbelow(True)


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog, no DOCTYPE), deterministic for a given ``salt``.

    The salt makes the ids matplotlib generates (clip paths, markers) unique per
    chart, so several SVGs inlined in one HTML page never share an id.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": salt,
            "font.family": ["DejaVu Sans", "sans-serif"],
            "text.usetex": False,
        }
    ):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:] if start >= 0 else text
    # matplotlib names groups after the artist ("axes_1", "LineCollection_1"): the same in every chart.
    # Prefix every id and every reference to one, so charts inlined in one page never share an id.
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{salt}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{salt}-{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{salt}-{m.group(1)}"', svg)
    # Natural size (what the fonts were laid out for); CSS shrinks it on narrow screens (max-width: 100%).
    return svg.replace("<svg", '<svg class="chart"', 1)


def _money(value: float, currency: str) -> str:
    return f"{currency} {value:,.2f}"


def cost_waterfall_svg(
    steps: Sequence[tuple[str, float]],
    *,
    total: float,
    low: float | None,
    high: float | None,
    currency: str,
    salt: str,
) -> str:
    """Waterfall of the cost categories (direct, QA, rework, downstream) up to the total, with its interval.

    Each step is a floating bar from the running sum to the running sum plus its
    amount; the total bar carries the low/high scenario interval as an error bar, so
    the reader sees both where the money comes from and how sure the figure is.
    """
    fig = _figure(7.2, 3.4)
    ax = fig.add_subplot()
    _style(ax)
    names = [safe_label(n, 24) for n, _ in steps] + ["Total"]
    running = 0.0
    top = max(total, high or 0.0, 1e-9)
    for i, (name, amount) in enumerate(steps):
        colour = COST_COLOURS.get(name.lower().replace(" ", ""), BLUE)
        ax.bar(i, amount, bottom=running, color=colour, width=0.62)
        label_y = running + amount
        ax.text(i, label_y + top * 0.02, _money(amount, currency), ha="center", va="bottom", fontsize=8.5, color=INK)
        if i + 1 < len(steps):
            ax.plot([i + 0.31, i + 0.69], [label_y, label_y], color=MUTED, lw=0.8, ls=":")
        running += amount
    t = len(steps)
    ax.bar(t, total, color=COST_COLOURS["total"], width=0.62)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        ax.errorbar(
            [t],
            [total],
            yerr=[[max(total - low, 0.0)], [max(high - total, 0.0)]],
            fmt="none",
            ecolor=AMBER,
            capsize=6,
            lw=1.6,
        )
    ax.text(
        t,
        max(total, high or total) + top * 0.02,
        _money(total, currency),
        ha="center",
        va="bottom",
        fontsize=9,
        fontweight="bold",
        color=INK,
    )
    ax.set_xticks(range(len(names)), names)
    _margins(fig, left=0.75, bottom=0.35, top=0.1, right=0.1)
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel(safe_label(currency, 12), color=INK, fontsize=9)
    ax.yaxis.grid(True, color=GRID, lw=0.8)
    return _svg(fig, salt)


def hbar_svg(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    salt: str,
    low: Sequence[float | None] | None = None,
    high: Sequence[float | None] | None = None,
    value_format: str = "{:,.2f}",
    colour: str = BLUE,
) -> str:
    """Horizontal bars (largest first, at most :data:`MAX_BARS`), optionally with interval whiskers."""
    rows = list(zip(labels, values, low or [None] * len(values), high or [None] * len(values), strict=False))[:MAX_BARS]
    n = max(len(rows), 1)
    fig = _figure(5.4, 0.95 + 0.3 * n)
    ax = fig.add_subplot()
    _style(ax)
    ys = list(range(len(rows)))[::-1]
    vals = [float(v) for _, v, _, _ in rows]
    ax.barh(ys, vals, color=colour, height=0.6)
    whisk = [(y, lo, hi) for y, (_, _, lo, hi) in zip(ys, rows, strict=False) if lo is not None and hi is not None]
    if whisk:
        ax.errorbar(
            [(lo + hi) / 2 for _, lo, hi in whisk],
            [y for y, _, _ in whisk],
            xerr=[(hi - lo) / 2 for _, lo, hi in whisk],
            fmt="none",
            ecolor=INK,
            capsize=3,
            lw=1.0,
        )
    right = max([*vals, *(hi for _, _, hi in whisk), 1e-9])
    ends = {y: hi for y, _, hi in whisk}
    for y, v in zip(ys, vals, strict=False):
        x = max(v, ends.get(y, v))  # after the whisker, never on it
        ax.text(x + right * 0.015, y, value_format.format(v), va="center", ha="left", fontsize=8.5, color=INK)
    ticks = [safe_label(label, 40) for label, _, _, _ in rows]
    ax.set_yticks(ys, ticks)
    _margins(fig, left=0.25 + _CHAR_IN * _longest(ticks), bottom=0.3 + 0.17 * (xlabel.count("\n") + 1), top=0.1)
    ax.set_xlim(0, right * 1.25)
    ax.set_xlabel("\n".join(safe_label(part) for part in xlabel.split("\n")[:3]), color=INK, fontsize=9)
    ax.xaxis.grid(True, color=GRID, lw=0.8)
    return _svg(fig, salt)


def _top_classes(rows: Sequence[str], cols: Sequence[str], counts: Sequence[Sequence[float]], k: int) -> list[str]:
    """The ``k`` classes with the most off-diagonal counts (ties: most objects), in their original order."""
    names = [r for r in rows if r in cols]
    score: dict[str, tuple[float, float]] = {}
    for name in names:
        i, j = rows.index(name), cols.index(name)
        off = sum(v for jj, v in enumerate(counts[i]) if jj != j) + sum(
            counts[ii][j] for ii in range(len(rows)) if ii != i
        )
        score[name] = (off, sum(counts[i]))
    keep = set(sorted(names, key=lambda n: score[n], reverse=True)[:k])
    return [n for n in names if n in keep]


def confusion_heatmap_svg(
    rows: Sequence[str], cols: Sequence[str], counts: Sequence[Sequence[float]], *, salt: str
) -> str:
    """Confusion matrix (golden class down, batch class across) as a two-tone heatmap.

    Colour is the share of the golden row: the diagonal (agreement) in green, every
    other cell (a confusion, a missing or extra object) in red, so a 2 % confusion
    is visible next to a 98 % diagonal instead of being washed out by one colour
    scale. Counts are printed in each non-empty cell. Large taxonomies keep the
    :data:`MAX_HEATMAP_CLASSES` most-confused classes (plus the missing/extra lines).
    """
    import numpy as np

    rows = list(rows)
    cols = list(cols)
    if len(rows) > MAX_HEATMAP_CLASSES + 1 or len(cols) > MAX_HEATMAP_CLASSES + 1:
        keep = _top_classes(rows, cols, counts, MAX_HEATMAP_CLASSES)
        ri = [i for i, r in enumerate(rows) if r in keep or r not in cols]
        ci = [j for j, c in enumerate(cols) if c in keep or c not in rows]
        counts = [[counts[i][j] for j in ci] for i in ri]
        rows = [rows[i] for i in ri]
        cols = [cols[j] for j in ci]
    m = np.asarray(counts, dtype=np.float64).reshape(len(rows), len(cols))
    m = np.where(np.isfinite(m), m, 0.0)
    row_sum = m.sum(axis=1, keepdims=True)
    share = np.divide(m, row_sum, out=np.zeros_like(m), where=row_sum > 0)
    rgba = np.ones((len(rows), len(cols), 4))
    green = np.array([0x2E, 0x7D, 0x5B]) / 255.0
    red = np.array([0xC0, 0x39, 0x2B]) / 255.0
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            base = green if r == c else red
            # off-diagonal shares are small: a square root scale makes 2-10 % readable
            a = share[i, j] if r == c else math.sqrt(share[i, j])
            if m[i, j] > 0:
                rgba[i, j, :3] = 1.0 - max(a, 0.12) * (1.0 - base)
            else:  # an empty cell: light grey, so the grid stays visible
                rgba[i, j, :3] = 0.955
    size = max(len(rows), len(cols))
    side = min(max(3.2, 0.42 * size + 1.8), 9.5)
    longest = max(_longest([safe_label(c, 24) for c in cols]), _longest([safe_label(r, 24) for r in rows]))
    fig = _figure(side + _CHAR_IN * longest, side + 0.65 * _CHAR_IN * longest)
    ax = fig.add_subplot()
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    fontsize = 9 if size <= 12 else (7 if size <= 20 else 5.5)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if m[i, j] > 0:
                dark = (1.0 - rgba[i, j, :3].mean()) > 0.45
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:g}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark else INK,
                    fontweight="bold" if rows[i] != cols[j] else "normal",
                )
    ax.set_yticks(range(len(rows)), [safe_label(r, 24) for r in rows], fontsize=fontsize)
    ax.set_xticks(np.arange(-0.5, len(cols), 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows), 1.0), minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0, colors=INK)
    for side_name in ax.spines:
        ax.spines[side_name].set_visible(False)
    ticks = max(_longest([safe_label(c, 24) for c in cols]), _longest([safe_label(r, 24) for r in rows]))
    char = _CHAR_IN * fontsize / 9
    _margins(fig, left=0.45 + char * ticks, top=0.45 + 0.65 * char * ticks, bottom=0.15, right=0.15)
    ax.set_xlabel("batch class", color=INK, fontsize=9)
    ax.set_ylabel("golden class", color=INK, fontsize=9)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.set_xticks(range(len(cols)), [safe_label(c, 24) for c in cols], rotation=40, ha="left", fontsize=fontsize)
    return _svg(fig, salt)


def drift_svg(
    groups: Sequence[str],
    edges: Sequence[str],
    points: dict[tuple[str, str], tuple[float, float | None, float | None]],
    *,
    limit: float | None,
    salt: str,
) -> str:
    """Boundary drift per edge: one panel per edge, one row per scope (overall, class, annotator).

    A dot is the mean signed offset (in box sizes), the whisker its 95 % interval;
    the dashed lines are ± the rules' drift limit. A systematic shift shows as a
    column of dots off zero on the left and right panels, and the annotator rows say
    whose boxes moved.
    """
    groups = list(groups)[:MAX_BARS]
    fig = _figure(9.0, 1.2 + 0.3 * max(len(groups), 1))
    axes = fig.subplots(1, max(len(edges), 1), sharey=True, squeeze=False)[0]
    ys = list(range(len(groups)))[::-1]
    for ax, edge in zip(axes, edges, strict=False):
        _style(ax)
        ax.axvline(0.0, color=MUTED, lw=0.8)
        if limit is not None and math.isfinite(limit):
            for x in (-limit, limit):
                ax.axvline(x, color=RED, lw=0.8, ls="--")
        py, pm, plo, phi, pc = [], [], [], [], []
        for y, g in zip(ys, groups, strict=False):
            p = points.get((g, edge))
            if p is None:
                continue
            mean, lo, hi = p
            off = limit is not None and lo is not None and hi is not None and (lo > limit or hi < -limit)
            py.append(y)
            pm.append(mean)
            plo.append(mean if lo is None else lo)
            phi.append(mean if hi is None else hi)
            pc.append(RED if off else BLUE)
        if py:  # two artists per panel, whatever the number of rows
            ax.hlines(py, plo, phi, colors=pc, lw=1.4)
            ax.scatter(pm, py, c=pc, s=16, zorder=3)
        ax.set_title(safe_label(edge, 20), fontsize=9, color=INK)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.locator_params(axis="x", nbins=4)
    ticks = [safe_label(g, 32) for g in groups]
    axes[0].set_yticks(ys, ticks)
    axes[0].set_ylim(-0.6, len(groups) - 0.4)
    _margins(fig, left=0.2 + _CHAR_IN * _longest(ticks), bottom=0.55, top=0.3, right=0.15)
    fig.subplots_adjust(wspace=0.3)
    fig.text(
        0.5, 0.02, "mean signed edge offset (fraction of box size), 95 % interval", ha="center", fontsize=8.5, color=INK
    )
    return _svg(fig, salt)
