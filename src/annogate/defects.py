"""What a gate tells the cost model: typed, cost-relevant facts about a batch's defects.

Why a typed seam: the cost estimate used to recognise gates by name, metrics by
prefix and the layout of one gate's metrics dict, so only the built-in gates could
take part and a renamed metric silently dropped money from the estimate. Now any
gate, built-in or third-party, puts a :class:`CostFacts` in its result:

* :class:`DefectRows`: annotations known to be defective (exact, not a sample:
  invalid geometry, dangling references). Each row is one correction; a row named by
  several gates or rules is still one correction.
* :class:`SampledDefects`: a defect count measured on a sample (the golden set), with
  its sample size, extrapolated by the cost model with an interval.
* :class:`Pattern`: a systematic defect that review would not catch (boundary drift,
  a concentrated class confusion), priced on the labels it affects (bob's boxes, the
  golden cyclists), not on the whole batch.

:func:`summarise` merges the facts of all gates of a batch into what the pricing
needs: deduplicated exact defects with their shares per error type, annotator and
class, the sampled rate, and the patterns. All values are plain Python so results
travel as JSON between pytest-xdist workers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from annogate.model import Batch

__all__ = [
    "CostFacts",
    "DefectRows",
    "DefectSummary",
    "Pattern",
    "SampledDefects",
    "defect_rows",
    "summarise",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class DefectRows:
    """Annotations a gate knows to be defective, for one error type.

    ``rows`` are annotation row indices of the batch (-1 for a defect that is not an
    annotation, such as a duplicate category: each such entry counts once);
    ``annotators`` and ``categories`` name each row's annotator and class (None when
    unknown), so the estimate can be itemised without the batch.
    """

    error_type: str
    rows: tuple[int, ...]
    annotators: tuple[str | None, ...] = ()
    categories: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.rows)
        if self.annotators and len(self.annotators) != n:
            raise ValueError("DefectRows.annotators must be empty or as long as rows")
        if self.categories and len(self.categories) != n:
            raise ValueError("DefectRows.categories must be empty or as long as rows")

    def annotator(self, k: int) -> str | None:
        return self.annotators[k] if self.annotators else None

    def category(self, k: int) -> str | None:
        return self.categories[k] if self.categories else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "rows": list(self.rows),
            "annotators": list(self.annotators),
            "categories": list(self.categories),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DefectRows:
        return cls(
            error_type=str(d["error_type"]),
            rows=tuple(int(r) for r in d.get("rows", ())),
            annotators=tuple(d.get("annotators", ())),
            categories=tuple(d.get("categories", ())),
        )


def defect_rows(
    batch: Batch,
    rows_by_type: Mapping[str, Iterable[npt.NDArray[np.integer[Any]]] | npt.NDArray[np.integer[Any]]],
    *,
    is_error: Callable[[str], bool] = lambda _t: True,
    loose: Mapping[str, int] | None = None,
) -> tuple[DefectRows, ...]:
    """Exact defects from the row arrays a gate computed, named by annotator and class.

    ``rows_by_type`` maps an error type to the annotation rows that have it (one array
    or several); types for which ``is_error`` is False (the rules made them warnings)
    are left out: warnings are tolerated, not corrected. ``loose`` counts defects of a
    type that are not annotation rows (a duplicate category, an unreadable element).
    Built from every row, before findings are capped, so the count is exact.
    """
    import numpy as np

    from annogate.findings import bound_text  # names cut like findings' (a 256 KB class x every row)

    ann = batch.annotations
    who = np.asarray([*(bound_text(str(n)) for n in batch.annotators), None], dtype=object)
    cls = np.asarray([*(bound_text(str(n)) for n in batch.categories.name), None], dtype=object)
    out: list[DefectRows] = []
    for error_type in sorted(rows_by_type):
        if not is_error(error_type):
            continue
        parts = rows_by_type[error_type]
        arrays = [parts] if isinstance(parts, np.ndarray) else list(parts)
        rows = np.unique(np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])) if arrays else None
        if rows is None or rows.size == 0:
            continue
        out.append(
            DefectRows(
                error_type=error_type,
                rows=tuple(rows.tolist()),
                annotators=tuple(who[ann.annotator[rows]].tolist()),
                categories=tuple(cls[ann.category[rows]].tolist()),
            )
        )
    for error_type, count in sorted((loose or {}).items()):
        if count > 0 and is_error(error_type):
            out.append(DefectRows(error_type=error_type, rows=(-1,) * int(count)))
    return tuple(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class SampledDefects:
    """Defects measured on a sample: ``defects`` of ``sample`` objects were wrong.

    ``by_type`` splits the defects by error type (missing, extra, mislabelled...);
    ``by_annotator`` gives each annotator's (defects, sample) so the rework can be
    attributed to who made it.
    """

    defects: int
    sample: int
    by_type: Mapping[str, int] = field(default_factory=dict)
    by_annotator: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.defects <= self.sample:
            raise ValueError(f"need 0 <= defects <= sample, got {self.defects} of {self.sample}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "defects": self.defects,
            "sample": self.sample,
            "by_type": dict(self.by_type),
            "by_annotator": {k: list(v) for k, v in self.by_annotator.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampledDefects:
        return cls(
            defects=int(d["defects"]),
            sample=int(d["sample"]),
            by_type={str(k): int(v) for k, v in dict(d.get("by_type", {})).items()},
            by_annotator={str(k): (int(v[0]), int(v[1])) for k, v in dict(d.get("by_annotator", {})).items()},
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Pattern:
    """A systematic defect that review would not catch, fixed only after training.

    ``kind`` names the pattern (``drift``, ``confusion`` or a third-party gate's own);
    ``scope`` what it covers (``annotator:bob``, ``pair:cyclist->pedestrian``);
    ``affected`` the number of labels it spoils in this batch, which prices it;
    ``checks`` the failed thresholds behind it (as their ``to_dict`` forms).
    """

    kind: str
    scope: str
    affected: float
    annotator: str | None = None
    category: str | None = None
    checks: tuple[Mapping[str, Any], ...] = ()

    def key(self, gate: str) -> str:
        return f"{gate}:{self.kind}:{self.scope}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": self.scope,
            "affected": self.affected,
            "annotator": self.annotator,
            "category": self.category,
            "checks": [dict(c) for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pattern:
        return cls(
            kind=str(d["kind"]),
            scope=str(d["scope"]),
            affected=float(d["affected"]),
            annotator=d.get("annotator"),
            category=d.get("category"),
            checks=tuple(dict(c) for c in d.get("checks", ())),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class CostFacts:
    """Everything one gate contributes to the cost estimate."""

    exact: tuple[DefectRows, ...] = ()
    sampled: SampledDefects | None = None
    patterns: tuple[Pattern, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "exact": [e.to_dict() for e in self.exact],
            "sampled": None if self.sampled is None else self.sampled.to_dict(),
            "patterns": [p.to_dict() for p in self.patterns],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CostFacts | None:
        if d is None:
            return None
        s = d.get("sampled")
        return cls(
            exact=tuple(DefectRows.from_dict(e) for e in d.get("exact", ())),
            sampled=None if s is None else SampledDefects.from_dict(s),
            patterns=tuple(Pattern.from_dict(p) for p in d.get("patterns", ())),
        )


@dataclass(frozen=True, kw_only=True)
class ExactShare:
    """A share of one correction: a defective row split over its error types."""

    error_type: str
    annotator: str | None
    category: str | None
    share: float


@dataclass(frozen=True, kw_only=True)
class DefectSummary:
    """The facts of all gates of one batch, merged for pricing.

    ``exact`` holds one entry per (row, error type) with the share of the row's single
    correction (1/k for a row with k error types), so sums by error type, annotator
    or class all add up to ``exact_count``. ``sampled`` is the first gate's sample
    (the golden set; a second sampled gate is noted, not summed, because the samples
    would overlap). ``patterns`` are (gate, pattern) pairs, sorted for determinism.
    """

    exact: tuple[ExactShare, ...]
    exact_count: float
    sampled: SampledDefects | None
    sampled_gate: str | None
    patterns: tuple[tuple[str, Pattern], ...]
    notes: tuple[str, ...] = ()


def summarise(facts: Iterable[tuple[str, CostFacts | None]]) -> DefectSummary:
    """Merge ``(gate name, facts)`` pairs: exact rows deduplicated across gates and rules."""
    per_row: dict[int, list[tuple[str, str | None, str | None]]] = defaultdict(list)
    loose: list[ExactShare] = []
    sampled: SampledDefects | None = None
    sampled_gate: str | None = None
    patterns: list[tuple[str, Pattern]] = []
    notes: list[str] = []
    for gate, f in facts:
        if f is None:
            continue
        for d in f.exact:
            for k, row in enumerate(d.rows):
                entry = (d.error_type, d.annotator(k), d.category(k))
                if row < 0:
                    loose.append(ExactShare(error_type=entry[0], annotator=entry[1], category=entry[2], share=1.0))
                elif entry[0] not in {e[0] for e in per_row[row]}:
                    per_row[row].append(entry)
        if f.sampled is not None:
            if sampled is None:
                sampled, sampled_gate = f.sampled, gate
            else:
                notes.append(f"{gate}: a second sampled defect rate was not added to {sampled_gate}'s")
        patterns.extend((gate, p) for p in f.patterns)
    shares: list[ExactShare] = list(loose)
    for row in sorted(per_row):
        entries = per_row[row]
        w = 1.0 / len(entries)
        shares.extend(ExactShare(error_type=t, annotator=a, category=c, share=w) for t, a, c in entries)
    return DefectSummary(
        exact=tuple(shares),
        exact_count=float(len(per_row) + len(loose)),
        sampled=sampled,
        sampled_gate=sampled_gate,
        patterns=tuple(sorted(patterns, key=lambda gp: gp[1].key(gp[0]))),
        notes=tuple(notes),
    )
