"""What a gate returns: findings (one per wrong label) and threshold checks.

Kept free of pytest and of any format: the pytest adapter, the cost model and
every report read only these types, so a new gate or report needs nothing else.
All values are plain Python (str, int, float) so a result pickles and serialises
to JSON unchanged, which pytest-xdist needs to ship results to the controller.

Bounded by construction (issue 8: 300,000 defects once took 3.1 GB, a 256 KB class
name on 2,000 bad boxes a 1 GB report): every :class:`Finding` cuts its strings to
a fixed length when it is made, whatever gate makes it, and a gate keeps at most
``max_findings_per_rule`` findings per rule (:class:`FindingLog`) while counting
every defect (:class:`Tally`), so thresholds and reports see exact totals and the
memory a result takes does not grow with the number of defects.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from annogate.defects import CostFacts
from annogate.model import Batch

__all__ = [
    "DEFAULT_MAX_FINDINGS_PER_RULE",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "Finding",
    "FindingLog",
    "GateResult",
    "Severity",
    "Tally",
    "ThresholdCheck",
    "Verdict",
    "bound_text",
    "cap_findings",
    "findings_for_rows",
]

Severity = Literal["error", "warning"]
Verdict = Literal["passed", "failed", "skipped"]

#: Longest name (class, image, annotator, gate, rule) a finding keeps. Names come from
#: the batch, so an attacker picks their length; 200 chars identify any real one.
MAX_NAME_CHARS = 200
#: Longest message, file path or pointer a finding keeps: these are built by gates and
#: may quote names, so they get room for a few names plus the figures.
MAX_TEXT_CHARS = 1000
#: Findings kept per (gate, rule) unless the rules say otherwise; the rest are counted.
DEFAULT_MAX_FINDINGS_PER_RULE = 1000

_NAME_FIELDS = ("gate", "rule", "image", "category", "annotator")
_TEXT_FIELDS = ("message", "file", "pointer")


def bound_text(s: str, limit: int = MAX_NAME_CHARS) -> str:
    """``s`` if it has at most ``limit`` chars, else its head and its full length.

    The result has at most ``limit`` chars; the length stays visible (``"nnn… (262144 chars)"``) so a reader knows the name was
    cut, not that the source holds an odd short name. Nothing is escaped here: reports
    escape for their medium (terminal, HTML, GitHub annotations).
    """
    s = str(s)
    if len(s) <= limit:
        return s
    tail = f"… ({len(s)} chars)"
    # the cut string is exactly ``limit`` long, so cutting it again leaves it unchanged
    return s[: max(0, limit - len(tail))] + tail


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One wrong label: where it is, what rule it breaks, and by how much."""

    gate: str
    rule: str
    message: str
    file: str
    line: int | None = None
    pointer: str | None = None
    annotation_id: int | None = None
    image: str | None = None
    category: str | None = None
    annotator: str | None = None
    severity: Severity = "error"
    value: float | None = None

    def __post_init__(self) -> None:
        # The one place every finding passes (gates, the engine, from_dict): a long
        # string is cut here, so no gate can put a megabyte name into a report. The
        # common case costs a type check and a len() per field.
        for name in _NAME_FIELDS:
            v = getattr(self, name)
            if isinstance(v, str) and len(v) > MAX_NAME_CHARS:
                object.__setattr__(self, name, bound_text(v, MAX_NAME_CHARS))
        for name in _TEXT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, str) and len(v) > MAX_TEXT_CHARS:
                object.__setattr__(self, name, bound_text(v, MAX_TEXT_CHARS))

    def location(self) -> str:
        """``file:line`` as editors and CI annotations understand it."""
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class ThresholdCheck:
    """One measured figure against one limit from the rules.

    ``scope`` says what the figure covers: ``"overall"``, ``"class:person"``,
    ``"pair:cyclist->pedestrian"``, ``"annotator:alice"``...
    """

    metric: str
    scope: str
    value: float
    limit: float
    op: Literal["<=", ">="]
    severity: Severity = "error"

    @property
    def passed(self) -> bool:
        if self.value != self.value:  # nan: nothing measured, nothing violated
            return True
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


