"""Gate 1, schema: the file against its JSON Schema, plus referential integrity.

The JSON Schema (``annogate/schemas/coco.schema.json``) is the authority on what a
valid element is. Running jsonschema on a million annotations would take a minute,
so the reader applies exact cheap type checks to every element and keeps for this
gate the elements that failed them plus the first elements of each array; only
those go through jsonschema, whose message and pointer are quoted as they are.

Referential integrity is computed on the columns, vectorised: dangling
``image_id`` / ``category_id``, duplicate ids, duplicate image file names (the
cross-file join key) and classes the rules' taxonomy does not define.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import numpy.typing as npt

from annogate.findings import Finding, GateResult, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.model import Batch
from annogate.thresholds import THRESHOLDS_SCHEMA, apply_severity, error_type_checks

__all__ = ["GATE", "RULES_SCHEMA", "run"]

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"thresholds": THRESHOLDS_SCHEMA},
}


@cache
def format_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema of a format (``schemas/<name>.schema.json``)."""
    text = resources.files("annogate").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _validator(name: str, ref: str | None) -> jsonschema.protocols.Validator:
    root = format_schema(name)
    schema = root if ref is None else {**root, "$ref": f"#/$defs/{ref}"}
    if ref is not None:
        schema = {k: v for k, v in schema.items() if k in ("$schema", "$id", "$defs", "$ref")}
    cls = jsonschema.validators.validator_for(root)
    return cls(schema)


def _jsonschema_findings(batch: Batch) -> list[Finding]:
    meta = batch.meta
    out: list[Finding] = []
    file = str(batch.path)
    skeleton = meta.get("skeleton")
    results = bool(meta.get("results"))
    top = _validator(batch.format, "results_file" if results else None)
    # the skeleton holds every top-level value except the streamed arrays' elements
    for err in top.iter_errors(skeleton):
        ptr = "/" + "/".join(str(p) for p in err.absolute_path)
        out.append(
            Finding(
                gate="schema",
                rule="schema",
                message=f"{ptr}: {err.message}",
                file=file,
                line=1 if not err.absolute_path else None,
                pointer=ptr,
            )
        )
    seen: set[str] = set()
    elements = list(meta.get("flagged", [])) + list(meta.get("samples", []))
    kinds = {"images": "image", "categories": "category", "annotations": "result" if results else "annotation"}
    for el in elements:
        if el.pointer in seen:
            continue
        seen.add(el.pointer)
        v = _validator(batch.format, kinds[el.key])
        errs = sorted(v.iter_errors(el.item), key=lambda e: list(e.absolute_path))
        for err in errs[:3]:
            ptr = el.pointer + "".join(f"/{p}" for p in err.absolute_path)
            ann_id = el.item.get("id") if isinstance(el.item, dict) and el.key == "annotations" else None
            out.append(
                Finding(
                    gate="schema",
                    rule="schema",
                    message=f"{ptr}: {_short(err.message)}",
                    file=file,
                    line=el.line or None,
                    pointer=ptr,
                    annotation_id=ann_id if type(ann_id) is int else None,
                )
            )
    hidden = int(meta.get("flagged_count", 0)) - len(meta.get("flagged", []))
    if hidden > 0:
        out.append(
            Finding(
                gate="schema",
                rule="schema",
                message=f"{hidden} more elements fail the fast type checks (not itemised)",
                file=file,
            )
        )
    return out


def _short(msg: str, limit: int = 160) -> str:
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def _duplicates(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rows whose id occurred earlier (first occurrence is not reported)."""
    if ids.size == 0:
        return np.empty(0, np.int64)
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.zeros(ids.size, bool)
    dup[1:] = s[1:] == s[:-1]
    return np.sort(order[dup])


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
    results = bool(batch.meta.get("results"))
    if len(ann):
        bad_img = np.flatnonzero((ann.image < 0) & (ann.image_id >= 0))
        out += findings_for_rows(
            batch,
            bad_img,
            gate="schema",
            rule="dangling_image_id",
            messages=[f"image_id {int(ann.image_id[i])} is not an image of this batch" for i in bad_img],
        )
        bad_cat = np.flatnonzero((ann.category < 0) & (ann.category_id >= 0))
        out += findings_for_rows(
            batch,
            bad_cat,
            gate="schema",
            rule="dangling_category_id",
            messages=[f"category_id {int(ann.category_id[i])} is not a category of this batch" for i in bad_cat],
        )
        if not results:
            dup = _duplicates(ann.id[ann.id >= 0])
            idx = np.flatnonzero(ann.id >= 0)[dup]
            out += findings_for_rows(
                batch,
                idx,
                gate="schema",
                rule="duplicate_annotation_id",
                messages=[f"annotation id {int(ann.id[i])} is used by an earlier annotation" for i in idx],
            )
    if not results:
        out += _table_findings(batch, "images", _duplicates(batch.images.id), "duplicate_image_id", "image id")
        out += _table_findings(
            batch, "categories", _duplicates(batch.categories.id), "duplicate_category_id", "category id"
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


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Validate the batch's structure; fails on any schema or integrity error by default."""
    cfg = ctx.section.get("thresholds", {})
    findings = [*_jsonschema_findings(batch), *batch.problems, *integrity_findings(batch, ctx.rules)]
    findings = apply_severity(findings, cfg)
    population = len(batch.annotations) + len(batch.images) + len(batch.categories)
    checks = error_type_checks(findings=findings, population=population, cfg=cfg)
    metrics = {
        "images": len(batch.images),
        "annotations": len(batch.annotations),
        "categories": len(batch.categories),
        "elements_schema_validated": len(
            {e.pointer for e in batch.meta.get("flagged", []) + batch.meta.get("samples", [])}
        ),
    }
    return GateResult.from_checks(
        gate="schema", population=population, checks=checks, findings=findings, metrics=metrics
    )


GATE = Gate(
    name="schema",
    run=run,
    rules_schema=RULES_SCHEMA,
    description="JSON Schema of the format plus referential integrity (ids, names, taxonomy).",
    order=10,
)
