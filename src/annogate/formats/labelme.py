"""LabelMe (wkentaro/labelme) JSON: a folder of ``.json`` files, one per image.

Why a folder batch: LabelMe saves one JSON beside each image, so what a team hands
over is the directory; every finding names the file inside it, the shape's JSON
pointer (``/shapes/3``) and its line (exact for pretty-printed files, which
LabelMe writes; 1 for a one-line file, where the pointer is what locates it).

Mapping to the model (pixels, top-left origin):

* ``rectangle``: the two corners in either order -> ``bbox`` (normalised: min/max);
* ``polygon`` (also a missing/null ``shape_type``, LabelMe's default): one ring;
* ``circle``: centre and a point on the rim -> a polygon of
  :data:`CIRCLE_VERTICES` vertices (so area and mask IoU are those of the disk) and
  the exact ``bbox`` ``(cx - r, cy - r, 2r, 2r)``;
* ``point``, ``line``, ``linestrip``: keypoint-like objects, each vertex an
  ``(x, y, 2)`` triple and ``bbox`` their extent (as the CVAT reader does for
  polylines and points: an open line as a ring would be a zero-area or
  self-intersecting polygon to the geometry gate);
* shapes with the same ``(label, group_id)`` in one file merge into one object (as
  LabelMe's own ``labelme2coco`` does: the label is part of the instance key): its
  rings, vertices and the union of the extents; line and pointer of the first shape;
* label ``__ignore__``: an ignore region, ``iscrowd=True`` with no class;
* ``attributes``: ``shape_type`` (a tuple of them for a merged group), ``group_id``,
  ``description`` when non-empty, and each shape flag under its own name
  (``flag:<name>`` if it clashes with one of those keys);
* the image is the base name of ``imagePath`` with ``\\`` read as a separator
  (Windows exports write ``parent\\stem.jpg``); its size from ``imageWidth`` and
  ``imageHeight`` (missing or not positive: rule ``image_size``). ``imageData``
  (base64 image bytes) is never decoded.

A JSON file of another kind inside the folder is a problem (rule ``schema``); the
batch fails to load (:class:`~annogate.formats.LoadError`) only when no file in it
can be read. Unknown shape types (``mask``, ...) are problems, not silent drops.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from annogate.formats import Format, LoadError, read_head, sample_files
from annogate.formats._builder import (
    AnnotatorFrom,
    BatchBuilder,
    image_side_problem,
    label_files,
    read_capped,
    read_label_files,
)
from annogate.model import Batch

__all__ = ["CIRCLE_VERTICES", "FORMAT", "load_labelme", "looks_like_labelme", "shape_lines"]

FORMAT_NAME = "labelme"
CIRCLE_VERTICES = 64
IGNORE_LABEL = "__ignore__"
MAX_FILE_BYTES = 512 << 20
_MAX_SNIFF_FILES = 8
_SNIFF_READ = 1 << 20
_KEY = {k: re.compile(rb'"' + k + rb'"\s*:') for k in (b"shapes", b"imagePath", b"imageData")}
# Strings (unrolled loop: fast on a megabyte of base64) and the four brackets.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_COLON = re.compile(rb"\s*:")
_BUILTIN_ATTRS = frozenset({"shape_type", "group_id", "description"})
_KEYPOINT_LIKE = frozenset({"point", "line", "linestrip", "points"})
_KNOWN = frozenset({"rectangle", "polygon", "circle", *_KEYPOINT_LIKE})


def _looks(head: bytes) -> bool:
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return False
    has = {k: bool(r.search(head)) for k, r in _KEY.items()}
    if has[b"imagePath"] and (has[b"shapes"] or has[b"imageData"]):
        return True
    # a file that opens with a megabyte of base64 ``imageData``: its other keys lie beyond the head
    return has[b"imageData"] and len(head) >= _SNIFF_READ


def looks_like_labelme(path: Path, head: bytes) -> bool:
    """A JSON object with LabelMe's keys, or a folder holding one.

    Claimed: ``imagePath`` with ``shapes`` or ``imageData`` in the first megabyte, or
    an ``imageData`` key in a head that is a full megabyte (the base64 image came
    first and pushed the other keys further).

    A folder is claimed when such a file lies in it, directly or one level down (one
    sub-folder per annotator): a folder that merely contains a LabelMe folder deeper
    down (``examples/``, a repository) is not one. Only a bounded sample is read.
    """
    if path.is_dir():
        for p in sample_files(path, (".json",), max_files=_MAX_SNIFF_FILES, max_depth=1):
            sample = read_head(p, _SNIFF_READ)
            if sample is not None and _looks(sample):
                return True
        return False
    return _looks(head)


def shape_lines(data: bytes) -> list[int]:
    """1-based line of the opening brace of each element of the top-level ``"shapes"`` array.

    Why a scan of our own: orjson keeps no positions. The scan visits only strings
    and brackets (a regex jumps over numbers, and over a base64 ``imageData`` string
    in one C-speed match), tracks the depth, and counts newlines between hits, so it
    is linear in the file and cheap next to the parse. An unexpected layout yields
    fewer lines than shapes; callers then fall back to line 1 and the pointer.
    """
    if b"\n" not in data:
        return []
    depth = 0
    in_shapes = False
    want_array = False
    out: list[int] = []
    line, last = 1, 0
    for m in _TOKEN.finditer(data):
        tok = m.group()
        c = tok[:1]
        if c == b'"':
            if depth == 1 and not in_shapes and tok == b'"shapes"' and _COLON.match(data, m.end()):
                want_array = True
            continue
        if c in (b"{", b"["):
            if in_shapes and depth == 2 and c == b"{":
                line += data.count(b"\n", last, m.start())
                last = m.start()
                out.append(line)
            if want_array and depth == 1 and c == b"[":
                in_shapes = True
            want_array = False
            depth += 1
        else:
            depth -= 1
            if in_shapes and depth == 1:
                return out
    return out


@dataclass
class _Object:
    """One object being assembled from one shape or a group of them."""

    label: str | None
    line: int
    pointer: str
    types: list[str] = field(default_factory=list)
    rings: list[list[float]] = field(default_factory=list)
    keypoints: list[float] = field(default_factory=list)
    extents: list[tuple[float, float, float, float]] = field(default_factory=list)
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _circle_ring(cx: float, cy: float, r: float) -> list[float]:
    a = np.linspace(0.0, 2 * math.pi, CIRCLE_VERTICES, endpoint=False)
    out = np.empty(2 * CIRCLE_VERTICES, np.float64)
    out[0::2], out[1::2] = cx + r * np.cos(a), cy + r * np.sin(a)
    return [float(v) for v in out]


def _extent(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float, float]:
    return (min(xs), min(ys), max(xs), max(ys))


class _Reader:
    def __init__(self, *, path: Path, root: Path, annotator_from: AnnotatorFrom | None = None) -> None:
        self.b = BatchBuilder(path=path, format=FORMAT_NAME)
        self.root = root
        self.annotator_from = annotator_from
        self.who: str | None = None  # the annotator of the file being read
        self.described: set[tuple[str, str | None]] = set()  # (image, annotator) pairs seen

    def read_file(self, p: Path) -> str | None:
        """Add one JSON file; returns why it could not be read at all (None when it was)."""
        rel = p.relative_to(self.root).as_posix()
        b = self.b
        try:
            size = os.stat(p).st_size
            # refused by the reported size without reading; the capped read holds if it grows
            data = None if size > MAX_FILE_BYTES else read_capped(p, MAX_FILE_BYTES)
            if data is None:
                size = max(size, MAX_FILE_BYTES + 1)
                msg = f"file of {size} bytes, larger than the {MAX_FILE_BYTES}-byte limit"
                b.problem(rule="limit", message=msg, file=rel)
                return f"{rel}: {msg} [limit]"
        except OSError as e:
            b.problem(rule="io", message=f"cannot read: {e.strerror or e}", file=rel)
            return f"{rel}: cannot read [io]"
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            rule = "encoding" if "utf-8" in str(e).lower() else "syntax"
            msg = "not valid UTF-8" if rule == "encoding" else f"not valid JSON: {e.msg}"
            line = int(getattr(e, "lineno", 1) or 1)
            b.problem(rule=rule, message=msg, file=rel, line=line)
            return f"{rel}:{line}: {msg} [{rule}]"
        if not isinstance(doc, dict) or "imagePath" not in doc or "shapes" not in doc:
            msg = 'not a LabelMe file: a JSON object with "imagePath" and "shapes" was looked for'
            b.problem(rule="schema", message=msg, file=rel, line=1)
            return f"{rel}: {msg} [schema]"
        b.file_index(rel)
        self.who = self.annotator_from.of(rel) if self.annotator_from is not None else None
        image = self.image(doc, p, rel)
        shapes = doc["shapes"]
        if not isinstance(shapes, list):
            b.problem(rule="schema", message='"shapes" is not a list', file=rel, line=1, pointer="/shapes", image=image)
            return None
        lines = shape_lines(data)
        if len(lines) != len(shapes):
            lines = [1] * len(shapes)
        objects: dict[Any, _Object] = {}
        for i, shape in enumerate(shapes):
            self.shape(shape, i, lines[i], rel, image, objects)
        for obj in objects.values():
            self.emit(obj, rel, image)
        return None

    def image(self, doc: dict[str, Any], p: Path, rel: str) -> str:
        b = self.b
        raw = doc.get("imagePath")
        name = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if isinstance(raw, str) else ""
        if not name:
            name = p.stem + ".jpg"
            b.problem(
                rule="schema",
                message=f"imagePath {raw!r} names no image; taken to be {name!r}",
                file=rel,
                line=1,
                pointer="/imagePath",
                image=name,
            )
        if (name, self.who) in self.described:  # one image in two annotators' folders is no duplicate
            b.problem(
                rule="duplicate_image",
                message=f"image {name!r} is also described by another file of the batch",
                file=rel,
                line=1,
                pointer="/imagePath",
                image=name,
            )
        size: dict[str, float | None] = {}
        for key in ("imageWidth", "imageHeight"):
            v: Any = doc.get(key)
            # finite, positive and at most MAX_IMAGE_SIDE: 1e308 would make every box fit
            if v is None or _finite_number(v):
                what = image_side_problem(None if v is None else float(v))
            else:
                what = f"{v!r:.40} is not a number"
            size[key] = None if what is not None else float(v)
            if what is not None:
                b.problem(rule="image_size", message=f"{key} {what}", file=rel, line=1, pointer=f"/{key}", image=name)
        self.described.add((name, self.who))
        b.add_image(name, width=size["imageWidth"], height=size["imageHeight"], line=1)
        return name

    def shape(self, shape: Any, i: int, line: int, rel: str, image: str, objects: dict[Any, _Object]) -> None:
        b = self.b
        ptr = f"/shapes/{i}"

        def bad(msg: str, sub: str = "", category: str | None = None) -> None:
            b.problem(
                rule="schema", message=msg, file=rel, line=line, pointer=ptr + sub, image=image, category=category
            )

        if not isinstance(shape, dict):
            bad("a shape is not a JSON object")
            return
        label = shape.get("label")
        if not isinstance(label, str) or not label:
            bad(f"label {label!r} is not a non-empty string", "/label")
            label = None
        kind = shape.get("shape_type") or "polygon"
        if kind not in _KNOWN:
            bad(f"shape_type {kind!r} is not read (known: {', '.join(sorted(_KNOWN))})", "/shape_type", label)
            return
        pts = shape.get("points")
        if not isinstance(pts, list):
            bad('"points" is not a list', "/points", label)
            return
        xs: list[float] = []
        ys: list[float] = []
        for j, pt in enumerate(pts):
            if not (isinstance(pt, list) and len(pt) == 2 and all(_finite_number(v) for v in pt)):
                bad(f"point {pt!r} is not [x, y] with finite numbers", f"/points/{j}", label)
                return
            xs.append(float(pt[0]))
            ys.append(float(pt[1]))
        need = {"rectangle": 2, "circle": 2, "line": 2, "point": 1, "linestrip": 2, "points": 1, "polygon": 1}[kind]
        if len(xs) < need or (kind in ("rectangle", "circle", "line", "point") and len(xs) != need):
            bad(f"a {kind} needs {need} point{'s' if need > 1 else ''}, not {len(xs)}", "/points", label)
            return
        group = shape.get("group_id")
        if group is not None and not (isinstance(group, int) and not isinstance(group, bool)):
            bad(f"group_id {group!r} is not an integer or null", "/group_id", label)
            group = None
        key: Any = (label, group) if group is not None else i
        obj = objects.get(key)
        if obj is None:
            obj = objects[key] = _Object(label=label, line=line, pointer=ptr)
            if group is not None:
                obj.attrs["group_id"] = group
        obj.types.append(kind)
        if kind == "rectangle":
            obj.rects.append(_extent(xs, ys))
            obj.extents.append(obj.rects[-1])
        elif kind == "circle":
            cx, cy = xs[0], ys[0]
            r = math.hypot(xs[1] - cx, ys[1] - cy)
            obj.rings.append(_circle_ring(cx, cy, r))
            obj.extents.append((cx - r, cy - r, cx + r, cy + r))
        elif kind == "polygon":
            obj.rings.append([v for xy in zip(xs, ys, strict=True) for v in xy])
            obj.extents.append(_extent(xs, ys))
        else:
            for x, y in zip(xs, ys, strict=True):
                obj.keypoints.extend((x, y, 2.0))
            obj.extents.append(_extent(xs, ys))
        desc = shape.get("description")
        if isinstance(desc, str) and desc:
            obj.attrs["description"] = desc
        flags = shape.get("flags")
        if isinstance(flags, dict):
            for k, v in flags.items():
                obj.attrs[f"flag:{k}" if k in _BUILTIN_ATTRS else str(k)] = v
        elif flags is not None:
            bad(f"flags {flags!r} is not an object", "/flags", label)

    def emit(self, obj: _Object, rel: str, image: str) -> None:
        ignore = obj.label == IGNORE_LABEL
        rings = list(obj.rings)
        if rings:  # a merged region: its rectangles join the other rings as 4-corner rings
            rings.extend([a, b, c, b, c, d, a, d] for a, b, c, d in obj.rects)
        x0 = min(e[0] for e in obj.extents)
        y0 = min(e[1] for e in obj.extents)
        x1 = max(e[2] for e in obj.extents)
        y1 = max(e[3] for e in obj.extents)
        attrs = dict(obj.attrs)
        attrs["shape_type"] = obj.types[0] if len(obj.types) == 1 else tuple(obj.types)
        if ignore:
            attrs["ignore"] = True
        self.b.add_annotation(
            image=image,
            category=None if ignore else obj.label,
            file=rel,
            line=obj.line,
            bbox=(x0, y0, x1 - x0, y1 - y0),
            polygons=rings,
            keypoints=obj.keypoints or None,
            iscrowd=ignore,
            annotator=self.who,
            attributes=attrs,
            pointer=obj.pointer,
        )


def load_labelme(path: Path, *, annotator_from: AnnotatorFrom | str | None = None, **_options: Any) -> Batch:
    """Read a LabelMe folder (or one LabelMe JSON file) into a :class:`Batch`.

    ``annotator_from`` (see :class:`AnnotatorFrom`) takes each file's annotator from
    its path in the folder; an image then repeats only within one annotator's files.

    Each unreadable or foreign file is a problem of the batch; :class:`LoadError`
    only when there is no JSON file or none can be read.
    """
    path = Path(path)
    if path.is_dir():
        root, files = path, label_files(path, ".json")
        if not files:
            raise LoadError("no .json files in this LabelMe folder", path=path)
    else:
        root, files = path.parent, [path]
    r = _Reader(path=path, root=root, annotator_from=AnnotatorFrom.of_option(annotator_from))
    return read_label_files(path, root, files, r.read_file, r.b, kind="JSON")


FORMAT = Format(name=FORMAT_NAME, suffixes=(".json",), sniff=looks_like_labelme, load=load_labelme, folder=True)
