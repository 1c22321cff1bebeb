"""Gate 1, schema: what the reader saw wrong in the source, plus referential integrity.

Format-neutral. Each reader validates its own syntax (COCO runs its shipped JSON
Schema on the elements its fast type checks flagged, quoting jsonschema's message
and pointer) and hands over :class:`~annogate.model.SourceProblem` records; this
gate turns each into a finding. Referential integrity is computed here, on the
columns, vectorised: dangling image / category references, duplicate ids,
duplicate image file names (the cross-file join key) and classes the rules'
taxonomy does not define. Ids the reader marked inexact (``id_valid`` False) take
no part: they are already source problems.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.defects import CostFacts, defect_rows
from annogate.findings import Finding, GateResult, Severity, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.model import Batch, SourceProblem
from annogate.thresholds import THRESHOLDS_SCHEMA, apply_severity, error_type_checks, severity_for

__all__ = ["GATE", "RULES_SCHEMA", "integrity_findings", "problem_findings", "run"]

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"thresholds": THRESHOLDS_SCHEMA},
}


def problem_findings(batch: Batch, problems: list[SourceProblem]) -> list[Finding]:
    """One schema finding per source problem, in the batch's file unless the problem names one."""
    file = str(batch.path)
    out: list[Finding] = []
    for p in problems:
        sev: Severity = "warning" if p.severity == "warning" else "error"
        out.append(
            Finding(
                gate="schema",
                rule=p.rule,
                message=p.message,
                file=p.file if p.file is not None else file,
                line=p.line,
                pointer=p.pointer,
                annotation_id=p.annotation_id,
                image=p.image,
                category=p.category,
                severity=sev,
            )
        )
    return out


def _refs(ids: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_]:
    """Rows that make a reference: exact ids where the reader says so, else ids >= 0."""
    return valid if valid is not None else ids >= 0


