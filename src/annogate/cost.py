"""The rework-cost estimate: what accepting a batch would cost, in money.

Why a cost model in a gate: a failing threshold says *that* a batch is bad; the
team that pays for labels needs to know *how much* the defects will cost before
they reach training. Price per label hides QA review, rework cycles (corrections
carry errors of their own) and downstream remediation of systematic errors that
review does not catch. This module prices the typed facts the gates report
(:mod:`annogate.defects`); it never looks at a gate's name or metrics, so a
third-party gate takes part by filling ``GateResult.cost``.

Pure: inputs are the number of labels, the gate results and the
``[tool.annogate.cost]`` rules section; no pytest, no I/O.

The model
---------
* **Direct** = labels x price per label (the price may depend on class and
  annotation type; with a label mix, the weighted mean price is used).
* **QA review** = ``qa_fraction`` x direct.
* **Rework**. First-pass defects ``F = D + d * (N - D)``: ``D`` are the exact
  defects (rows the gates know are wrong, each counted once however many gates
  name it) and ``d`` is the sampled defect rate (the golden set), extrapolated to
  the rows not already known defective, with a Wilson interval (low / expected /
  high). Each correction is wrong again with probability ``r``
  (``correction_error_rate``; default the measured rate ``F / N``), so the expected
  corrections are ``F * (1 + r + ... + r**(max_cycles - 1))``, each costing
  ``price x rework_multiplier``. Check: N = 200,000, d = r = 0.05, two cycles:
  10,000 + 500 = 10,500 corrections.
* **Downstream** remediation, per systematic pattern: ``max(retrain_cost +
  engineer_hours x hourly_rate, downstream_multiplier x the rework cost of the
  labels the pattern affects)``.
* **Overhead ratio** = (QA + rework + downstream) / direct.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from annogate.defects import CostFacts, DefectSummary, Pattern, SampledDefects, summarise
from annogate.findings import GateResult
from annogate.model import SEG_POLYGON, SEG_RLE, Batch
from annogate.stats import wilson_interval

__all__ = [
    "ANNOTATION_TYPES",
    "RULES_SCHEMA",
    "UNKNOWN",
    "Breakdown",
    "CostEstimate",
    "CostParameters",
    "LineItem",
    "PricedPattern",
    "Scenario",
    "composition_from_batch",
    "cycle_factor",
    "estimate_cost",
    "expected_corrections",
]

#: Annotation types a price can be given for.
ANNOTATION_TYPES: tuple[str, ...] = ("bbox", "polygon", "mask", "keypoints")
#: Key used for defects without an annotator / class.
UNKNOWN = "(unknown)"

Category = Literal["direct", "qa", "rework", "downstream"]


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, kw_only=True)
class CostParameters:
    """The cost rules with defaults applied: the one place the defaults live.

    Defaults and why:

    * ``price_per_label = 0.05``: a typical vendor price for a bounding box; set it.
    * ``qa_fraction = 0.20``: QA review runs at 15-25 % of direct cost.
    * ``rework_multiplier = 2.0``: a correction is a round trip (send back, reopen
      the image, find the object, redraw it, review it again), about twice the work
      of the first label; with it a batch at the common 5 % defect rate costs 30 %
      over its price (QA 20 % + rework 10.5 %), the low end of the published 30-60 %.
    * ``max_cycles = 2``: a correction and the correction of that correction; later
      cycles are negligible at realistic error rates.
    * ``downstream_multiplier = 10``: the "1-10-100" rule of data quality, an error
      found after it was used costs about ten times its correction at the source;
      it applies only to the labels a systematic pattern affects.
      ``retrain_cost``, ``engineer_hours`` and ``hourly_rate`` default to 0 because
      only the team knows them.
    """

    currency: str = "USD"
    price_default: float = 0.05
    type_prices: Mapping[str, float] = field(default_factory=dict)
    class_prices: Mapping[str, float | Mapping[str, float]] = field(default_factory=dict)
    qa_fraction: float = 0.20
    rework_multiplier: float = 2.0
    correction_error_rate: float | None = None
    max_cycles: int = 2
    confidence: float = 0.95
    cohorts: Mapping[str, str] = field(default_factory=dict)
    retrain_cost: float = 0.0
    engineer_hours: float = 0.0
    hourly_rate: float = 0.0
    downstream_multiplier: float = 10.0

    @classmethod
    def from_rules(cls, section: Mapping[str, Any] | None) -> CostParameters:
        """Parameters from a ``[tool.annogate.cost]`` mapping (validated by the rules loader);
        every key left out takes the dataclass default."""
        s = dict(section or {})
        kw: dict[str, Any] = {}
        price = s.get("price_per_label")
        if isinstance(price, Mapping):
            if "default" in price:
                kw["price_default"] = float(price["default"])
            kw["type_prices"] = {t: float(price[t]) for t in ANNOTATION_TYPES if t in price}
            classes: dict[str, float | Mapping[str, float]] = {}
            for name, v in dict(price.get("classes", {})).items():
                classes[str(name)] = {str(k): float(x) for k, x in v.items()} if isinstance(v, Mapping) else float(v)
            kw["class_prices"] = classes
        elif price is not None:
            kw["price_default"] = float(price)
        for key in (
            "currency",
            "qa_fraction",
            "rework_multiplier",
            "correction_error_rate",
            "max_cycles",
            "confidence",
        ):
            if s.get(key) is not None:
                kw[key] = s[key]
        if "cohorts" in s:
            kw["cohorts"] = {str(k): str(v) for k, v in dict(s["cohorts"]).items()}
        kw.update(dict(s.get("downstream", {})))
        return cls(**kw)

    def price(self, category: str | None, ann_type: str | None = None) -> float:
        """Price of one label: class-and-type, class, type, then default."""
        cp = self.class_prices.get(category) if category is not None else None
        if isinstance(cp, Mapping):
            if ann_type is not None and ann_type in cp:
                return float(cp[ann_type])
            if "default" in cp:
                return float(cp["default"])
        elif cp is not None:
            return float(cp)
        if ann_type is not None and ann_type in self.type_prices:
            return float(self.type_prices[ann_type])
        return self.price_default

    @property
    def fixed_remediation(self) -> float:
        """Cost of remediating one systematic pattern after training: retrain + engineering."""
        return self.retrain_cost + self.engineer_hours * self.hourly_rate

    def cohort(self, annotator: str | None) -> str:
        """The name rework is itemised under: the annotator's cohort when the rules name one."""
        return self.cohorts.get(annotator, annotator) if annotator else UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type_prices"] = dict(self.type_prices)
        d["class_prices"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.class_prices.items()}
        d["cohorts"] = dict(self.cohorts)
        return d


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CostParameters) if f.default is not dataclasses.MISSING}
# Bounds that no real programme reaches, so every product of them stays finite: a
# price of 1e308 per label would make the estimate inf (and its rounding crash).
_MONEY: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1e9}
_FACTOR: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1e6}
_TYPE_PRICES: dict[str, Any] = {t: _MONEY for t in ANNOTATION_TYPES}