@dataclass(kw_only=True)
class GateResult:
    """Everything one gate concluded about one batch."""

    gate: str
    verdict: Verdict
    population: int = 0
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[ThresholdCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tables: dict[str, list[list[Any]]] = field(default_factory=dict)
    # What the gate contributes to the cost estimate (exact defective rows, a sampled
    # defect count, systematic patterns): the typed seam the cost model reads.
    cost: CostFacts | None = None
    # rule -> how many findings the gate made, including those not kept in ``findings``
    # (at most max_findings_per_rule are kept per rule). Empty: ``findings`` is complete.
    finding_counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[ThresholdCheck]:
        return [c for c in self.checks if not c.passed and c.severity == "error"]

    def counts_by_rule(self) -> Counter[str]:
        """Findings per rule, all of them: those kept and those only counted."""
        c = Counter(f.rule for f in self.findings)
        for rule, n in self.finding_counts.items():
            if n > c[rule]:
                c[rule] = n
        return c

    @property
    def findings_dropped(self) -> int:
        """Findings counted but not kept (over the per-rule cap)."""
        return sum(self.counts_by_rule().values()) - len(self.findings)

    @classmethod
    def from_checks(
        cls,
        *,
        gate: str,
        population: int,
        checks: Sequence[ThresholdCheck],
        findings: Sequence[Finding],
        metrics: Mapping[str, Any] | None = None,
        tables: Mapping[str, list[list[Any]]] | None = None,
        cost: CostFacts | None = None,
        finding_counts: Mapping[str, int] | None = None,
        max_findings_per_rule: int = DEFAULT_MAX_FINDINGS_PER_RULE,
    ) -> GateResult:
        """A result whose verdict follows from its checks: failed iff an error-level check fails.

        ``findings`` are capped at ``max_findings_per_rule`` per rule here too, so a gate
        that built every finding still hands on a bounded result; ``finding_counts``
        (from a :class:`FindingLog`) carries totals of findings never built.
        """
        failed = any(not c.passed and c.severity == "error" for c in checks)
        kept, counts = cap_findings(findings, max_findings_per_rule)
        for rule, n in (finding_counts or {}).items():
            counts[rule] = max(counts.get(rule, 0), int(n))
        return cls(
            gate=gate,
            verdict="failed" if failed else "passed",
            population=population,
            metrics=dict(metrics or {}),
            checks=list(checks),
            findings=kept,
            tables=dict(tables or {}),
            cost=cost,
            finding_counts=counts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "verdict": self.verdict,
            "population": self.population,
            "reason": self.reason,
            "metrics": _jsonable(self.metrics),
            "checks": [_jsonable(c.to_dict()) for c in self.checks],
            "findings": [f.to_dict() for f in self.findings],
            "tables": _jsonable(self.tables),
            "cost": None if self.cost is None else _jsonable(self.cost.to_dict()),
            "finding_counts": dict(self.finding_counts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateResult:
        """Inverse of :meth:`to_dict` (how xdist workers ship results to the controller)."""
        return cls(
            gate=d["gate"],
            verdict=d["verdict"],
            population=int(d.get("population", 0)),
            reason=d.get("reason", ""),
            metrics=dict(d.get("metrics", {})),
            checks=[
                ThresholdCheck(
                    **{k: v for k, v in c.items() if k != "passed"}
                    | {"value": float("nan") if c["value"] is None else c["value"]}
                )
                for c in d.get("checks", [])
            ],
            findings=[Finding(**f) for f in d.get("findings", [])],
            tables=dict(d.get("tables", {})),
            cost=CostFacts.from_dict(d.get("cost")),
            finding_counts={str(k): int(v) for k, v in dict(d.get("finding_counts") or {}).items()},
        )


def _jsonable(obj: Any) -> Any:
    """NumPy scalars/arrays to plain Python, recursively (for JSON and xdist)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def cap_findings(findings: Iterable[Finding], max_per_rule: int) -> tuple[list[Finding], dict[str, int]]:
    """The first ``max_per_rule`` findings of each rule, in order, and every rule's total."""
    kept: list[Finding] = []
    counts: dict[str, int] = {}
    for f in findings:
        n = counts.get(f.rule, 0)
        counts[f.rule] = n + 1
        if n < max_per_rule:
            kept.append(f)
    return kept, counts


@dataclass(kw_only=True, slots=True)
class Tally:
    """Every defect a gate found, counted per rule and per (rule, class).

    What threshold checks count (:func:`annogate.thresholds.error_type_checks`), so a
    limit is judged on all defects, not on the findings kept. Class names are the
    batch's own (not cut), so a ``per_class`` limit on a long class name still matches.
    """

    by_rule: Counter[str] = field(default_factory=Counter)
    by_rule_class: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> Tally:
        t = cls()
        for f in findings:
            t.add(f.rule, f.category)
        return t

    def add(self, rule: str, category: str | None, n: int = 1) -> None:
        self.by_rule[rule] += n
        self.by_rule_class[(rule, category)] += n

    def add_rows(self, batch: Batch, rule: str, rows: npt.NDArray[np.int64]) -> None:
        """Count annotation ``rows`` under ``rule``, per class, vectorised."""
        if rows.size == 0:
            return
        self.by_rule[rule] += int(rows.size)
        codes, n = np.unique(batch.annotations.category[rows], return_counts=True)
        names = batch.categories.name
        for c, k in zip(codes.tolist(), n.tolist(), strict=True):
            self.by_rule_class[(rule, str(names[c]) if c >= 0 else None)] += int(k)


class FindingLog:
    """A gate's findings with at most ``max_per_rule`` kept per rule, every one counted.

    Gates add a whole rule's failing rows at once (:meth:`add_rows`); only the rows
    still under the cap become :class:`Finding` objects, the rest are only counted in
    :attr:`tally`, so a batch with a million defects costs a few thousand findings.
    """

    __slots__ = ("_kept", "findings", "max_per_rule", "rows", "tally")

    def __init__(self, *, max_per_rule: int = DEFAULT_MAX_FINDINGS_PER_RULE) -> None:
        if max_per_rule < 0:
            raise ValueError(f"max_per_rule must be >= 0, got {max_per_rule}")
        self.max_per_rule = max_per_rule
        self.findings: list[Finding] = []
        self.tally = Tally()
        self._kept: Counter[str] = Counter()
        # every row added per rule (never capped): what the gate hands the cost estimate
        self.rows: dict[str, list[npt.NDArray[np.int64]]] = defaultdict(list)

    def room(self, rule: str) -> int:
        """How many more findings of ``rule`` will be kept."""
        return max(0, self.max_per_rule - self._kept[rule])

    def add(self, finding: Finding, *, category: str | None = None) -> None:
        """Count one finding (under ``category`` if given, else its own) and keep it if there is room."""
        self.tally.add(finding.rule, category if category is not None else finding.category)
        if self.room(finding.rule):
            self._kept[finding.rule] += 1
            self.findings.append(finding)

    def add_one(self, rule: str, category: str | None, make: Callable[[], Finding]) -> None:
        """Count one defect of ``rule``; call ``make`` to build its finding only if it is kept.

        For findings that are not annotation rows (a bad element, a duplicate image):
        a batch with a million of them builds only ``max_per_rule`` findings.
        """
        self.tally.add(rule, category)
        if self.room(rule):
            self._kept[rule] += 1
            self.findings.append(make())

    def add_rows(
        self,
        batch: Batch,
        rows: npt.NDArray[np.integer[Any]] | Iterable[int],
        *,
        gate: str,
        rule: str,
        messages: Sequence[str] | str,
        values: Sequence[float] | npt.NDArray[np.float64] | None = None,
        severity: Severity = "error",
    ) -> None:
        """Count every row of ``rows`` under ``rule``; build findings for those under the cap."""
        idx = _as_rows(rows)
        self.tally.add_rows(batch, rule, idx)
        if idx.size:
            self.rows[rule].append(idx)
        k = min(idx.size, self.room(rule))
        if k == 0:
            return
        self._kept[rule] += k
        self.findings.extend(
            findings_for_rows(
                batch,
                idx[:k],
                gate=gate,
                rule=rule,
                messages=messages if isinstance(messages, str) else messages[:k],
                values=None if values is None else values[:k],
                severity=severity,
            )
        )

    def counts(self) -> dict[str, int]:
        """rule -> total findings (for :attr:`GateResult.finding_counts`)."""
        return {r: n for r, n in self.tally.by_rule.items() if n}


def _as_rows(rows: npt.NDArray[np.integer[Any]] | Iterable[int]) -> npt.NDArray[np.int64]:
    return np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64).reshape(-1)


def _names(
    table: Sequence[Any] | npt.NDArray[Any], codes: npt.NDArray[np.int64], limit: int = MAX_NAME_CHARS
) -> list[str | None]:
    """``table[code]`` as a bounded str for each code, None for negative codes, vectorised.

    Each distinct name is cut once (a 256 KB class shared by 2,000 rows is sliced once,
    not 2,000 times), then looked up with one NumPy take.
    """
    if codes.size == 0:
        return []
    arr = np.asarray(table, dtype=object) if len(table) else np.empty(0, dtype=object)
    if arr.size == 0:
        return [None] * codes.size
    uniq, inverse = np.unique(codes, return_inverse=True)
    picked = arr[np.maximum(uniq, 0)]
    short = np.empty(uniq.size, dtype=object)
    short[:] = [None if c < 0 else bound_text(str(v), limit) for c, v in zip(uniq.tolist(), picked, strict=True)]
    out: list[str | None] = short[inverse.reshape(-1)].tolist()
    return out


def findings_for_rows(
    batch: Batch,
    rows: npt.NDArray[np.integer[Any]] | Iterable[int],
    *,
    gate: str,
    rule: str,
    messages: Sequence[str] | str,
    values: Sequence[float] | npt.NDArray[np.float64] | None = None,
    severity: Severity = "error",
) -> list[Finding]:
    """One finding per annotation row, filled with everything the batch knows about it.

    Checks compute a boolean mask vectorised and call this only for the rows that
    failed (through :meth:`FindingLog.add_rows`, only for those kept). Names, lines,
    ids and pointers are gathered with NumPy takes over the rows, not per-row method
    calls, and each distinct name is cut to :data:`MAX_NAME_CHARS` once.
    """
    idx = _as_rows(rows)
    if idx.size == 0:
        return []
    ann = batch.annotations
    lines = ann.line[idx].tolist()
    ids = ann.id[idx].tolist()
    images = _names(batch.images.file_name, ann.image[idx].astype(np.int64))
    cats = _names(batch.categories.name, ann.category[idx].astype(np.int64))
    who = _names(batch.annotators, ann.annotator[idx].astype(np.int64))
    if batch.files:
        files: list[str] = [str(f) for f in _names(batch.files, ann.file[idx].astype(np.int64), MAX_TEXT_CHARS)]
    else:
        files = [str(batch.path)] * idx.size
    if batch.row_pointers is not None:
        ptrs: list[str | None] = [
            None if v is None else str(v) for v in np.asarray(batch.row_pointers, dtype=object)[idx]
        ]
    elif batch.pointer_base is not None:
        ptrs = [f"{batch.pointer_base}{i}" for i in idx.tolist()]
    else:
        ptrs = [None] * idx.size
    vals = None if values is None else np.asarray(values, dtype=np.float64)[: idx.size].tolist()
    msgs = [messages] * idx.size if isinstance(messages, str) else messages
    return [
        Finding(
            gate=gate,
            rule=rule,
            message=msgs[k],
            file=files[k],
            line=int(lines[k]) or None,
            pointer=ptrs[k],
            annotation_id=int(ids[k]),
            image=images[k],
            category=cats[k],
            annotator=who[k],
            severity=severity,
            value=None if vals is None else float(vals[k]),
        )
        for k in range(idx.size)
    ]