def _duplicates(ids: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """Rows whose id occurred earlier (first occurrence is not reported); inexact ids skipped."""
    rows = np.arange(ids.size) if valid is None else np.flatnonzero(valid)
    if rows.size == 0:
        return np.empty(0, np.int64)
    order = rows[np.argsort(ids[rows], kind="stable")]
    s = ids[order]
    dup = np.zeros(order.size, bool)
    dup[1:] = s[1:] == s[:-1]
    return np.sort(order[dup]).astype(np.int64)


def _table_findings(batch: Batch, key: str, rows: npt.NDArray[np.int64], rule: str, what: str) -> list[Finding]:
    table = batch.images if key == "images" else batch.categories
    file = str(batch.path)
    return [
        Finding(
            gate="schema",
            rule=rule,
            message=f"{what} {int(table.id[r])} appears again (first at an earlier element)",
            file=file,
            line=int(table.line[r]) or None,
            pointer=f"/{key}/{int(r)}",
            image=str(batch.images.file_name[r]) if key == "images" else None,
        )
        for r in rows.tolist()
    ]


def integrity_findings(batch: Batch, rules: Mapping[str, Any]) -> list[Finding]:
    """Dangling references, duplicate ids and names, classes outside the taxonomy."""
    ann = batch.annotations
    out: list[Finding] = []
    # a predictions list read without its ground truth has no tables to check against
    own_tables = not batch.predictions or len(batch.images) > 0
    if len(ann) and own_tables:
        bad_img = np.flatnonzero((ann.image < 0) & _refs(ann.image_id, ann.image_id_valid))
        out += findings_for_rows(
            batch,
            bad_img,
            gate="schema",
            rule="dangling_image_id",
            messages=[f"image_id {int(ann.image_id[i])} is not an image of this batch" for i in bad_img],
        )
        bad_cat = np.flatnonzero((ann.category < 0) & _refs(ann.category_id, ann.category_id_valid))
        out += findings_for_rows(
            batch,
            bad_cat,
            gate="schema",
            rule="dangling_category_id",
            messages=[f"category_id {int(ann.category_id[i])} is not a category of this batch" for i in bad_cat],
        )
    if len(ann) and not batch.predictions:
        idx = _duplicates(ann.id, ann.id_valid)
        out += findings_for_rows(
            batch,
            idx,
            gate="schema",
            rule="duplicate_annotation_id",
            messages=[f"annotation id {int(ann.id[i])} is used by an earlier annotation" for i in idx],
        )
    if not batch.predictions:
        out += _table_findings(
            batch, "images", _duplicates(batch.images.id, batch.images.id_valid), "duplicate_image_id", "image id"
        )
        out += _table_findings(
            batch,
            "categories",
            _duplicates(batch.categories.id, batch.categories.id_valid),
            "duplicate_category_id",
            "category id",
        )
        names = batch.images.file_name
        if len(names):
            _, inverse = np.unique(names.astype(str), return_inverse=True)
            file = str(batch.path)
            out += [
                Finding(
                    gate="schema",
                    rule="duplicate_file_name",
                    message=f"file name {names[i]!r} is used by an earlier image (images are matched across files by name)",
                    file=file,
                    line=int(batch.images.line[i]) or None,
                    pointer=f"/images/{i}",
                    image=str(names[i]),
                )
                for i in _duplicates(inverse.astype(np.int64)).tolist()
            ]
    taxonomy = rules.get("taxonomy", {})
    classes = taxonomy.get("classes")
    if classes:
        known = set(classes) | set(taxonomy.get("aliases", {}))
        file = str(batch.path)
        unknown_rows = [k for k, n in enumerate(batch.categories.name) if str(n) not in known]
        for k in unknown_rows:
            used = int(np.count_nonzero(ann.category == k))
            out.append(
                Finding(
                    gate="schema",
                    rule="unknown_class",
                    message=f"class {batch.categories.name[k]!r} is not in the taxonomy ({used} annotations use it)",
                    file=file,
                    line=int(batch.categories.line[k]) or None,
                    pointer=f"/categories/{k}",
                    category=str(batch.categories.name[k]),
                )
            )
    return out


def _cost_facts(batch: Batch, findings: list[Finding], rules: Mapping[str, Any], cfg: Mapping[str, Any]) -> CostFacts:
    """Exact defects: annotation rows with a dangling or duplicate id, every annotation of
    a class outside the taxonomy, and one per other error (a bad element, a duplicate
    image or category) that someone has to correct."""
    ann = batch.annotations
    rows: dict[str, list[npt.NDArray[np.integer[Any]]]] = {}
    if len(ann) and (not batch.predictions or len(batch.images) > 0):
        rows["dangling_image_id"] = [np.flatnonzero((ann.image < 0) & _refs(ann.image_id, ann.image_id_valid))]
        rows["dangling_category_id"] = [
            np.flatnonzero((ann.category < 0) & _refs(ann.category_id, ann.category_id_valid))
        ]
    if len(ann) and not batch.predictions:
        rows["duplicate_annotation_id"] = [_duplicates(ann.id, ann.id_valid)]
    classes = rules.get("taxonomy", {}).get("classes")
    if classes and len(ann):
        known = set(classes) | set(rules.get("taxonomy", {}).get("aliases", {}))
        bad = np.asarray([str(n) not in known for n in batch.categories.name] + [False], dtype=bool)
        rows["unknown_class"] = [np.flatnonzero(bad[ann.category])]
    loose: dict[str, int] = defaultdict(int)
    for f in findings:
        if f.rule not in rows:
            loose[f.rule] += 1
    return CostFacts(exact=defect_rows(batch, rows, is_error=lambda r: severity_for(cfg, r) == "error", loose=loose))


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Validate the batch's structure; fails on any schema or integrity error by default."""
    cfg = ctx.section.get("thresholds", {})
    findings = [*problem_findings(batch, batch.problems), *integrity_findings(batch, ctx.rules)]
    findings = apply_severity(findings, cfg)
    cost = _cost_facts(batch, findings, ctx.rules, cfg)
    population = len(batch.annotations) + len(batch.images) + len(batch.categories)
    checks = error_type_checks(findings=findings, population=population, cfg=cfg)
    metrics = {
        "images": len(batch.images),
        "annotations": len(batch.annotations),
        "categories": len(batch.categories),
        "source_problems": len(batch.problems),
    }
    return GateResult.from_checks(
        gate="schema", population=population, checks=checks, findings=findings, metrics=metrics, cost=cost
    )


GATE = Gate(
    name="schema",
    run=run,
    rules_schema=RULES_SCHEMA,
    description="What the reader found wrong in the source, plus referential integrity (ids, names, taxonomy).",
    order=10,
)