#: JSON Schema of ``[tool.annogate.cost]``; unknown keys are usage errors. Defaults
#: shown here are read from :class:`CostParameters`, never written twice.
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The rework-cost model (annogate.cost).",
    "additionalProperties": False,
    "properties": {
        "currency": {"type": "string", "minLength": 1, "maxLength": 16, "default": _DEFAULTS["currency"]},
        "price_per_label": {
            "description": "One price, or a table: default, per annotation type, per class "
            "(a number, or per-type prices for that class).",
            "default": _DEFAULTS["price_default"],
            "oneOf": [
                _MONEY,
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "default": _MONEY,
                        **_TYPE_PRICES,
                        "classes": {
                            "type": "object",
                            "additionalProperties": {
                                "oneOf": [
                                    _MONEY,
                                    {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {"default": _MONEY, **_TYPE_PRICES},
                                    },
                                ]
                            },
                        },
                    },
                },
            ],
        },
        "qa_fraction": {**_FACTOR, "default": _DEFAULTS["qa_fraction"]},
        "rework_multiplier": {**_FACTOR, "default": _DEFAULTS["rework_multiplier"]},
        "correction_error_rate": {
            "description": "Probability that a correction is wrong again; default: the measured defect rate.",
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
        },
        "max_cycles": {"type": "integer", "minimum": 1, "maximum": 1000, "default": _DEFAULTS["max_cycles"]},
        "confidence": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "default": _DEFAULTS["confidence"],
        },
        "cohorts": {
            "description": "Annotator name -> cohort (vendor, team); itemise by cohort instead of person.",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "downstream": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "retrain_cost": {**_MONEY, "default": _DEFAULTS["retrain_cost"]},
                "engineer_hours": {**_FACTOR, "default": _DEFAULTS["engineer_hours"]},
                "hourly_rate": {**_MONEY, "default": _DEFAULTS["hourly_rate"]},
                "downstream_multiplier": {**_FACTOR, "default": _DEFAULTS["downstream_multiplier"]},
            },
        },
    },
}


