"""Annotator cohorts read from the labels themselves (rules: ``cohort_field``).

Why: ``[cost] cohorts = {alice = "vendorA"}`` has to be kept by hand, but many exports
already say who made each object (a ``vendor`` field on every COCO annotation, a CVAT
or Label Studio attribute). ``cohort_field`` names that per-annotation field; each
annotator's cohort is the value most of their annotations carry. The engine merges
this mapping *under* the explicit ``cost.cohorts`` (the hand-kept mapping wins) for the
batch, so the per-annotator tables, the per-cohort checks and the cost itemisation all
use one mapping, as they do today.

An annotator whose annotations name two cohorts is kept in the majority one (ties:
the alphabetically first, so reports are deterministic) and the batch gets a
``cohort_conflict`` warning (a :class:`~annogate.model.SourceProblem`, shown by the
schema gate, never failing it): the split is a fact about the source worth seeing, not
a defect in the labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from annogate.model import Batch, SourceProblem

#: Longest cohort name kept (a longer value is treated as absent: it is no cohort name).
MAX_COHORT_NAME = 200


@dataclass(frozen=True, kw_only=True)
class Cohorts:
    """Annotator -> cohort for one batch, and the annotators seen in two or more cohorts."""

    field_name: str
    cohort_of: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, dict[str, int]] = field(default_factory=dict)  # annotator -> {cohort: annotations}

    def problems(self) -> list[SourceProblem]:
        """One warning per annotator whose annotations name more than one cohort."""
        out = []
        for name, counts in sorted(self.conflicts.items()):
            parts = ", ".join(f"{c!r}: {n}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            out.append(
                SourceProblem(
                    rule="cohort_conflict",
                    message=(
                        f"annotator {name!r} has annotations in {len(counts)} cohorts by {self.field_name!r} "
                        f"({parts[:400]}); counted in {self.cohort_of[name]!r}"
                    ),
                    severity="warning",
                )
            )
        return out


def cohort_value(attrs: Any, name: str) -> str | None:
    """The cohort a row's attributes name: ``attrs[name]``, else the dotted path into nested dicts.

    Only scalars are cohort names (a dict or list is not; nor an empty or over-long string).
    """
    if type(attrs) is not dict:
        return None
    v: Any = attrs.get(name)
    if v is None and "." in name:
        v = attrs
        for part in name.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
    if v is None or isinstance(v, (dict, list, tuple)):
        return None
    s = str(v)
    return s if 0 < len(s) <= MAX_COHORT_NAME else None


def batch_cohorts(batch: Batch, name: str) -> Cohorts:
    """Each annotator's majority cohort in ``batch`` by the per-annotation field ``name``.

    Rows without a known annotator, or without the field, count for nothing: an
    annotator none of whose rows carries it stays uncohorted. Linear in rows.
    """
    attrs = batch.annotations.attributes
    if attrs is None or not batch.annotators:
        return Cohorts(field_name=name)
    counts: dict[int, Counter[str]] = {}
    for k, a in zip(batch.annotations.annotator.tolist(), attrs.tolist(), strict=True):
        if k < 0:
            continue
        v = cohort_value(a, name)
        if v is not None:
            counts.setdefault(k, Counter())[v] += 1
    cohort_of: dict[str, str] = {}
    conflicts: dict[str, dict[str, int]] = {}
    for k, c in counts.items():
        ann = batch.annotators[k]
        best = min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        cohort_of[ann] = best
        if len(c) > 1:
            conflicts[ann] = dict(c)
    return Cohorts(field_name=name, cohort_of=cohort_of, conflicts=conflicts)


def with_cohorts(rules: Mapping[str, Any], cohorts: Cohorts) -> dict[str, Any]:
    """The rules with ``cost.cohorts`` = the batch's cohorts overlaid by the explicit ones (explicit wins)."""
    out = dict(rules)
    cost = rules.get("cost")
    cost = dict(cost) if isinstance(cost, Mapping) else {}
    explicit = cost.get("cohorts")
    merged = dict(cohorts.cohort_of)
    if isinstance(explicit, Mapping):
        merged.update({str(k): str(v) for k, v in explicit.items()})
    if merged:
        cost["cohorts"] = merged
    out["cost"] = cost
    return out


def add_problems(batch: Batch, cohorts: Cohorts) -> Batch:
    """``batch`` with the cohort conflicts among its source problems (unchanged when there are none)."""
    extra = cohorts.problems()
    return replace(batch, problems=[*batch.problems, *extra]) if extra else batch
