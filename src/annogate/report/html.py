"""The HTML report: one self-contained page a labelling lead can open from a CI artifact or an email.

Why a pure function of the audit report (the JSON document of
:func:`annogate.report.audit.build_report`) and not of the session's objects: the
page is then the same under pytest-xdist, from a saved report, or months later; a
report written by a newer annogate with tables this module does not know still
renders (unknown tables are shown generically: a header row and rows), and a
report missing any key renders what it has. Nothing is fetched from the network:
the CSS is inlined, charts are inline SVG (matplotlib), thumbnails PNG data URIs
(Pillow), and the page has no JavaScript at all.

Every string from the report (class names, file names, messages, annotator names)
is hostile input: the page is built with jinja2 with autoescaping on, never by
string concatenation; chart labels go through :func:`annogate.report.charts.safe_label`.

jinja2, matplotlib and Pillow are imported only when a page is rendered, so
``import annogate`` stays light.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annogate.model import Batch

__all__ = ["DEFAULT_MAX_FINDINGS", "DEFAULT_MAX_THUMBNAILS", "fmt_money", "render_html", "write_html"]

#: Findings listed per batch (the audit report has them all).
DEFAULT_MAX_FINDINGS = 100
#: Thumbnails drawn per batch.
DEFAULT_MAX_THUMBNAILS = 8
#: Rows shown per table (the rest are counted in a note).
MAX_TABLE_ROWS = 200

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Tables drawn by a dedicated section (still listed as a table next to their chart).
_GATE_ORDER = ("schema", "geometry", "golden", "confusion", "agreement")
# Which gates' findings make the best thumbnails: a wrong class or a shifted box first.
_THUMB_PRIORITY = {"golden": 0, "confusion": 1, "geometry": 2, "agreement": 3, "schema": 4}
_COST_STEPS = (("direct", "Direct"), ("qa", "QA"), ("rework", "Rework"), ("downstream", "Downstream"))


# --------------------------------------------------------------------------- formatting


def _num(v: Any) -> float | None:
    """A finite float from a report value, or None (a missing, null, non-numeric or non-finite value)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_money(value: Any, currency: Any) -> str:
    """``EUR 1,234.56``; a dash when the value is missing."""
    f = _num(value)
    cur = str(currency) if currency else ""
    if f is None:
        return "–"
    return f"{cur} {f:,.2f}".strip()


