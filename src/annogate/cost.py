"""The rework-cost estimate: what accepting a batch would cost, in money.

Why a cost model in a gate: a failing threshold says *that* a batch is bad; the
team that pays for labels needs to know *how much* the defects will cost before
they reach training. Price per label hides QA review, rework cycles (corrections
carry errors of their own) and downstream remediation of systematic errors that
review does not catch. This module turns gate results into those four figures.

Pure: inputs are the number of labels, a list of :class:`GateResult` and the
``[tool.annogate.cost]`` rules section; no pytest, no I/O.

The model
---------
* **Direct** = labels x price per label (the price may depend on class and
  annotation type; with a label mix, the weighted mean price is used).
* **QA review** = ``qa_fraction`` x direct.
* **Rework**. First-pass defects ``F = D + d * (N - D)``: ``D`` are the
  *deterministic* defects (error-level findings of the ``schema`` and ``geometry``
  gates, counted exactly once per annotation: they are known rows, not a sample)
  and ``d`` is the defect rate measured on the golden set, extrapolated to the
  rows not already known defective, with a Wilson interval (low / expected /
  high). Each correction is wrong again with probability ``r``
  (``correction_error_rate``; default the measured rate ``F / N``), so the
  expected corrections are ``F * (1 + r + ... + r**(max_cycles - 1))``, each
  costing ``price x rework_multiplier``.
* **Downstream** remediation, per *systematic pattern* (see
  :func:`systematic_patterns`): ``max(retrain_cost + engineer_hours x
  hourly_rate, downstream_multiplier x the pattern's rework cost)``.
* **Overhead ratio** = (QA + rework + downstream) / direct.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from annogate.findings import Finding, GateResult, ThresholdCheck
from annogate.model import SEG_POLYGON, SEG_RLE, Batch
from annogate.stats import wilson_interval

__all__ = [
    "ANNOTATION_TYPES",
    "DETERMINISTIC_GATES",
    "RULES_SCHEMA",
    "SYSTEMATIC_GATES",
    "UNKNOWN",
    "Breakdown",
    "CostEstimate",
    "CostParameters",
    "GoldenCounts",
    "LineItem",
    "Scenario",
    "SystematicPattern",
    "composition_from_batch",
    "cycle_factor",
    "deterministic_defects",
    "estimate_cost",
    "expected_corrections",
    "golden_counts",
    "systematic_patterns",
]

#: Gates whose findings are exact, known defective rows (not a sample).
DETERMINISTIC_GATES: tuple[str, ...] = ("schema", "geometry")
#: Gates whose failed checks may mark a systematic pattern.
SYSTEMATIC_GATES: tuple[str, ...] = ("golden", "confusion")
#: Annotation types a price can be given for.
ANNOTATION_TYPES: tuple[str, ...] = ("bbox", "polygon", "mask", "keypoints")
#: Key used for findings without an annotator / class.
UNKNOWN = "(unknown)"

Category = Literal["direct", "qa", "rework", "downstream"]

_MONEY: dict[str, Any] = {"type": "number", "minimum": 0}
_TYPE_PRICES: dict[str, Any] = {t: _MONEY for t in ANNOTATION_TYPES}

#: JSON Schema of ``[tool.annogate.cost]``; unknown keys are usage errors.
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The rework-cost model (annogate.cost).",
    "additionalProperties": False,
    "properties": {
        "currency": {"type": "string", "minLength": 1, "default": "USD"},
        "price_per_label": {
            "description": "One price, or a table: default, per annotation type, per class "
            "(a number, or per-type prices for that class).",
            "default": 0.05,
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
        "qa_fraction": {"type": "number", "minimum": 0, "default": 0.20},
        "rework_multiplier": {"type": "number", "minimum": 0, "default": 1.0},
        "correction_error_rate": {
            "description": "Probability that a correction is wrong again; default: the measured defect rate.",
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
        },
        "max_cycles": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 2},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.95},
        "cohorts": {
            "description": "Annotator name -> cohort (vendor, team); itemise by cohort instead of person.",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "downstream": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "retrain_cost": {**_MONEY, "default": 0.0},
                "engineer_hours": {"type": "number", "minimum": 0, "default": 0.0},
                "hourly_rate": {**_MONEY, "default": 0.0},
                "downstream_multiplier": {"type": "number", "minimum": 0, "default": 10.0},
            },
        },
    },
}


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, kw_only=True)
class CostParameters:
    """The cost rules with defaults applied.

    Defaults and why:

    * ``price_per_label = 0.05``: a typical vendor price for a bounding box; set it.
    * ``qa_fraction = 0.20``: QA review runs at 15-25 % of direct cost.
    * ``rework_multiplier = 1.0``: a correction reopens the image, finds the object
      and redraws it, about the work of the original label; vendors that bill
      corrections at a premium (or free) set it.
    * ``max_cycles = 2``: a correction and the correction of that correction; later
      cycles are negligible at realistic error rates.
    * ``downstream_multiplier = 10``: the "1-10-100" rule of data quality, an error
      found after it was used costs about ten times its correction at the source.
      ``retrain_cost``, ``engineer_hours`` and ``hourly_rate`` default to 0 because
      only the team knows them.
    """

    currency: str = "USD"
    price_default: float = 0.05
    type_prices: Mapping[str, float] = field(default_factory=dict)
    class_prices: Mapping[str, float | Mapping[str, float]] = field(default_factory=dict)
    qa_fraction: float = 0.20
    rework_multiplier: float = 1.0
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
        """Parameters from a ``[tool.annogate.cost]`` mapping (validated by the loader)."""
        s = dict(section or {})
        price = s.get("price_per_label", 0.05)
        if isinstance(price, Mapping):
            default = float(price.get("default", 0.05))
            types = {t: float(price[t]) for t in ANNOTATION_TYPES if t in price}
            classes: dict[str, float | Mapping[str, float]] = {}
            for name, v in dict(price.get("classes", {})).items():
                classes[str(name)] = {str(k): float(x) for k, x in v.items()} if isinstance(v, Mapping) else float(v)
        else:
            default, types, classes = float(price), {}, {}
        down = dict(s.get("downstream", {}))
        r = s.get("correction_error_rate")
        return cls(
            currency=str(s.get("currency", "USD")),
            price_default=default,
            type_prices=types,
            class_prices=classes,
            qa_fraction=float(s.get("qa_fraction", 0.20)),
            rework_multiplier=float(s.get("rework_multiplier", 1.0)),
            correction_error_rate=None if r is None else float(r),
            max_cycles=int(s.get("max_cycles", 2)),
            confidence=float(s.get("confidence", 0.95)),
            cohorts={str(k): str(v) for k, v in dict(s.get("cohorts", {})).items()},
            retrain_cost=float(down.get("retrain_cost", 0.0)),
            engineer_hours=float(down.get("engineer_hours", 0.0)),
            hourly_rate=float(down.get("hourly_rate", 0.0)),
            downstream_multiplier=float(down.get("downstream_multiplier", 10.0)),
        )

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type_prices"] = dict(self.type_prices)
        d["class_prices"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.class_prices.items()}
        d["cohorts"] = dict(self.cohorts)
        return d


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


@dataclass(frozen=True, kw_only=True)
class GoldenCounts:
    """Defects found on the golden (honeypot) sample, and the sample size.

    ``by_type`` splits ``defects`` by error type (``extra``, ``missing``,
    ``mislabelled``) when the golden gate reports it.
    """

    defects: int
    sample: int
    by_type: Mapping[str, int] = field(default_factory=dict)


_GOLDEN_TYPES = ("mislabelled", "missing", "extra")


def golden_counts(results: Iterable[GateResult], gate: str = "golden") -> GoldenCounts | None:
    """Extract the golden-set defect count and sample size from the golden gate's result.

    Expected shape of ``GateResult.metrics`` (the golden gate's; extra keys ignored)::

        {"overall": {"tp": 940, "mislabelled": 20, "missing": 25, "extra": 15,
                     "golden_objects": 985}}

    Defects = mislabelled + missing + extra; the sample is the accuracy denominator
    ``tp + mislabelled + missing + extra`` (so ``d = 1 - accuracy``). When ``tp`` is
    absent, ``golden_objects + extra`` is used (golden objects are tp, mislabelled
    or missing). Explicit ``{"defects": k, "sample": n}`` in ``overall`` wins.
    Returns None when there is no golden result, it was skipped, or the shape is
    not recognised: then no sampled rate is extrapolated.
    """
    for res in results:
        if res.gate != gate or res.verdict == "skipped":
            continue
        overall = res.metrics.get("overall")
        if not isinstance(overall, Mapping):
            return None

        def num(key: str, overall: Mapping[str, Any] = overall) -> int | None:
            v = overall.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                return None
            f = float(v)
            return round(f) if math.isfinite(f) and f >= 0 else None

        if num("defects") is not None and num("sample") is not None:
            d, n = num("defects"), num("sample")
            assert d is not None and n is not None
            return GoldenCounts(defects=min(d, n), sample=n)
        parts = {k: num(k) for k in _GOLDEN_TYPES}
        if any(v is None for v in parts.values()):
            return None
        by_type = {k: int(v) for k, v in parts.items() if v is not None}
        defects = sum(by_type.values())
        tp, objects = num("tp"), num("golden_objects")
        if tp is not None:
            sample = tp + defects
        elif objects is not None:
            sample = objects + by_type["extra"]
        else:
            return None
        if sample <= 0:
            return None
        return GoldenCounts(defects=min(defects, sample), sample=sample, by_type=by_type)
    return None


@dataclass(frozen=True, kw_only=True)
class SystematicPattern:
    """A defect pattern that QA review would not catch, fixed only after training.

    ``affected`` is the number of labels the pattern spoils (it prices the
    multiple-of-rework alternative); ``checks`` are the failed checks behind it.
    """

    gate: str
    kind: Literal["drift", "confusion"]
    scope: str
    affected: float
    checks: tuple[ThresholdCheck, ...] = ()
    category: str | None = None

    @property
    def key(self) -> str:
        return f"{self.gate}:{self.kind}:{self.scope}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "kind": self.kind,
            "scope": self.scope,
            "category": self.category,
            "affected": self.affected,
            "checks": [c.to_dict() for c in self.checks],
        }


def _class_count(scope: str, composition: Composition | None, n_labels: int) -> tuple[str | None, float]:
    """(class, label count) a scope covers: ``overall`` is N, ``class:X`` X's count (N if unknown)."""
    if scope.startswith("class:"):
        name = scope[len("class:") :]
        if composition:
            return name, float(sum(c for (k, _), c in composition.items() if k == name))
        return name, float(n_labels)
    return None, float(n_labels)


def systematic_patterns(
    results: Iterable[GateResult],
    *,
    n_labels: int,
    composition: Composition | None = None,
) -> list[SystematicPattern]:
    """Systematic patterns: failed error-level checks of the golden/confusion gates.

    Definition (the only inputs that mark a pattern):

    * **drift**: a failed check of a gate in :data:`SYSTEMATIC_GATES` whose
      ``metric`` starts with ``"drift"`` (boundary drift beyond tolerance). All
      drift checks of one scope (e.g. the four edges of ``class:person``) are one
      pattern: one retrain fixes them together. It spoils every label in its scope.
    * **confusion**: a failed check of such a gate whose ``metric`` starts with
      ``"pair"`` or whose ``scope`` starts with ``"pair:"`` (a concentrated class
      confusion, scope ``pair:a->b``). One pattern per pair; its value is the rate
      at which golden class ``a`` is labelled ``b`` (a value above 1 is taken as a
      count), so it spoils ``count(a) x rate`` labels.

    Patterns are returned sorted by key, so estimates are deterministic.
    """
    grouped: dict[tuple[str, str, str], list[ThresholdCheck]] = defaultdict(list)
    for res in results:
        if res.gate not in SYSTEMATIC_GATES:
            continue
        for c in res.failed_checks:
            if c.metric.startswith("drift"):
                grouped[(res.gate, "drift", c.scope)].append(c)
            elif c.metric.startswith("pair") or c.scope.startswith("pair:"):
                scope = c.scope if c.scope.startswith("pair:") else c.metric
                grouped[(res.gate, "confusion", scope)].append(c)
    out: list[SystematicPattern] = []
    for (gate, kind, scope), checks in sorted(grouped.items()):
        if kind == "drift":
            cls, affected = _class_count(scope, composition, n_labels)
            out.append(
                SystematicPattern(
                    gate=gate, kind="drift", scope=scope, affected=affected, checks=tuple(checks), category=cls
                )
            )
        else:
            pair = scope.split(":", 1)[1] if ":" in scope else scope
            src = pair.split("->", 1)[0] if "->" in pair else None
            _, base = _class_count(f"class:{src}", composition, n_labels) if src else (None, float(n_labels))
            value = max(abs(c.value) for c in checks)
            affected = value if value > 1.0 else base * value
            out.append(
                SystematicPattern(
                    gate=gate, kind="confusion", scope=scope, affected=affected, checks=tuple(checks), category=src
                )
            )
    return out


def deterministic_defects(results: Iterable[GateResult]) -> list[tuple[Finding, float]]:
    """Error-level findings of the deterministic gates, each with its share of a correction.

    An annotation with k findings (a tiny box that is also outside the image) is
    one correction, split 1/k over its findings so that itemisation by error type
    adds up to the total. Findings without an annotation id each count as one.
    Warnings are not defects: the rules chose to tolerate them.
    """
    findings = [f for r in results if r.gate in DETERMINISTIC_GATES for f in r.findings if f.severity == "error"]
    per_ann: dict[tuple[str, int], int] = defaultdict(int)
    for f in findings:
        if f.annotation_id is not None:
            per_ann[(f.file, f.annotation_id)] += 1
    return [(f, 1.0 / per_ann[(f.file, f.annotation_id)] if f.annotation_id is not None else 1.0) for f in findings]


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
    """Expected rework attributed to one error type or one annotator (cohort)."""

    key: str
    defects: float  # first-pass defects (expected)
    corrections: float  # including re-corrections
    amount: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """The estimate at one defect rate (low / expected / high of the Wilson interval)."""

    defect_rate: float  # sampled rate d used for the rows not known defective
    overall_defect_rate: float  # F / N, deterministic defects included
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
    scenario's; ``low``/``high`` hold the same at the Wilson bounds of the golden
    defect rate. ``overhead_ratio`` is None when direct cost is zero.
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
    patterns: tuple[SystematicPattern, ...]
    class_unit_prices: Mapping[str, float] = field(default_factory=dict)
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
            "patterns": [p.to_dict() for p in self.patterns],
            "class_unit_prices": dict(sorted(self.class_unit_prices.items())),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- estimate


def _direct_lines(
    n_labels: int, params: CostParameters, composition: Composition | None
) -> tuple[float, list[LineItem], dict[str, float]]:
    """Mean unit price, direct line items, and per-class mean prices.

    With a composition, the mean price is weighted by it and applied to N (so the
    lines still sum to N x mean price when the composition counts differ from N).
    """
    if not composition or sum(composition.values()) <= 0:
        p = params.price_default
        # Without the label mix, class prices can still price the corrections.
        known = {c: params.price(c) for c in params.class_prices}
        return (
            p,
            [LineItem(category="direct", item="labels", quantity=float(n_labels), unit_cost=p, amount=n_labels * p)],
            known,
        )
    total = float(sum(composition.values()))
    scale = n_labels / total
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
    mean = amount / n_labels if n_labels else params.price_default
    return mean, lines, {c: cls_amount[c] / cls_count[c] for c in cls_amount}


def _interval(golden: GoldenCounts | None, confidence: float) -> tuple[float, float, float]:
    if golden is None or golden.sample <= 0:
        return 0.0, 0.0, 0.0
    p = golden.defects / golden.sample
    lo, hi = wilson_interval(golden.defects, golden.sample, confidence)
    return min(lo, p), p, max(hi, p)


def estimate_cost(
    *,
    n_labels: int,
    results: Sequence[GateResult],
    params: CostParameters | Mapping[str, Any] | None = None,
    golden_defects: int | None = None,
    golden_sample: int | None = None,
    composition: Composition | None = None,
    patterns: Sequence[SystematicPattern] | None = None,
) -> CostEstimate:
    """The rework-cost estimate of one batch of ``n_labels`` labels.

    ``golden_defects``/``golden_sample`` override what :func:`golden_counts`
    extracts from ``results``; ``patterns`` override :func:`systematic_patterns`;
    ``composition`` ((class, type) -> count, see :func:`composition_from_batch`)
    enables per-class/per-type prices. Everything else comes from ``results``.
    """
    if n_labels < 0:
        raise ValueError(f"n_labels must be >= 0, got {n_labels}")
    p = params if isinstance(params, CostParameters) else CostParameters.from_rules(params)
    notes: list[str] = []
    if (p.class_prices or p.type_prices) and not composition:
        notes.append("label mix unknown: direct cost uses the default price per label")

    unit, direct_lines, class_prices = _direct_lines(n_labels, p, composition)
    direct = unit * n_labels
    qa = p.qa_fraction * direct

    # Golden sample: explicit counts win over the extracted ones.
    extracted = golden_counts(results)
    golden: GoldenCounts | None
    if golden_defects is not None and golden_sample is not None:
        if not 0 <= golden_defects <= golden_sample:
            raise ValueError("need 0 <= golden_defects <= golden_sample")
        by_type = extracted.by_type if extracted and sum(extracted.by_type.values()) == golden_defects else {}
        golden = (
            GoldenCounts(defects=golden_defects, sample=golden_sample, by_type=by_type) if golden_sample > 0 else None
        )
    else:
        golden = extracted
    if golden is None:
        notes.append("no golden-set measurement: only deterministic defects are counted")
    d_low, d_exp, d_high = _interval(golden, p.confidence)

    # Deterministic defects: exact, priced by their class.
    det = deterministic_defects(results)
    det_count = float(sum(w for _, w in det))
    if det_count > n_labels:
        notes.append(f"{det_count:g} deterministic defects exceed {n_labels} labels; capped")
    det_scale = min(1.0, n_labels / det_count) if det_count else 1.0
    det_count *= det_scale

    def cls_price(cat: str | None) -> float:
        return class_prices.get(cat, unit) if cat else unit

    det_value = sum(w * det_scale * cls_price(f.category) for f, w in det)  # first-pass, at label price
    rest = max(0.0, n_labels - det_count)

    pats = (
        list(patterns)
        if patterns is not None
        else systematic_patterns(results, n_labels=n_labels, composition=composition)
    )
    if composition is None and any(pt.scope.startswith("class:") or pt.kind == "confusion" for pt in pats):
        notes.append("class counts unknown: class-scoped patterns are assumed to cover all labels")

    def scenario(d: float) -> tuple[Scenario, float, list[tuple[SystematicPattern, float]]]:
        sampled = d * rest
        first = det_count + sampled
        overall = first / n_labels if n_labels else 0.0
        r = p.correction_error_rate if p.correction_error_rate is not None else min(overall, 0.999999)
        factor = cycle_factor(r, p.max_cycles)
        rework = (det_value + sampled * unit) * p.rework_multiplier * factor
        pat_costs = [
            (
                pt,
                max(
                    p.fixed_remediation,
                    p.downstream_multiplier * pt.affected * cls_price(pt.category) * p.rework_multiplier * factor,
                ),
            )
            for pt in pats
        ]
        downstream = float(sum(c for _, c in pat_costs))
        total = direct + qa + rework + downstream
        return (
            Scenario(
                defect_rate=d,
                overall_defect_rate=overall,
                correction_error_rate=r,
                first_pass_defects=first,
                corrections=first * factor,
                rework=rework,
                downstream=downstream,
                total=total,
                overhead_ratio=(qa + rework + downstream) / direct if direct else None,
            ),
            factor,
            pat_costs,
        )

    low, _, _ = scenario(d_low)
    exp, factor, pat_costs = scenario(d_exp)
    high, _, _ = scenario(d_high)

    # Itemisation of the expected rework: by error type and by annotator (cohort).
    mult = p.rework_multiplier * factor
    by_rule: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # defects, amount
    by_who: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def who(name: str | None) -> str:
        return p.cohorts.get(name, name) if name else UNKNOWN

    for f, w in det:
        q = w * det_scale
        amt = q * cls_price(f.category) * mult
        for acc, key in ((by_rule, f.rule), (by_who, who(f.annotator))):
            acc[key][0] += q
            acc[key][1] += amt
    sampled_exp = d_exp * rest
    if sampled_exp > 0 and golden is not None:
        types = {k: v for k, v in golden.by_type.items() if v > 0} or {"golden_sample": golden.defects}
        tot = sum(types.values())
        for k, v in types.items():
            by_rule[k][0] += sampled_exp * v / tot
            by_rule[k][1] += sampled_exp * v / tot * unit * mult
        gold_findings = [f for r in results if r.gate == "golden" for f in r.findings if f.severity == "error"]
        names: dict[str, int] = defaultdict(int)
        for f in gold_findings:
            names[who(f.annotator)] += 1
        if not names:
            names[UNKNOWN] = 1
        tot_n = sum(names.values())
        for k, c in names.items():
            by_who[k][0] += sampled_exp * c / tot_n
            by_who[k][1] += sampled_exp * c / tot_n * unit * mult

    def breakdown(acc: Mapping[str, list[float]]) -> tuple[Breakdown, ...]:
        items = [Breakdown(key=k, defects=v[0], corrections=v[0] * factor, amount=v[1]) for k, v in acc.items()]
        return tuple(sorted(items, key=lambda b: (-b.amount, b.key)))

    by_error_type = breakdown(by_rule)
    by_annotator = breakdown(by_who)

    lines: list[LineItem] = list(direct_lines)
    lines.append(
        LineItem(
            category="qa",
            item=f"review at {p.qa_fraction:.0%} of direct",
            quantity=p.qa_fraction,
            unit_cost=direct,
            amount=qa,
        )
    )
    for b in by_error_type:
        lines.append(
            LineItem(
                category="rework",
                item=b.key,
                quantity=b.corrections,
                unit_cost=b.amount / b.corrections if b.corrections else 0.0,
                amount=b.amount,
            )
        )
    for pt, pc in pat_costs:
        lines.append(LineItem(category="downstream", item=pt.key, quantity=1.0, unit_cost=pc, amount=pc))

    return CostEstimate(
        currency=p.currency,
        n_labels=n_labels,
        unit_price=unit,
        direct=direct,
        qa=qa,
        rework=exp.rework,
        downstream=exp.downstream,
        total=exp.total,
        overhead_ratio=exp.overhead_ratio,
        confidence=p.confidence,
        golden_defects=golden.defects if golden else None,
        golden_sample=golden.sample if golden else None,
        deterministic_defects=det_count,
        max_cycles=p.max_cycles,
        rework_multiplier=p.rework_multiplier,
        low=low,
        expected=exp,
        high=high,
        line_items=tuple(lines),
        by_error_type=by_error_type,
        by_annotator=by_annotator,
        patterns=tuple(pats),
        class_unit_prices=class_prices,
        notes=tuple(notes),
    )