# --------------------------------------------------------------------------- inputs


Composition = Mapping[tuple[str | None, str], int]


def composition_from_batch(batch: Batch) -> dict[tuple[str | None, str], int]:
    """Label counts by (class name, annotation type), for per-class/per-type prices.

    The type is the richest geometry an annotation carries: ``keypoints`` if it has
    any, else ``mask`` (RLE), ``polygon``, or ``bbox``. Class is ``None`` when the
    category id dangles.
    """
    ann = batch.annotations
    n = len(ann)
    if n == 0:
        return {}
    kind = np.zeros(n, dtype=np.int64)  # 0 bbox, 1 polygon, 2 mask, 3 keypoints
    kind[ann.seg_kind == SEG_POLYGON] = 1
    kind[ann.seg_kind == SEG_RLE] = 2
    has_kp = (np.diff(ann.kp_offsets) > 0) | (ann.num_keypoints > 0)
    kind[has_kp] = 3
    cat = ann.category.astype(np.int64) + 1  # -1 (dangling) -> 0
    keys, counts = np.unique(cat * 4 + kind, return_counts=True)
    out: dict[tuple[str | None, str], int] = {}
    for key, c in zip(keys.tolist(), counts.tolist(), strict=True):
        ci, ki = divmod(int(key), 4)
        name = None if ci == 0 else str(batch.categories.name[ci - 1])
        out[(name, ANNOTATION_TYPES[ki])] = int(c)
    return out


# --------------------------------------------------------------------------- arithmetic


def cycle_factor(r: float, max_cycles: int) -> float:
    """``1 + r + r**2 + ... + r**(max_cycles-1)``: corrections per first-pass defect."""
    if max_cycles < 1:
        raise ValueError(f"max_cycles must be >= 1, got {max_cycles}")
    if not 0.0 <= r < 1.0:
        raise ValueError(f"correction error rate must be in [0, 1), got {r}")
    return float(sum(r**k for k in range(max_cycles)))