def fmt_value(v: Any) -> str:
    """A table cell: integers as integers, floats with four significant decimals, null as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        if abs(v) >= 1000:
            return f"{v:,.1f}"
        if abs(v) >= 1:
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return f"{v:.4f}".rstrip("0").rstrip(".") if v != 0 else "0"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items())
    return str(v)


def fmt_pct(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else f"{100.0 * f:.1f} %"


def _ci(low: Any, high: Any, pct: bool = True) -> str:
    lo, hi = _num(low), _num(high)
    if lo is None or hi is None:
        return "–"
    if pct:
        return f"{100 * lo:.1f}–{100 * hi:.1f} %"
    return f"{fmt_value(lo)} – {fmt_value(hi)}"


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else []


def _str(v: Any, default: str = "") -> str:
    return default if v is None else str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "x"


# --------------------------------------------------------------------------- tables


def _cell(v: Any, cls: str = "") -> dict[str, str]:
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    return {"text": fmt_value(v), "cls": (cls + " num").strip() if numeric else cls}


def _table(name: str, rows: Any, *, title: str | None = None) -> dict[str, Any] | None:
    """A generic table view (header row + rows) from a report table, or None if it has no header."""
    rows = _list(rows)
    if not rows or not isinstance(rows[0], (list, tuple)):
        return None
    header = [fmt_value(h) for h in rows[0]]
    body = [r for r in rows[1:] if isinstance(r, (list, tuple))]
    shown = body[:MAX_TABLE_ROWS]
    width = len(header)
    return {
        "id": _slug(name),
        "title": title or name.replace("_", " "),
        "header": header,
        "rows": [[_cell(r[i] if i < len(r) else None) for i in range(width)] for r in shown],
        "more": len(body) - len(shown),
    }


def _records(items: Any, *, title: str, currency: str = "") -> dict[str, Any] | None:
    """A table from a list of flat dicts (cost breakdowns: by type, by annotator, by class, line items)."""
    rows = [r for r in _list(items) if isinstance(r, Mapping)]
    if not rows:
        return None
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(str(k))
    front = [k for k in ("key", "item", "category", "kind", "scope") if k in keys]
    keys = front + [k for k in keys if k not in front]
    shown = rows[:MAX_TABLE_ROWS]
    body = []
    for r in shown:
        line = []
        for k in keys:
            v = r.get(k)
            if k == "amount" and currency:
                line.append({"text": fmt_money(v, currency), "cls": "num"})
            elif k == "checks" and isinstance(v, list):
                line.append({"text": "; ".join(_check_text(c) for c in v if isinstance(c, Mapping)), "cls": ""})
            else:
                line.append(_cell(v))
        body.append(line)
    return {
        "id": _slug(title),
        "title": title,
        "header": [k.replace("_", " ") for k in keys],
        "rows": body,
        "more": len(rows) - len(shown),
    }


def _check_text(c: Mapping[str, Any]) -> str:
    return f"{_str(c.get('metric'))} [{_str(c.get('scope'))}] {fmt_value(c.get('value'))} {_str(c.get('op'))} {fmt_value(c.get('limit'))}"


def _columns(rows: Sequence[Any]) -> tuple[list[str], list[list[Any]]]:
    if not rows or not isinstance(rows[0], (list, tuple)):
        return [], []
    header = [str(h) for h in rows[0]]
    body = [list(r) + [None] * (len(header) - len(r)) for r in rows[1:] if isinstance(r, (list, tuple))]
    return header, body


# --------------------------------------------------------------------------- sections


def _miss(c: Mapping[str, Any]) -> float | None:
    value, limit = _num(c.get("value")), _num(c.get("limit"))
    if value is None or limit is None:
        return None
    return value - limit if c.get("op") == "<=" else limit - value


def _why(gates: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The verdict's reasons: every gate's verdict, and every failed check with value, limit and miss."""
    gate_rows = []
    failed = []
    for g in gates:
        findings = _list(g.get("findings"))
        errors = sum(1 for f in findings if isinstance(f, Mapping) and f.get("severity", "error") == "error")
        gate_rows.append(
            {
                "gate": _str(g.get("gate"), "?"),
                "verdict": _str(g.get("verdict"), "unknown"),
                "population": fmt_value(g.get("population")),
                "errors": errors,
                "warnings": len(findings) - errors,
                "reason": _str(g.get("reason")),
            }
        )
        for c in _list(g.get("checks")):
            if isinstance(c, Mapping) and c.get("passed") is False:
                miss = _miss(c)
                failed.append(
                    {
                        "gate": _str(g.get("gate"), "?"),
                        "metric": _str(c.get("metric")),
                        "scope": _str(c.get("scope")),
                        "value": fmt_value(c.get("value")),
                        "op": _str(c.get("op")),
                        "limit": fmt_value(c.get("limit")),
                        "miss": "–" if miss is None else fmt_value(miss),
                        "severity": _str(c.get("severity"), "error"),
                    }
                )
    return {"gates": gate_rows, "failed": failed}


def _scenario_total(cost: Mapping[str, Any], name: str) -> float | None:
    return _num(_map(_map(cost.get("scenarios")).get(name)).get("total"))


