"""What a gate returns: findings (one per wrong label) and threshold checks.

Kept free of pytest and of any format: the pytest adapter, the cost model and
every report read only these types, so a new gate or report needs nothing else.
All values are plain Python (str, int, float) so a result pickles and serialises
to JSON unchanged, which pytest-xdist needs to ship results to the controller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from annogate.defects import CostFacts
from annogate.model import Batch

__all__ = [
    "Finding",
    "GateResult",
    "Severity",
    "ThresholdCheck",
    "Verdict",
    "findings_for_rows",
]

Severity = Literal["error", "warning"]
Verdict = Literal["passed", "failed", "skipped"]


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

    @property
    def failed_checks(self) -> list[ThresholdCheck]:
        return [c for c in self.checks if not c.passed and c.severity == "error"]

    def counts_by_rule(self) -> Counter[str]:
        return Counter(f.rule for f in self.findings)

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
    ) -> GateResult:
        """A result whose verdict follows from its checks: failed iff an error-level check fails."""
        failed = any(not c.passed and c.severity == "error" for c in checks)
        return cls(
            gate=gate,
            verdict="failed" if failed else "passed",
            population=population,
            metrics=dict(metrics or {}),
            checks=list(checks),
            findings=list(findings),
            tables=dict(tables or {}),
            cost=cost,
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
    failed, so the per-row Python cost is paid only for defects.
    """
    ann = batch.annotations
    out: list[Finding] = []
    for k, i in enumerate(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)):
        i = int(i)
        msg = messages if isinstance(messages, str) else messages[k]
        out.append(
            Finding(
                gate=gate,
                rule=rule,
                message=msg,
                file=batch.source_file(i),
                line=int(ann.line[i]) or None,
                pointer=batch.pointer(i),
                annotation_id=int(ann.id[i]),
                image=batch.image_name(i),
                category=batch.category_name(i),
                annotator=batch.annotator_name(i),
                severity=severity,
                value=None if values is None else float(values[k]),
            )
        )
    return out
