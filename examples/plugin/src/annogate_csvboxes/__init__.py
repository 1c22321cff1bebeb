"""annogate-csvboxes: an example third-party annogate plugin.

It adds what any plugin may add, through the same hooks as annogate's built-ins:

* a reader for a made-up CSV box format, one object per row::

      image,width,height,label,x,y,w,h
      a.jpg,640,480,car,10,20,100,50

  Boxes are in pixels, top-left corner plus size, as annogate's model wants them.
  The reader only converts: every row it cannot convert becomes a
  ``SourceProblem`` naming the file, line and rule (the schema gate fails on it),
  and whether a box lies inside its image is left to the built-in geometry gate.
* a ``label_balance`` gate: fails a batch in which one class is more than
  ``max_share`` of the objects (``[label_balance] max_share = 0.8`` in the rules).
  A skewed batch is a sign of a filter or export gone wrong, not of wrong labels,
  so the gate names no defective rows and adds nothing to the rework estimate.

Registered in ``pyproject.toml`` under ``[project.entry-points.annogate]``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import annogate
from annogate.formats import Format, LoadError
from annogate.formats._builder import BatchBuilder, sha256_of_files

__all__ = ["FORMAT", "HEADER", "LABEL_BALANCE", "annogate_formats", "annogate_gates", "load_csvboxes"]

HEADER = ("image", "width", "height", "label", "x", "y", "w", "h")
_NUMBERS = ("width", "height", "x", "y", "w", "h")


# -- the reader ----------------------------------------------------------------
def _header(line: bytes) -> tuple[str, ...]:
    text = line.decode("utf-8", "replace").removeprefix("\ufeff")
    return tuple(c.strip().lower() for c in text.strip().split(","))


def sniff(path: Path, head: bytes) -> bool:
    """A csvboxes batch is a file whose first line is exactly the header."""
    return _header(head.split(b"\n", 1)[0]) == HEADER


def load_csvboxes(path: Path, **_options: Any) -> annogate.Batch:
    """Read one CSV file; a bad row is a source problem, never an exception."""
    path = Path(path)
    b = BatchBuilder(path=path, format="csvboxes")
    sizes: dict[str, tuple[float, float, int]] = {}  # image -> width, height, first line
    with open(path, "rb") as fh:
        first = fh.readline()
        if _header(first) != HEADER:
            raise LoadError(f"the first line must be the header {','.join(HEADER)}", path=path, line=1)
        for lineno, raw in enumerate(fh, start=2):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                b.problem(rule="encoding", message=f"not UTF-8 ({e.reason} at byte {e.start})", line=lineno)
                continue
            if not text.strip():
                continue
            try:
                row = next(csv.reader([text]))
            except csv.Error as e:  # a field over csv.field_size_limit(), a NUL byte
                b.problem(rule="syntax", message=f"not a CSV row: {e}", line=lineno)
                continue
            if len(row) != len(HEADER):
                b.problem(rule="fields", message=f"{len(row)} fields, expected {len(HEADER)}", line=lineno)
                continue
            rec = dict(zip(HEADER, (v.strip() for v in row), strict=True))
            ok = True
            num: dict[str, float] = {}
            for col in _NUMBERS:
                try:
                    num[col] = float(rec[col])
                except ValueError:
                    num[col] = math.nan
                if not math.isfinite(num[col]):  # float() also accepts "nan" and "inf"
                    b.problem(rule="number", message=f"{col} {rec[col]!r} is not a finite number", line=lineno)
                    ok = False
            if not rec["image"] or not rec["label"]:
                b.problem(rule="required", message="image and label must not be empty", line=lineno)
                ok = False
            if not ok:
                continue
            image, w_img, h_img = rec["image"], num["width"], num["height"]
            if w_img <= 0 or h_img <= 0:
                b.problem(rule="image_size", message=f"image size {w_img:g}x{h_img:g} is not positive", line=lineno)
                continue
            seen = sizes.setdefault(image, (w_img, h_img, lineno))
            if seen[:2] != (w_img, h_img):
                msg = f"{image} is {w_img:g}x{h_img:g} here but {seen[0]:g}x{seen[1]:g} on line {seen[2]}"
                b.problem(rule="image_size", message=msg, line=lineno, image=image)
                continue
            b.add_image(image, width=w_img, height=h_img, line=lineno)
            b.add_category(rec["label"], line=lineno)  # a class's line: where it first appears
            box = (num["x"], num["y"], num["w"], num["h"])
            b.add_annotation(image=image, category=rec["label"], file=path, line=lineno, bbox=box)
    # No JSON pointers in a CSV file: findings locate rows by file and line.
    return b.build(sha256=sha256_of_files([path]), pointer_base=None)


FORMAT = Format(name="csvboxes", suffixes=(".csv",), sniff=sniff, load=load_csvboxes)


# -- the gate ------------------------------------------------------------------
#: JSON Schema of the gate's rules section; annogate rejects unknown keys with it.
RULES_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_share": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Largest share of a batch's objects one class may have.",
        }
    },
}


def label_balance(batch: annogate.Batch, ctx: annogate.GateContext) -> annogate.GateResult:
    """One check per class: its share of the batch's labelled objects <= max_share."""
    max_share = ctx.section.get("max_share")
    if max_share is None:
        return annogate.GateResult(gate="label_balance", verdict="skipped", reason="no [label_balance] max_share")
    cat = batch.annotations.category
    counts = np.bincount(cat[cat >= 0], minlength=len(batch.categories))
    total = int(counts.sum())
    if total == 0:
        return annogate.GateResult(gate="label_balance", verdict="skipped", reason="no labelled objects")
    checks, findings = [], []
    for k in np.flatnonzero(counts):
        name, share = str(batch.categories.name[k]), float(counts[k]) / total
        check = annogate.ThresholdCheck(
            metric="class_share", scope=f"class:{name}", value=share, limit=float(max_share), op="<="
        )
        checks.append(check)
        if not check.passed:
            msg = f"{name} is {counts[k]} of {total} objects ({share:.0%}), above max_share {max_share:g}"
            line = int(batch.categories.line[k]) or None
            findings.append(
                annogate.Finding(
                    gate="label_balance", rule="class_share", message=msg, file=str(batch.path), line=line,
                    category=name, value=share,
                )
            )  # fmt: skip
    return annogate.GateResult.from_checks(gate="label_balance", population=total, checks=checks, findings=findings)


LABEL_BALANCE = annogate.Gate(name="label_balance", run=label_balance, rules_schema=RULES_SCHEMA, order=60)


# -- the hooks -----------------------------------------------------------------
@annogate.hookimpl
def annogate_formats() -> list[Format]:
    return [FORMAT]


@annogate.hookimpl
def annogate_gates() -> list[annogate.Gate]:
    return [LABEL_BALANCE]