def _cost_section(cost: Any, salt: str) -> dict[str, Any] | None:
    from annogate.report import charts

    if not isinstance(cost, Mapping) or not cost:
        return None
    cur = _str(cost.get("currency"), "")
    steps = [(label, _num(cost.get(key)) or 0.0) for key, label in _COST_STEPS]
    total = _num(cost.get("total"))
    if total is None:
        total = sum(a for _, a in steps)
    low, high = _scenario_total(cost, "low"), _scenario_total(cost, "high")
    scen = _map(cost.get("scenarios"))
    cats = []
    for key, label in (*_COST_STEPS, ("total", "Total")):
        fixed = _num(cost.get(key)) if key in ("direct", "qa") else None  # no scenario varies them
        lo = _num(_map(scen.get("low")).get(key, fixed))
        hi = _num(_map(scen.get("high")).get(key, fixed))
        cats.append(
            {
                "id": key,
                "label": label,
                "amount": fmt_money(cost.get(key) if key != "total" else total, cur),
                "low": fmt_money(lo, cur) if lo is not None else "–",
                "high": fmt_money(hi, cur) if hi is not None else "–",
            }
        )
    partial = cost.get("partial")
    partial_text = ""
    if partial:
        partial_text = fmt_value(partial) if not isinstance(partial, bool) else "some gates did not run"
    known = {
        "by_error_type",
        "by_annotator",
        "patterns",
        "line_items",
        "scenarios",
        "notes",
        "class_unit_prices",
        "partial",
    }
    extra_tables = [
        t
        for k, v in cost.items()
        if k not in known and isinstance(v, list) and v and isinstance(v[0], Mapping)
        for t in [_records(v, title=k.replace("_", " "), currency=cur)]
        if t is not None
    ]
    return {
        "currency": cur,
        "total": fmt_money(total, cur),
        "low": fmt_money(low, cur) if low is not None else "–",
        "high": fmt_money(high, cur) if high is not None else "–",
        "overhead": fmt_pct(cost.get("overhead_ratio")),
        "labels": fmt_value(cost.get("n_labels")),
        "unit_price": fmt_money(cost.get("unit_price"), cur),
        "categories": cats,
        "chart": charts.cost_waterfall_svg(steps, total=total, low=low, high=high, currency=cur, salt=salt + "w"),
        "partial": partial_text,
        "notes": [_str(n) for n in _list(cost.get("notes"))],
        "patterns": _records(cost.get("patterns"), title="systematic patterns", currency=cur),
        "line_items": _records(cost.get("line_items"), title="line items", currency=cur),
        "extra_tables": extra_tables,
    }


def _wilson(k: Any, n: Any) -> tuple[float, float] | None:
    from annogate.stats import wilson_interval

    kk, nn = _num(k), _num(n)
    if kk is None or nn is None or nn <= 0 or kk < 0 or kk > nn:
        return None
    lo, hi = wilson_interval(kk, nn)
    return (float(lo), float(hi))


