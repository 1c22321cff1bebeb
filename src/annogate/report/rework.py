"""The rework list: which images to send back to the labellers, most expensive first.

Why per image: labelling tools (Label Studio, CVAT) assign work by image (task),
and an annotator fixing one image fixes all of its wrong labels at once. Images
are ranked by the expected cost of their corrections (re-corrections included,
priced by class, from the batch's :class:`~annogate.cost.CostEstimate`), so a
team with a limited budget fixes what costs most first.

Output is deterministic (no timestamps; ties broken by batch, image): a CSV with
one row per finding for spreadsheets, or JSON with one task per image that a
short script turns into Label Studio / CVAT tasks (``data.image`` is the image's
file name, the key both tools use to find an image).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annogate.findings import Finding
from annogate.report.audit import atomic_write_text, finding_sort_key

if TYPE_CHECKING:
    from annogate.report import BatchOutcome

__all__ = [
    "CSV_COLUMNS",
    "REWORK_FORMAT",
    "ReworkItem",
    "rework_csv",
    "rework_items",
    "rework_json",
    "write_rework",
]

REWORK_FORMAT = "annogate-rework/1"

CSV_COLUMNS: tuple[str, ...] = (
    "rank",
    "batch",
    "image",
    "image_expected_cost",
    "currency",
    "annotation_id",
    "gate",
    "rule",
    "severity",
    "category",
    "annotator",
    "file",
    "line",
    "message",
)


@dataclass(frozen=True, kw_only=True)
class ReworkItem:
    """One image to send back, with the findings on it and what fixing them is expected to cost.

    ``image`` is None for findings not tied to an image (a dangling ``image_id``):
    they still need fixing, in the file rather than in a labelling tool.
    ``expected_cost`` is None when the batch has no cost estimate.
    """

    rank: int
    batch: str
    image: str | None
    expected_cost: float | None
    currency: str | None
    corrections: float
    findings: tuple[Finding, ...]

    @property
    def annotation_ids(self) -> list[int]:
        return sorted({f.annotation_id for f in self.findings if f.annotation_id is not None})

    @property
    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings})

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "batch": self.batch,
            "image": self.image,
            "data": {"image": self.image},
            "expected_cost": self.expected_cost,
            "currency": self.currency,
            "corrections": self.corrections,
            "annotation_ids": self.annotation_ids,
            "rules": self.rules,
            "findings": [
                {
                    "annotation_id": f.annotation_id,
                    "gate": f.gate,
                    "rule": f.rule,
                    "severity": f.severity,
                    "category": f.category,
                    "annotator": f.annotator,
                    "file": f.file,
                    "line": f.line,
                    "message": f.message,
                }
                for f in self.findings
            ],
        }


def rework_items(outcomes: Sequence[BatchOutcome], *, include_warnings: bool = False) -> list[ReworkItem]:
    """Images with findings, ordered by expected cost (desc), then corrections, batch, image.

    Several findings on one annotation are one correction (each weighs 1/k), the
    same convention as the cost model, so an image's cost is not inflated by a box
    that breaks three rules at once. Warnings are left out unless asked for: the
    rules chose to tolerate them.
    """
    unranked: list[ReworkItem] = []
    for o in outcomes:
        findings = o.findings(include_warnings=include_warnings)
        per_ann: dict[tuple[str, int], int] = {}
        for f in findings:
            if f.annotation_id is not None:
                key = (f.file, f.annotation_id)
                per_ann[key] = per_ann.get(key, 0) + 1
        groups: dict[str | None, list[Finding]] = {}
        for f in findings:
            groups.setdefault(f.image, []).append(f)
        for image, fs in groups.items():
            weights = [1.0 / per_ann[(f.file, f.annotation_id)] if f.annotation_id is not None else 1.0 for f in fs]
            est = o.cost
            cost = (
                None
                if est is None
                else sum(w * est.correction_cost(f.category) for f, w in zip(fs, weights, strict=True))
            )
            unranked.append(
                ReworkItem(
                    rank=0,
                    batch=o.path,
                    image=image,
                    expected_cost=cost,
                    currency=None if est is None else est.currency,
                    corrections=sum(weights),
                    findings=tuple(sorted(fs, key=finding_sort_key)),
                )
            )
    unranked.sort(key=lambda r: (-(r.expected_cost or 0.0), -r.corrections, r.batch, r.image is None, r.image or ""))
    return [
        ReworkItem(
            rank=i,
            batch=r.batch,
            image=r.image,
            expected_cost=r.expected_cost,
            currency=r.currency,
            corrections=r.corrections,
            findings=r.findings,
        )
        for i, r in enumerate(unranked, start=1)
    ]


def rework_json(outcomes: Sequence[BatchOutcome], *, include_warnings: bool = False) -> dict[str, Any]:
    """The rework list as a JSON-able task list (one task per image)."""
    items = rework_items(outcomes, include_warnings=include_warnings)
    return {
        "report_format": REWORK_FORMAT,
        "images": len(items),
        "tasks": [r.to_dict() for r in items],
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str | None) -> str:
    """A text cell that a spreadsheet will not execute (labels come from outside: CSV injection)."""
    if text is None:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def rework_csv(outcomes: Sequence[BatchOutcome], *, include_warnings: bool = False) -> str:
    """The rework list as CSV text: one row per finding, rows grouped by image in rank order."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rework_items(outcomes, include_warnings=include_warnings):
        cost = "" if r.expected_cost is None else f"{r.expected_cost:.4f}"
        for f in r.findings:
            w.writerow(
                [
                    r.rank,
                    _cell(r.batch),
                    _cell(r.image),
                    cost,
                    r.currency or "",
                    "" if f.annotation_id is None else f.annotation_id,
                    _cell(f.gate),
                    _cell(f.rule),
                    f.severity,
                    _cell(f.category),
                    _cell(f.annotator),
                    _cell(f.file),
                    "" if f.line is None else f.line,
                    _cell(f.message),
                ]
            )
    return buf.getvalue()


def write_rework(
    path: str | os.PathLike[str], outcomes: Sequence[BatchOutcome], *, include_warnings: bool = False
) -> None:
    """Write the rework list atomically: CSV when ``path`` ends ``.csv``, JSON when ``.json``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        text = rework_csv(outcomes, include_warnings=include_warnings)
    elif suffix == ".json":
        text = (
            json.dumps(
                rework_json(outcomes, include_warnings=include_warnings),
                indent=2,
                sort_keys=True,
                ensure_ascii=False,
                allow_nan=False,
            )
            + "\n"
        )
    else:
        raise ValueError(f"rework list {os.fspath(path)!r}: use a .csv or .json file name")
    atomic_write_text(path, text)
