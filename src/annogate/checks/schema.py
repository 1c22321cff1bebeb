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
from annogate.findings import Finding, FindingLog, GateResult, Severity, bound_text
from annogate.gates import Gate, GateContext
from annogate.model import Batch, SourceProblem
from annogate.thresholds import (
    THRESHOLDS_SCHEMA,
    apply_severity,
    error_type_checks,
    max_findings_per_rule,
    severity_for,
)

__all__ = ["GATE", "RULES_SCHEMA", "integrity_findings", "problem_findings", "run"]

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"thresholds": THRESHOLDS_SCHEMA},
}


def _unbounded() -> FindingLog:
    return FindingLog(max_per_rule=1 << 62)


def problem_findings(batch: Batch, problems: list[SourceProblem], log: FindingLog | None = None) -> list[Finding]:
    """One schema finding per source problem, in the batch's file unless the problem names one.

    With a ``log``, every problem is counted there and only those under its cap are built.
    """
    log = _unbounded() if log is None else log
    file = str(batch.path)
    for p in problems:

        def make(p: SourceProblem = p) -> Finding:
            sev: Severity = "warning" if p.severity == "warning" else "error"
            return Finding(
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

        log.add_one(p.rule, p.category, make)
    return log.findings


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


def _table_findings(log: FindingLog, batch: Batch, key: str, rows: npt.NDArray[np.int64], rule: str, what: str) -> None:
    table = batch.images if key == "images" else batch.categories
    file = str(batch.path)
    for r in rows.tolist():

        def make(r: int = r) -> Finding:
            return Finding(
                gate="schema",
                rule=rule,
                message=f"{what} {int(table.id[r])} appears again (first at an earlier element)",
                file=file,
                line=int(table.line[r]) or None,
                pointer=f"/{key}/{int(r)}",
                image=str(batch.images.file_name[r]) if key == "images" else None,
            )

        log.add_one(rule, None, make)


def integrity_findings(batch: Batch, rules: Mapping[str, Any], log: FindingLog | None = None) -> list[Finding]:
    """Dangling references, duplicate ids and names, classes outside the taxonomy.

    With a ``log``, every defect is counted there and only those under its cap are
    built (messages too: only for the rows the log has room for).
    """
    log = _unbounded() if log is None else log
    ann = batch.annotations
    # a predictions list read without its ground truth has no tables to check against
    own_tables = not batch.predictions or len(batch.images) > 0
    if len(ann) and own_tables:
        bad_img = np.flatnonzero((ann.image < 0) & _refs(ann.image_id, ann.image_id_valid))
        log.add_rows(
            batch,
            bad_img,
            gate="schema",
            rule="dangling_image_id",
            messages=[
                f"image_id {int(ann.image_id[i])} is not an image of this batch"
                for i in bad_img[: log.room("dangling_image_id")]
            ],
        )
        bad_cat = np.flatnonzero((ann.category < 0) & _refs(ann.category_id, ann.category_id_valid))
        log.add_rows(
            batch,
            bad_cat,
            gate="schema",
            rule="dangling_category_id",
            messages=[
                f"category_id {int(ann.category_id[i])} is not a category of this batch"
                for i in bad_cat[: log.room("dangling_category_id")]
            ],
        )
    if len(ann) and not batch.predictions:
        idx = _duplicates(ann.id, ann.id_valid)
        log.add_rows(
            batch,
            idx,
            gate="schema",
            rule="duplicate_annotation_id",
            messages=[
                f"annotation id {int(ann.id[i])} is used by an earlier annotation"
                for i in idx[: log.room("duplicate_annotation_id")]
            ],
        )
    if not batch.predictions:
        _table_findings(
            log, batch, "images", _duplicates(batch.images.id, batch.images.id_valid), "duplicate_image_id", "image id"
        )
        _table_findings(
            log,
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
            for i in _duplicates(inverse.astype(np.int64)).tolist():

                def make_dup(i: int = i) -> Finding:
                    return Finding(
                        gate="schema",
                        rule="duplicate_file_name",
                        message=f"file name {bound_text(str(names[i]))!r} is used by an earlier image"
                        " (images are matched across files by name)",
                        file=file,
                        line=int(batch.images.line[i]) or None,
                        pointer=f"/images/{i}",
                        image=str(names[i]),
                    )

                log.add_one("duplicate_file_name", None, make_dup)
    taxonomy = rules.get("taxonomy", {})
    classes = taxonomy.get("classes")
    if classes:
        known = set(classes) | set(taxonomy.get("aliases", {}))
        file = str(batch.path)
        unknown_rows = [k for k, n in enumerate(batch.categories.name) if str(n) not in known]
        for k in unknown_rows:

            def make_unknown(k: int = k) -> Finding:
                used = int(np.count_nonzero(ann.category == k))
                return Finding(
                    gate="schema",
                    rule="unknown_class",
                    message=f"class {bound_text(str(batch.categories.name[k]))!r} is not in the taxonomy"
                    f" ({used} annotations use it)",
                    file=file,
                    line=int(batch.categories.line[k]) or None,
                    pointer=f"/categories/{k}",
                    category=str(batch.categories.name[k]),
                )

            log.add_one("unknown_class", str(batch.categories.name[k]), make_unknown)
    return log.findings


def _cost_facts(batch: Batch, log: FindingLog, rules: Mapping[str, Any], cfg: Mapping[str, Any]) -> CostFacts:
    """Exact defects: the annotation rows the log holds (dangling or duplicate ids), every
    annotation of a class outside the taxonomy, and one per other error (a bad element,
    a duplicate image or category) that someone has to correct."""
    ann = batch.annotations
    rows: dict[str, list[npt.NDArray[np.integer[Any]]]] = {k: list(v) for k, v in log.rows.items()}
    classes = rules.get("taxonomy", {}).get("classes")
    if classes and len(ann):
        known = set(classes) | set(rules.get("taxonomy", {}).get("aliases", {}))
        bad = np.asarray([str(n) not in known for n in batch.categories.name] + [False], dtype=bool)
        rows["unknown_class"] = [np.flatnonzero(bad[ann.category])]
    # counted from every defect (the log's counts), not from the findings kept under the cap
    loose: dict[str, int] = defaultdict(int)
    for rule, n in log.counts().items():
        if rule not in rows:
            loose[rule] += n
    return CostFacts(exact=defect_rows(batch, rows, is_error=lambda r: severity_for(cfg, r) == "error", loose=loose))


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Validate the batch's structure; fails on any schema or integrity error by default."""
    cfg = ctx.section.get("thresholds", {})
    log = FindingLog(max_per_rule=max_findings_per_rule(cfg))
    problem_findings(batch, batch.problems, log)
    integrity_findings(batch, ctx.rules, log)
    findings = apply_severity(log.findings, cfg)
    cost = _cost_facts(batch, log, ctx.rules, cfg)
    population = len(batch.annotations) + len(batch.images) + len(batch.categories)
    checks = error_type_checks(tally=log.tally, population=population, cfg=cfg)
    metrics = {
        "images": len(batch.images),
        "annotations": len(batch.annotations),
        "categories": len(batch.categories),
        "source_problems": len(batch.problems),
    }
    return GateResult.from_checks(
        gate="schema",
        population=population,
        checks=checks,
        findings=findings,
        metrics=metrics,
        cost=cost,
        finding_counts=log.counts(),
        max_findings_per_rule=log.max_per_rule,
    )


GATE = Gate(
    name="schema",
    run=run,
    rules_schema=RULES_SCHEMA,
    description="What the reader found wrong in the source, plus referential integrity (ids, names, taxonomy).",
    order=10,
)