def _defects_section(cost: Any, gates: list[Mapping[str, Any]], salt: str) -> dict[str, Any] | None:
    """Defects by error type and by annotator: the cost's expected counts, with Wilson intervals where the
    report has the sample behind them (golden findings out of the golden sample; per-annotator trials)."""
    from annogate.report import charts

    cost = _map(cost)
    cur = _str(cost.get("currency"))
    sample = _num(cost.get("golden_sample"))
    golden_counts: dict[str, Any] = {}
    for g in gates:
        if g.get("gate") == "golden":
            golden_counts = dict(_map(g.get("counts_by_rule")))
    by_type: list[dict[str, Any]] = []
    for r in _list(cost.get("by_error_type")):
        if not isinstance(r, Mapping):
            continue
        key = _str(r.get("key"), "?")
        defects = _num(r.get("defects")) or 0.0
        k = _num(golden_counts.get(key))
        ci = _wilson(k, sample) if k is not None and sample else None
        low = high = None
        if ci is not None and k:
            n_eff = defects / (k / (sample or 1.0))  # the labels the sampled rate was applied to
            low, high = n_eff * ci[0], n_eff * ci[1]
        by_type.append(
            {
                "key": key,
                "defects": fmt_value(round(defects, 2)),
                "observed": (
                    f"{fmt_value(k)}/{fmt_value(sample)} golden · {fmt_pct((k or 0) / (sample or 1))} ({_ci(*ci)})"
                    if ci is not None
                    else "exact count"
                ),
                "interval": f"{low:.1f} – {high:.1f}" if low is not None and high is not None else "–",
                "corrections": fmt_value(round(_num(r.get("corrections")) or 0.0, 2)),
                "amount": fmt_money(r.get("amount"), cur),
                "_v": defects,
                "_lo": low,
                "_hi": high,
            }
        )
    by_type.sort(key=lambda d: -float(d["_v"]))
    # per-annotator samples: any gate table with annotator, defects and trials (or n) columns
    samples: dict[str, tuple[Any, Any, str]] = {}
    for g in gates:
        for tname, rows in _map(g.get("tables")).items():
            header, body = _columns(_list(rows))
            if "annotator" not in header or "defects" not in header:
                continue
            n_col = "trials" if "trials" in header else ("n" if "n" in header else None)
            if n_col is None:
                continue
            ia, idf, in_ = header.index("annotator"), header.index("defects"), header.index(n_col)
            for row in body:
                name = _str(row[ia])
                if name not in samples and _num(row[in_]):
                    samples[name] = (row[idf], row[in_], f"{_str(g.get('gate'))} {tname}")
    by_ann: list[dict[str, Any]] = []
    for r in _list(cost.get("by_annotator")):
        if not isinstance(r, Mapping):
            continue
        key = _str(r.get("key"), "?")
        s = samples.get(key)
        ci = _wilson(s[0], s[1]) if s else None
        by_ann.append(
            {
                "key": key,
                "defects": fmt_value(round(_num(r.get("defects")) or 0.0, 2)),
                "observed": (
                    f"{fmt_value(s[0])}/{fmt_value(s[1])} ({s[2]}) · {fmt_pct(float(s[0]) / float(s[1]))} ({_ci(*ci)})"
                    if s and ci
                    else "–"
                ),
                "corrections": fmt_value(round(_num(r.get("corrections")) or 0.0, 2)),
                "amount": fmt_money(r.get("amount"), cur),
                "_v": _num(r.get("defects")) or 0.0,
            }
        )
    by_ann.sort(key=lambda d: -float(d["_v"]))
    # annotators with a sample but no cost line (e.g. agreement-only): still show their rate
    rate_rows = [(name, s) for name, s in samples.items() if _wilson(s[0], s[1])]
    if not by_type and not by_ann and not rate_rows:
        return None
    type_chart = (
        charts.hbar_svg(
            [d["key"] for d in by_type],
            [float(d["_v"]) for d in by_type],
            low=[d["_lo"] for d in by_type],
            high=[d["_hi"] for d in by_type],
            xlabel="expected defects in the batch\n(whisker: 95 % Wilson interval of the sampled rate)",
            salt=salt + "t",
            colour=charts.AMBER,
        )
        if by_type
        else None
    )
    ann_chart = None
    if rate_rows:
        cis = [_wilson(s[0], s[1]) or (0.0, 0.0) for _, s in rate_rows]
        ann_chart = charts.hbar_svg(
            [name for name, _ in rate_rows],
            [100.0 * float(s[0]) / float(s[1]) for _, s in rate_rows],
            low=[100 * lo for lo, _ in cis],
            high=[100 * hi for _, hi in cis],
            xlabel="defect rate per annotator, %\n(whisker: 95 % Wilson interval)",
            value_format="{:.1f} %",
            salt=salt + "a",
        )
    elif by_ann:
        ann_chart = charts.hbar_svg(
            [d["key"] for d in by_ann],
            [float(d["_v"]) for d in by_ann],
            xlabel="expected defects attributed to each annotator",
            salt=salt + "a",
        )
    return {"by_type": by_type, "by_annotator": by_ann, "type_chart": type_chart, "annotator_chart": ann_chart}


def _golden_per_class(rows: Any) -> dict[str, Any] | None:
    """The per-class table with 95 % Wilson intervals for precision (tp of batch) and recall (tp of golden)."""
    header, body = _columns(_list(rows))
    # the drift columns repeat the drift table (and its chart): left out here so the table fits the page
    keep = [i for i, h in enumerate(header) if not h.startswith("drift_")]
    rows = [[r[i] if i < len(r) else None for i in keep] for r in _list(rows) if isinstance(r, (list, tuple))]
    header, body = _columns(rows)
    t = _table("golden_per_class", rows, title="per-class precision and recall")
    if t is None or not {"tp", "golden", "batch"} <= set(header):
        return t
    itp, ig, ib = header.index("tp"), header.index("golden"), header.index("batch")
    t["header"] = [*t["header"], "precision 95 % CI", "recall 95 % CI"]
    for line, row in zip(t["rows"], body, strict=False):
        p, r = _wilson(row[itp], row[ib]), _wilson(row[itp], row[ig])
        line.append({"text": _ci(*p) if p else "–", "cls": "num"})
        line.append({"text": _ci(*r) if r else "–", "cls": "num"})
    return t