def expected_corrections(n_labels: float, defect_rate: float, correction_error_rate: float, max_cycles: int) -> float:
    """``N * d * (1 + r + ... )``: e.g. 200,000 x 0.05 x (1 + 0.05) = 10,500."""
    return n_labels * defect_rate * cycle_factor(correction_error_rate, max_cycles)


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, kw_only=True)
class LineItem:
    """One line of the itemised estimate; lines of a category sum to its total."""

    category: Category
    item: str
    quantity: float
    unit_cost: float
    amount: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Breakdown:
    """Expected rework attributed to one error type, annotator (cohort) or class."""

    key: str
    defects: float  # first-pass defects (expected)
    corrections: float  # including re-corrections
    amount: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class PricedPattern:
    """A systematic pattern with the gate that found it and what remediating it costs."""

    gate: str
    pattern: Pattern
    amount: float

    @property
    def key(self) -> str:
        return self.pattern.key(self.gate)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, **self.pattern.to_dict(), "amount": self.amount}


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """The estimate at one defect rate (low / expected / high of the Wilson interval)."""

    defect_rate: float  # sampled rate d used for the rows not known defective
    overall_defect_rate: float  # F / N, exact defects included
    correction_error_rate: float
    first_pass_defects: float
    corrections: float
    rework: float
    downstream: float
    total: float
    overhead_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class CostEstimate:
    """Everything the estimate says, plain enough for JSON (see :meth:`to_dict`).

    ``rework``/``downstream``/``total``/``overhead_ratio`` are the expected
    scenario's; ``low``/``high`` hold the same at the Wilson bounds of the sampled
    defect rate. ``total`` is the expected cost of accepting the batch (direct + QA +
    rework + downstream); ``overhead_ratio`` is None when direct cost is zero.
    ``partial`` lists gates that did not run (deselected with ``-k``), whose defects
    the estimate therefore lacks.
    """

    currency: str
    n_labels: int
    unit_price: float  # weighted mean price per label
    direct: float
    qa: float
    rework: float
    downstream: float
    total: float
    overhead_ratio: float | None
    confidence: float
    golden_defects: int | None
    golden_sample: int | None
    deterministic_defects: float
    max_cycles: int
    rework_multiplier: float
    low: Scenario
    expected: Scenario
    high: Scenario
    line_items: tuple[LineItem, ...]
    by_error_type: tuple[Breakdown, ...]
    by_annotator: tuple[Breakdown, ...]
    by_class: tuple[Breakdown, ...]
    patterns: tuple[PricedPattern, ...]
    class_unit_prices: Mapping[str, float] = field(default_factory=dict)
    partial: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def cycle_factor(self) -> float:
        """Expected corrections per first-pass defect."""
        return cycle_factor(self.expected.correction_error_rate, self.max_cycles)

    def correction_cost(self, category: str | None = None) -> float:
        """Expected cost of one defective label of ``category``, re-corrections included.

        The rework list uses it to rank images; it is the unit cost the rework
        line items are built from.
        """
        unit = self.class_unit_prices.get(category, self.unit_price) if category else self.unit_price
        return unit * self.rework_multiplier * self.cycle_factor

    @property
    def shares(self) -> dict[str, float]:
        """Each category's share of the expected total (0 when the total is 0)."""
        t = self.total
        vals = {"direct": self.direct, "qa": self.qa, "rework": self.rework, "downstream": self.downstream}
        return {k: (v / t if t else 0.0) for k, v in vals.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "n_labels": self.n_labels,
            "unit_price": self.unit_price,
            "direct": self.direct,
            "qa": self.qa,
            "rework": self.rework,
            "downstream": self.downstream,
            "total": self.total,
            "overhead_ratio": self.overhead_ratio,
            "confidence": self.confidence,
            "golden_defects": self.golden_defects,
            "golden_sample": self.golden_sample,
            "deterministic_defects": self.deterministic_defects,
            "max_cycles": self.max_cycles,
            "rework_multiplier": self.rework_multiplier,
            "scenarios": {
                "low": self.low.to_dict(),
                "expected": self.expected.to_dict(),
                "high": self.high.to_dict(),
            },
            "line_items": [i.to_dict() for i in self.line_items],
            "by_error_type": [b.to_dict() for b in self.by_error_type],
            "by_annotator": [b.to_dict() for b in self.by_annotator],
            "by_class": [b.to_dict() for b in self.by_class],
            "patterns": [p.to_dict() for p in self.patterns],
            "class_unit_prices": dict(sorted(self.class_unit_prices.items())),
            "partial": list(self.partial),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- estimate, step by step


@dataclass(frozen=True, kw_only=True)
class _Direct:
    unit: float  # mean price per label
    amount: float
    lines: tuple[LineItem, ...]
    class_prices: Mapping[str, float]

    def price_of(self, category: str | None) -> float:
        return self.class_prices.get(category, self.unit) if category else self.unit


def _direct(n_labels: int, params: CostParameters, composition: Composition | None) -> _Direct:
    """Step 1: direct cost. With a composition, the mean price is weighted by it and
    applied to N (so the lines still sum to N x mean price when counts differ from N)."""
    if not composition or sum(composition.values()) <= 0:
        p = params.price_default
        line = LineItem(category="direct", item="labels", quantity=float(n_labels), unit_cost=p, amount=n_labels * p)
        # without the label mix, class prices can still price the corrections
        return _Direct(
            unit=p, amount=n_labels * p, lines=(line,), class_prices={c: params.price(c) for c in params.class_prices}
        )
    scale = n_labels / float(sum(composition.values()))
    lines: list[LineItem] = []
    amount = 0.0
    cls_amount: dict[str, float] = defaultdict(float)
    cls_count: dict[str, float] = defaultdict(float)
    for (cls, typ), cnt in sorted(composition.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        if cnt <= 0:
            continue
        price = params.price(cls, typ)
        q = cnt * scale
        lines.append(
            LineItem(category="direct", item=f"{cls or UNKNOWN} ({typ})", quantity=q, unit_cost=price, amount=q * price)
        )
        amount += q * price
        if cls is not None:
            cls_amount[cls] += cnt * price
            cls_count[cls] += cnt
    unit = amount / n_labels if n_labels else params.price_default
    return _Direct(
        unit=unit,
        amount=unit * n_labels,
        lines=tuple(lines),
        class_prices={c: cls_amount[c] / cls_count[c] for c in cls_amount},
    )


def _rate_interval(sampled: SampledDefects | None, confidence: float) -> tuple[float, float, float]:
    """Step 2: the sampled defect rate with its Wilson interval (0 when nothing was sampled)."""
    if sampled is None or sampled.sample <= 0:
        return 0.0, 0.0, 0.0
    p = sampled.defects / sampled.sample
    lo, hi = wilson_interval(sampled.defects, sampled.sample, confidence)
    return min(lo, p), p, max(hi, p)


@dataclass(frozen=True, kw_only=True)
class _Exact:
    count: float  # exact defective rows (capped at N)
    value: float  # their first-pass value at label price
    scale: float  # < 1 when more defects than labels were reported


def _exact(summary: DefectSummary, n_labels: int, direct: _Direct, notes: list[str]) -> _Exact:
    """Step 3: exact defects, each row once, priced by its class."""
    count = summary.exact_count
    scale = min(1.0, n_labels / count) if count else 1.0
    if count > n_labels:
        notes.append(f"{count:g} exact defects exceed {n_labels} labels; capped")
    value = sum(s.share * scale * direct.price_of(s.category) for s in summary.exact)
    return _Exact(count=count * scale, value=value, scale=scale)


def _scenario(
    d: float,
    *,
    n_labels: int,
    params: CostParameters,
    direct: _Direct,
    qa: float,
    exact: _Exact,
    summary: DefectSummary,
) -> tuple[Scenario, float, list[PricedPattern]]:
    """Step 4: the whole estimate at one sampled defect rate ``d``."""
    rest = max(0.0, n_labels - exact.count)
    sampled = d * rest
    first = exact.count + sampled
    overall = first / n_labels if n_labels else 0.0
    r = params.correction_error_rate if params.correction_error_rate is not None else min(overall, 0.999999)
    factor = cycle_factor(r, params.max_cycles)
    mult = params.rework_multiplier * factor
    rework = (exact.value + sampled * direct.unit) * mult
    priced = [
        PricedPattern(
            gate=gate,
            pattern=pt,
            amount=max(
                params.fixed_remediation,
                params.downstream_multiplier * pt.affected * direct.price_of(pt.category) * mult,
            ),
        )
        for gate, pt in summary.patterns
    ]
    downstream = float(sum(p.amount for p in priced))
    total = direct.amount + qa + rework + downstream
    scenario = Scenario(
        defect_rate=d,
        overall_defect_rate=overall,
        correction_error_rate=r,
        first_pass_defects=first,
        corrections=first * factor,
        rework=rework,
        downstream=downstream,
        total=total,
        overhead_ratio=(qa + rework + downstream) / direct.amount if direct.amount else None,
    )
    return scenario, factor, priced


def _itemise(
    *,
    summary: DefectSummary,
    params: CostParameters,
    direct: _Direct,
    exact: _Exact,
    sampled_expected: float,
    factor: float,
) -> tuple[tuple[Breakdown, ...], tuple[Breakdown, ...], tuple[Breakdown, ...]]:
    """Step 5: the expected rework by error type, by annotator (or cohort) and by class.

    Exact defects go where their rows say. The sampled defects are split by the
    sample's own error types and by each annotator's share of the sampled defects
    (an annotator who made 8 of the 10 golden misses carries 80 % of the sampled rework).
    """
    mult = params.rework_multiplier * factor
    acc: dict[str, dict[str, list[float]]] = {k: defaultdict(lambda: [0.0, 0.0]) for k in ("type", "who", "class")}

    def add(kind: str, key: str, q: float, amount: float) -> None:
        acc[kind][key][0] += q
        acc[kind][key][1] += amount

    for s in summary.exact:
        q = s.share * exact.scale
        amount = q * direct.price_of(s.category) * mult
        add("type", s.error_type, q, amount)
        add("who", params.cohort(s.annotator), q, amount)
        add("class", s.category or UNKNOWN, q, amount)
    sample = summary.sampled
    if sampled_expected > 0 and sample is not None:
        amount_per = direct.unit * mult
        types: dict[str, float] = {k: float(v) for k, v in sample.by_type.items() if v > 0} or {
            "sampled": float(sample.defects)
        }
        tot = sum(types.values())
        for k, v in types.items():
            add("type", k, sampled_expected * v / tot, sampled_expected * v / tot * amount_per)
        who: dict[str, float] = defaultdict(float)
        for name, (defects, _n) in sample.by_annotator.items():
            who[params.cohort(name)] += defects
        if not sum(who.values()):
            who = defaultdict(float, {UNKNOWN: 1.0})
        tot_w = sum(who.values())
        for k, v in who.items():
            add("who", k, sampled_expected * v / tot_w, sampled_expected * v / tot_w * amount_per)
        add("class", "(sampled)", sampled_expected, sampled_expected * amount_per)

    def breakdown(d: Mapping[str, list[float]]) -> tuple[Breakdown, ...]:
        items = [Breakdown(key=k, defects=v[0], corrections=v[0] * factor, amount=v[1]) for k, v in d.items()]
        return tuple(sorted(items, key=lambda b: (-b.amount, b.key)))

    return breakdown(acc["type"]), breakdown(acc["who"]), breakdown(acc["class"])


def estimate_cost(
    *,
    n_labels: int,
    results: Sequence[GateResult],
    params: CostParameters | Mapping[str, Any] | None = None,
    composition: Composition | None = None,
    not_run: Iterable[str] = (),
) -> CostEstimate:
    """The rework-cost estimate of one batch of ``n_labels`` labels.

    Reads only each result's typed :class:`~annogate.defects.CostFacts`
    (``GateResult.cost``); ``composition`` ((class, type) -> count, see
    :func:`composition_from_batch`) enables per-class/per-type prices; ``not_run``
    names gates that were deselected, so the estimate says it is partial.
    """
    if n_labels < 0:
        raise ValueError(f"n_labels must be >= 0, got {n_labels}")
    p = params if isinstance(params, CostParameters) else CostParameters.from_rules(params)
    notes: list[str] = []
    partial = tuple(sorted(set(not_run)))
    if partial:
        notes.append(f"partial estimate: {', '.join(partial)} did not run, their defects are not counted")
    if (p.class_prices or p.type_prices) and not composition:
        notes.append("label mix unknown: direct cost uses the default price per label")

    direct = _direct(n_labels, p, composition)
    qa = p.qa_fraction * direct.amount
    summary = summarise((r.gate, _facts(r)) for r in results if r.verdict != "skipped")
    notes.extend(summary.notes)
    if summary.sampled is None:
        notes.append("no sampled (golden-set) measurement: only exact defects are counted")
    d_low, d_exp, d_high = _rate_interval(summary.sampled, p.confidence)
    exact = _exact(summary, n_labels, direct, notes)

    def at(d: float) -> tuple[Scenario, float, list[PricedPattern]]:
        return _scenario(d, n_labels=n_labels, params=p, direct=direct, qa=qa, exact=exact, summary=summary)

    low, _, _ = at(d_low)
    exp, factor, priced = at(d_exp)
    high, _, _ = at(d_high)
    by_type, by_who, by_class = _itemise(
        summary=summary,
        params=p,
        direct=direct,
        exact=exact,
        sampled_expected=d_exp * max(0.0, n_labels - exact.count),
        factor=factor,
    )

    lines: list[LineItem] = list(direct.lines)
    lines.append(
        LineItem(
            category="qa",
            item=f"review at {p.qa_fraction:.0%} of direct",
            quantity=p.qa_fraction,
            unit_cost=direct.amount,
            amount=qa,
        )
    )
    lines.extend(
        LineItem(
            category="rework",
            item=b.key,
            quantity=b.corrections,
            unit_cost=b.amount / b.corrections if b.corrections else 0.0,
            amount=b.amount,
        )
        for b in by_type
    )
    lines.extend(
        LineItem(
            category="downstream",
            item=pp.key,
            quantity=pp.pattern.affected,
            unit_cost=pp.amount / pp.pattern.affected if pp.pattern.affected else pp.amount,
            amount=pp.amount,
        )
        for pp in priced
    )
    return CostEstimate(
        currency=p.currency,
        n_labels=n_labels,
        unit_price=direct.unit,
        direct=direct.amount,
        qa=qa,
        rework=exp.rework,
        downstream=exp.downstream,
        total=exp.total,
        overhead_ratio=exp.overhead_ratio,
        confidence=p.confidence,
        golden_defects=None if summary.sampled is None else summary.sampled.defects,
        golden_sample=None if summary.sampled is None else summary.sampled.sample,
        deterministic_defects=exact.count,
        max_cycles=p.max_cycles,
        rework_multiplier=p.rework_multiplier,
        low=low,
        expected=exp,
        high=high,
        line_items=tuple(lines),
        by_error_type=by_type,
        by_annotator=by_who,
        by_class=by_class,
        patterns=tuple(priced),
        class_unit_prices=dict(direct.class_prices),
        partial=partial,
        notes=tuple(notes),
    )


def _facts(result: GateResult) -> CostFacts | None:
    facts = getattr(result, "cost", None)
    return facts if isinstance(facts, CostFacts) else None
