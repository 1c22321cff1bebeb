"""``annogate trend DIR --html OUT.html``: quality over time as one self-contained page.

One chart per series kind (batch source, cohort, annotator): the defect rate of each
series per run, with its Wilson interval as a whisker; the series whose latest rate is
significantly worse (:func:`annogate.history.trend`'s one-sided Fisher test) are drawn
in red and thicker and are named above the chart, so the regression is seen at once,
not searched for. Under each chart, a table of every series' latest point.

Why the same machinery as the audit report: the charts are matplotlib figures saved as
inline SVG (:mod:`annogate.report.charts`: no backend, deterministic ids, labels made
safe), and the page is a jinja2 template with autoescape on, since every annotator,
cohort and source name comes from label files and is hostile until escaped. No script,
no external resource (a CSP forbids both); written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annogate.report.charts import GRID, INK, MUTED, RED, _figure, _margins, _style, _svg, safe_label

if TYPE_CHECKING:
    from annogate.history import TrendSeries

__all__ = ["render_trend_html", "trend_svg", "write_trend_html"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
KINDS = ("source", "cohort", "annotator")
TITLES = {"source": "Batch source", "cohort": "Cohort", "annotator": "Annotator"}
#: Most series drawn on one chart (flagged ones first, then the largest samples); the table has them all.
MAX_SERIES = 12
#: Most rows of a table (flagged first).
MAX_ROWS = 500
_QUIET = ("#2f6690", "#52606d", "#2e7d5b", "#d9822b", "#7b8794", "#3a7ca5", "#81a4cd", "#9aa5b1")


def _drawn(series: Sequence[TrendSeries]) -> list[TrendSeries]:
    """What one chart shows: flagged series first, then the most-sampled, at most :data:`MAX_SERIES`."""
    ranked = sorted(series, key=lambda s: (not s.regressed, -sum(p.sample for p in s.points), s.key))
    return ranked[:MAX_SERIES]


def trend_svg(series: Sequence[TrendSeries], *, kind: str, salt: str) -> str:
    """Defect rate per run (x: the runs, in time order) for each series, with Wilson whiskers."""
    drawn = _drawn(series)
    whens = sorted({p.when for s in drawn for p in s.points})
    pos = {w: i for i, w in enumerate(whens)}
    fig = _figure(7.2, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    top = 0.0
    quiet = 0
    for k, s in enumerate(drawn):
        if s.regressed:
            colour, lw, z = RED, 2.4, 3
        else:
            colour, lw, z = _QUIET[quiet % len(_QUIET)], 1.2, 2
            quiet += 1
        xs = [pos[p.when] + (k - len(drawn) / 2) * 0.015 for p in s.points]  # a nudge: whiskers do not hide each other
        ys = [p.rate for p in s.points]
        lo = [max(p.rate - p.low, 0.0) for p in s.points]
        hi = [max(p.high - p.rate, 0.0) for p in s.points]
        top = max(top, *(p.high for p in s.points if math.isfinite(p.high)), 0.0)
        label = safe_label(s.key, 40) + ("  (regressed)" if s.regressed else "")
        ax.errorbar(xs, ys, yerr=[lo, hi], color=colour, ecolor=colour, lw=lw, marker="o", ms=4, capsize=3, zorder=z)
        ax.plot([], [], color=colour, lw=lw, marker="o", label=label)  # the legend entry, without whiskers
    ax.set_xticks(range(len(whens)), [safe_label(w, 20) for w in whens], rotation=20, ha="right")
    ax.set_ylim(0.0, max(top * 1.1, 0.01))
    ax.set_ylabel("defect rate", color=INK, fontsize=9)
    ax.set_title(safe_label(TITLES.get(kind, kind), 40), color=INK, fontsize=10, loc="left")
    ax.yaxis.grid(True, color=GRID, lw=0.8)
    ax.yaxis.set_major_formatter(_percent())
    if drawn:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), labelcolor=INK)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color=MUTED, transform=ax.transAxes)
    _margins(fig, left=0.7, bottom=0.9, top=0.35, right=2.6)
    return _svg(fig, salt)


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=1)


def _row(s: TrendSeries) -> dict[str, Any]:
    last = s.points[-1] if s.points else None
    return {
        "key": s.key,
        "runs": len(s.points),
        "latest": "" if last is None else f"{last.defects}/{last.sample}",
        "rate": "" if last is None else f"{last.rate:.2%}",
        "interval": "" if last is None else f"{last.low:.2%} .. {last.high:.2%}",
        "p": "" if s.p_value is None else f"{s.p_value:.3g}",
        "regressed": s.regressed,
    }


def render_trend_html(series: Sequence[TrendSeries], *, entries: int, alpha: float, source: str) -> str:
    """The whole page as text (deterministic for the same series)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every name on the page comes from label files: hostile until escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    sections = []
    for kind in KINDS:
        group = [s for s in series if s.kind == kind]
        if not group:
            continue
        ranked = sorted(group, key=lambda s: (not s.regressed, s.key))
        sections.append(
            {
                "kind": kind,
                "title": TITLES[kind],
                "svg": Markup(trend_svg(group, kind=kind, salt=f"trend-{kind}")),
                "flagged": [s.key for s in ranked if s.regressed],
                "rows": [_row(s) for s in ranked[:MAX_ROWS]],
                "more": max(len(ranked) - MAX_ROWS, 0),
                "drawn": min(len(group), MAX_SERIES),
                "total": len(group),
            }
        )
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    from annogate import __version__

    return str(
        env.get_template("trend.html.j2").render(
            css=Markup(css),
            version=__version__,
            sections=sections,
            entries=entries,
            alpha=alpha,
            source=source,
            flagged=sum(1 for s in series if s.regressed),
        )
    )


def write_trend_html(
    path: str | os.PathLike[str], series: Sequence[TrendSeries], *, entries: int, alpha: float, source: str
) -> None:
    """Render and write the page atomically (a reader never sees half of it)."""
    from annogate.report.audit import atomic_write_text

    atomic_write_text(path, render_trend_html(series, entries=entries, alpha=alpha, source=source))