def _drift(rows: Any, limit: float | None, salt: str) -> str | None:
    """Drift chart from a table with edge, mean and 95 % bounds; every other text column names the group."""
    from annogate.report import charts

    header, body = _columns(_list(rows))
    if not {"edge", "mean"} <= set(header) or not body:
        return None
    ie, im = header.index("edge"), header.index("mean")
    ilo = header.index("ci95_low") if "ci95_low" in header else None
    ihi = header.index("ci95_high") if "ci95_high" in header else None
    group_cols = [
        i
        for i, h in enumerate(header)
        if i not in (ie, im, ilo, ihi) and h != "n" and any(isinstance(r[i], str) for r in body)
    ]
    groups: list[str] = []
    edges: list[str] = []
    points: dict[tuple[str, str], tuple[float, float | None, float | None]] = {}
    for r in body:
        mean = _num(r[im])
        if mean is None:
            continue
        g = " · ".join(_str(r[i]) for i in group_cols if r[i] not in (None, "")) or "(all)"
        e = _str(r[ie])
        if g not in groups:
            groups.append(g)
        if e not in edges:
            edges.append(e)
        lo = _num(r[ilo]) if ilo is not None else None
        hi = _num(r[ihi]) if ihi is not None else None
        points[(g, e)] = (mean, lo, hi)
    if not points:
        return None
    return charts.drift_svg(groups, edges, points, limit=limit, salt=salt)


def _drift_limit(gate: Mapping[str, Any]) -> float | None:
    for c in _list(gate.get("checks")):
        if isinstance(c, Mapping) and _str(c.get("metric")).startswith("drift"):
            lim = _num(c.get("limit"))
            if lim is not None:
                return lim
    return None


def _confusion(gate: Mapping[str, Any], salt: str) -> str | None:
    from annogate.report import charts

    rows = _list(_map(gate.get("tables")).get("confusion_matrix"))
    header, body = _columns(rows)
    if len(header) >= 2 and body:
        cols = header[1:]
        names = [_str(r[0]) for r in body]
        counts = [[_num(v) or 0.0 for v in r[1 : len(header)]] for r in body]
    else:
        m = _map(_map(gate.get("metrics")).get("matrix"))
        cols = [_str(c) for c in _list(m.get("columns"))]
        names = [_str(r) for r in _list(m.get("rows"))]
        counts = [[_num(v) or 0.0 for v in _list(r)][: len(cols)] for r in _list(m.get("counts"))]
        counts = [r + [0.0] * (len(cols) - len(r)) for r in counts][: len(names)]
    if not cols or not names or len(counts) != len(names):
        return None
    return charts.confusion_heatmap_svg(names, cols, counts, salt=salt)


def _pairs_chart(rows: Any, salt: str) -> str | None:
    from annogate.report import charts

    header, body = _columns(_list(rows))
    if not {"annotator_a", "annotator_b"} <= set(header):
        return None
    metric = next((m for m in ("mean_iou", "class_agreement", "match_rate") if m in header), None)
    if metric is None:
        return None
    ia, ib, im = header.index("annotator_a"), header.index("annotator_b"), header.index(metric)
    data: list[tuple[str, float]] = []
    for r in body:
        v = _num(r[im])
        if v is not None:
            data.append((f"{_str(r[ia])} / {_str(r[ib])}", v))
    if not data:
        return None
    return charts.hbar_svg(
        [k for k, _ in data],
        [v for _, v in data],
        xlabel=metric.replace("_", " ") + " per annotator pair",
        value_format="{:.3f}",
        salt=salt,
    )


def _gate_views(gates: list[Mapping[str, Any]], salt: str) -> list[dict[str, Any]]:
    """Per gate: its charts and its tables (known ones enriched, the rest generic)."""
    views = []
    for gi, g in enumerate(gates):
        name = _str(g.get("gate"), "?")
        tables = _map(g.get("tables"))
        charts_: list[dict[str, str]] = []
        shown: list[dict[str, Any]] = []
        for tname, rows in tables.items():
            s = f"{salt}g{gi}{_slug(str(tname))}"
            t: dict[str, Any] | None
            if tname == "golden_per_class":
                t = _golden_per_class(rows)
            else:
                t = _table(str(tname), rows)
            if "drift" in str(tname):
                svg = _drift(rows, _drift_limit(g), s)
                if svg:
                    charts_.append({"id": "drift", "title": "Boundary drift per edge", "svg": svg})
            if tname == "pairs":
                svg = _pairs_chart(rows, s)
                if svg:
                    charts_.append({"id": "agreement", "title": "Agreement per annotator pair", "svg": svg})
            if t is not None and t["rows"]:
                # a table drawn as a chart above is there for the exact figures: folded away
                t["collapsed"] = tname == "confusion_matrix" or "drift" in str(tname)
                shown.append(t)
        if name == "confusion":
            svg = _confusion(g, f"{salt}g{gi}cm")
            if svg:
                charts_.insert(0, {"id": "confusion", "title": "Confusion matrix (golden vs batch)", "svg": svg})
        if charts_ or shown:
            views.append({"gate": name, "charts": charts_, "tables": shown})
    return views


def _findings(gates: list[Mapping[str, Any]], limit: int, batch_path: str) -> tuple[list[dict[str, str]], int]:
    out = []
    for g in gates:
        for f in _list(g.get("findings")):
            if isinstance(f, Mapping):
                out.append(f)
    out.sort(key=lambda f: 0 if f.get("severity", "error") == "error" else 1)  # stable: gate order kept
    rows = []
    for f in out[:limit]:
        file = _str(f.get("file"))
        line = f.get("line")
        # the batch's own file is named in the section header: say only the line (or JSON pointer) then
        prefix = "" if file == batch_path else file + (":" if line is not None else " ")
        if line is not None:
            where = f"{prefix}line {line}" if not prefix else f"{prefix}{line}"
        elif f.get("pointer"):
            where = f"{prefix}{f.get('pointer')}"
        else:
            where = file
        rows.append(
            {
                "gate": _str(f.get("gate")),
                "rule": _str(f.get("rule")),
                "severity": _str(f.get("severity"), "error"),
                "where": where,
                "annotation": _str(f.get("annotation_id"), "–"),
                "image": _str(f.get("image"), "–"),
                "category": _str(f.get("category"), "–"),
                "annotator": _str(f.get("annotator"), "–"),
                "message": _str(f.get("message")),
            }
        )
    return rows, len(out)


# --------------------------------------------------------------------------- thumbnails


_GOLDEN_ID = re.compile(r"golden annotation (\d+)")


def _row_of(batch: Batch, ann_id: int, image: str | None) -> int | None:
    import numpy as np

    rows = np.flatnonzero(batch.annotations.id == ann_id)
    for i in rows.tolist():
        if image is None or batch.image_name(int(i)) == image:
            return int(i)
    return None


def _iou(a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float] | None) -> float:
    if a is None or b is None:
        return 0.0
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    iw = min(ax0 + aw, bx0 + bw) - max(ax0, bx0)
    ih = min(ay0 + ah, by0 + bh) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _golden_row(golden: Batch, image: str, bbox: Any, hint: int | None) -> int | None:
    """The golden object for a batch object: the id the finding names, else the best-overlapping one on the image."""
    import numpy as np

    if hint is not None:
        i = _row_of(golden, hint, image)
        if i is not None:
            return i
    idx = golden.images.index_by_name().get(image)
    if idx is None:
        return None
    cands = np.flatnonzero(golden.annotations.image == idx).tolist()[:10_000]
    from annogate.report.thumbnails import shape_of

    best, best_iou = None, 0.0
    for c in cands:
        iou = _iou(bbox, shape_of(golden, int(c)).bbox)
        if iou > best_iou:
            best, best_iou = int(c), iou
    return best


def _thumbnails(
    report_batch: Mapping[str, Any],
    gates: list[Mapping[str, Any]],
    load_batch: Callable[[str], Batch] | None,
    images_root: Path | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str]:
    """Thumbnails of the worst findings, or ([], why not)."""
    if load_batch is None or limit <= 0:
        return [], ""
    from annogate.report import thumbnails as th

    cands: list[Mapping[str, Any]] = []
    seen: set[tuple[Any, Any]] = set()
    allf = [
        f
        for g in gates
        for f in _list(g.get("findings"))
        if isinstance(f, Mapping) and f.get("severity", "error") == "error"
    ]
    allf.sort(key=lambda f: _THUMB_PRIORITY.get(_str(f.get("gate")), 9))
    for f in allf:
        aid = f.get("annotation_id")
        if not isinstance(aid, int) or isinstance(aid, bool) or not f.get("image"):
            continue
        key = (aid, f.get("image"))
        if key not in seen:
            seen.add(key)
            cands.append(f)
    if not cands:
        return [], ""
    try:
        batch = load_batch(_str(report_batch.get("path")))
    except Exception as e:  # the label file moved or changed since the run: the page still renders
        return [], f"could not reload the batch for thumbnails: {type(e).__name__}: {e}"
    golden: Batch | None = None
    golden_file = next(
        (_str(_map(g.get("metrics")).get("golden_file")) for g in gates if _map(g.get("metrics")).get("golden_file")),
        "",
    )
    if golden_file:
        try:
            golden = load_batch(golden_file)
        except Exception:
            golden = None
    out: list[dict[str, Any]] = []
    for f in cands:
        if len(out) >= limit:
            break
        image = _str(f.get("image"))
        row = _row_of(batch, int(f["annotation_id"]), image)
        if row is None:
            continue
        shape = th.shape_of(batch, row)
        gshape = None
        # an "extra" object has no golden counterpart by definition: drawing a neighbour would mislead
        if golden is not None and f.get("gate") in ("golden", "confusion") and f.get("rule") != "extra":
            m = _GOLDEN_ID.search(_str(f.get("message")))
            grow = _golden_row(golden, image, shape.bbox, int(m.group(1)) if m else None)
            if grow is not None:
                gshape = th.shape_of(golden, grow)
        img_idx = int(batch.annotations.image[row])
        w = h = None
        if 0 <= img_idx < len(batch.images):
            w, h = _num(float(batch.images.width[img_idx])), _num(float(batch.images.height[img_idx]))
        pil = th.open_image(images_root, image)
        try:
            t = th.render_thumbnail(shape, gshape, image_width=w, image_height=h, image=pil)
        finally:
            if pil is not None:
                pil.close()
        out.append(
            {
                "uri": t.data_uri,
                "width": t.width,
                "height": t.height,
                "on_image": t.on_image,
                "golden": gshape is not None,
                "image": image,
                "annotation": _str(f.get("annotation_id")),
                "rule": _str(f.get("rule")),
                "gate": _str(f.get("gate")),
                "message": _str(f.get("message")),
                "annotator": _str(f.get("annotator"), "–"),
            }
        )
    return out, ""


# --------------------------------------------------------------------------- page


def _summary(report: Mapping[str, Any], batches: list[Mapping[str, Any]]) -> dict[str, Any]:
    s = _map(report.get("summary"))
    costs = []
    for cur, t in _map(s.get("cost")).items():
        t = _map(t)
        lows = [
            _scenario_total(_map(b.get("cost")), "low") for b in batches if _map(b.get("cost")).get("currency") == cur
        ]
        highs = [
            _scenario_total(_map(b.get("cost")), "high") for b in batches if _map(b.get("cost")).get("currency") == cur
        ]
        low = sum(x for x in lows if x is not None) if lows and all(x is not None for x in lows) else None
        high = sum(x for x in highs if x is not None) if highs and all(x is not None for x in highs) else None
        costs.append(
            {
                "currency": str(cur),
                "total": fmt_money(t.get("total"), cur),
                "low": fmt_money(low, cur) if low is not None else "–",
                "high": fmt_money(high, cur) if high is not None else "–",
                "direct": fmt_money(t.get("direct"), cur),
                "overhead": fmt_pct(t.get("overhead_ratio")),
            }
        )
    return {
        "verdict": _str(s.get("verdict"), "unknown"),
        "batches": fmt_value(s.get("batches", len(batches))),
        "failed": fmt_value(s.get("failed")),
        "passed": fmt_value(s.get("passed")),
        "skipped": fmt_value(s.get("skipped")),
        "annotations": fmt_value(s.get("annotations")),
        "defects": fmt_value(s.get("defects")),
        "exit_status": fmt_value(s.get("exit_status")) if "exit_status" in s else "",
        "costs": costs,
    }


def _batch_view(
    i: int,
    b: Mapping[str, Any],
    *,
    load_batch: Callable[[str], Batch] | None,
    images_root: Path | None,
    max_findings: int,
    max_thumbnails: int,
) -> dict[str, Any]:
    gates = [g for g in _list(b.get("gates")) if isinstance(g, Mapping)]
    gates.sort(
        key=lambda g: (_GATE_ORDER.index(g["gate"]) if g.get("gate") in _GATE_ORDER else 99, _str(g.get("gate")))
    )
    salt = f"b{i}"
    cost = _cost_section(b.get("cost"), salt)
    findings, n_findings = _findings(gates, max_findings, _str(b.get("path")))
    thumbs, thumb_note = _thumbnails(b, gates, load_batch, images_root, max_thumbnails)
    rules = _map(b.get("rules"))
    return {
        "id": f"batch-{i + 1}",
        "path": _str(b.get("path"), "(unnamed batch)"),
        "verdict": _str(b.get("verdict"), "unknown"),
        "format": _str(b.get("format"), "?"),
        "annotations": fmt_value(b.get("n_annotations")),
        "sha256": _str(b.get("sha256"))[:12],
        "rules_path": _str(rules.get("path"), "built-in defaults"),
        "why": _why(gates),
        "cost": cost,
        "defects": _defects_section(b.get("cost"), gates, salt),
        "gates": _gate_views(gates, salt),
        "findings": findings,
        "n_findings": n_findings,
        "thumbnails": thumbs,
        "thumb_note": thumb_note,
        "total": cost["total"] if cost else "–",
    }


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every string in the page comes from the report: hostile until escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def render_html(
    report: Mapping[str, Any],
    *,
    load_batch: Callable[[str], Batch] | None = None,
    images_root: Path | None = None,
    max_findings: int = DEFAULT_MAX_FINDINGS,
    max_thumbnails: int = DEFAULT_MAX_THUMBNAILS,
) -> str:
    """The self-contained HTML page of an audit report.

    ``load_batch`` (batch path as written in the report → :class:`~annogate.model.Batch`)
    enables thumbnails of the worst findings; it is also called with the golden
    file's path to draw the golden counterpart. ``images_root`` is where the image
    files named in the batch are looked up (confined to it); without it, or when an
    image is missing or too large, the geometry is drawn on a blank canvas of the
    image's size.
    """
    from markupsafe import Markup

    batches_raw = [b for b in _list(report.get("batches")) if isinstance(b, Mapping)]
    batches = [
        _batch_view(
            i,
            b,
            load_batch=load_batch,
            images_root=images_root,
            max_findings=max_findings,
            max_thumbnails=max_thumbnails,
        )
        for i, b in enumerate(batches_raw)
    ]
    # Failed batches first (what needs action), then the report's order; ids keep the report's index.
    batches.sort(key=lambda b: {"failed": 0, "passed": 2, "skipped": 3}.get(b["verdict"], 1))
    env = _environment()
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    rules_files = [
        {"path": _str(_map(r).get("path"), "built-in defaults"), "sha256": _str(_map(r).get("sha256"))[:12]}
        for r in _list(report.get("rules_files"))
    ]
    # Chart SVG is generated by matplotlib (labels sanitised, text XML-escaped): the only markup not escaped here.
    for b in batches:
        if b["cost"]:
            b["cost"]["chart"] = Markup(b["cost"]["chart"])
        if b["defects"]:
            for k in ("type_chart", "annotator_chart"):
                if b["defects"][k]:
                    b["defects"][k] = Markup(b["defects"][k])
        for g in b["gates"]:
            for c in g["charts"]:
                c["svg"] = Markup(c["svg"])
    text: str = env.get_template("report.html.j2").render(
        css=Markup(css),
        summary=_summary(report, batches_raw),
        batches=batches,
        version=_str(report.get("annogate_version"), "?"),
        generated_at=_str(report.get("generated_at")),
        rules_files=rules_files,
        max_findings=max_findings,
    )
    return text


def write_html(
    path: str | os.PathLike[str],
    report: Mapping[str, Any],
    **kw: Any,
) -> None:
    """Render :func:`render_html` and write it atomically (file mode from the user's umask)."""
    from annogate.report.audit import atomic_write_text

    atomic_write_text(path, render_html(report, **kw))
