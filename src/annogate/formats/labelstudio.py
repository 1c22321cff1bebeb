"""Label Studio JSON export (the ``JSON`` export: an array of tasks), and the legacy 0.x layout.

What is read
------------
Each task is one image (``data.image``, or ``image_key``). Each of its annotations
is one annotator's work: ``completed_by`` (an integer, or an object with ``id`` and
``email``) becomes the row's annotator, so one task labelled by three people is a
multi-annotator batch for the agreement gate. ``was_cancelled`` annotations are
skipped (counted in ``meta``). The legacy 0.x layout (``completions`` instead of
``annotations``, ``result`` possibly a list of lists) is read the same way.

Coordinates are percentages of the image; every result carries the image size it
was drawn on (``original_width`` / ``original_height``), which converts it to
pixels. A result without a usable size is a problem (``schema``), not a guess.

* ``rectanglelabels``: ``x, y`` are the box's TOP-LEFT corner, and ``rotation`` is
  degrees clockwise (y down) about that corner (Label Studio's convention; checked
  against the oriented-box corners its own YOLO-OBB converter publishes). The model
  keeps the unrotated box and a rotation about the box CENTRE, so the corner is moved:
  ``centre = tl + R(w/2, h/2)``, ``bbox = (cx - w/2, cy - h/2, w, h)``.
* ``polygonlabels``: one ring in pixels (``closed: false`` kept as an attribute).
* ``keypointlabels``: one point each; a point whose ``parentID`` names another region
  of the same annotation becomes a keypoint of that object (the parent's class gets
  the keypoint names, in first-seen order over the file; visibility 2, as Label
  Studio has no visibility). Without a parent a point is a one-keypoint object of
  its own class.
* ``ellipselabels``: ``x, y`` centre, ``radiusX/radiusY``, ``rotation`` clockwise about
  the centre: a 32-vertex polygon (area kept exact, ``pi * rx * ry``).
* ``brushlabels``: Label Studio's bit-packed RLE (the ``rle-pack`` stream that its SDK
  decodes with ``decode_rle``) is decoded by a bounded decoder into the RGBA image,
  and the alpha channel becomes a COCO uncompressed RLE mask. Any inconsistency (a
  byte out of range, a header size that is not ``4 * w * h``, a run past the end, a
  stream that ends early, a mask above ``max_mask_pixels``) is a ``brush_mask``
  problem: "brush mask not decoded: why", and the region is not a row.
* ``choices``: image-level classes, not objects: kept in ``meta["labelstudio"]["choices"]``.
* ``relation`` results and per-task fields that are not objects (``textarea``,
  ``rating``, ``number``, ``datetime``, ``taxonomy``, ``pairwise``, ``ranker``) are
  counted in ``meta`` only. Any other type (``labels`` on text, ``videorectangle``...)
  is an ``unsupported_result`` problem, once per type: a file is never passed with
  labels it did not read (make it a warning in the rules if that is intended).
* ``predictions`` are ignored by default: they are a model's output, not anyone's
  labels, and mixing them with annotators' rows would make the model an annotator.
  ``predictions=True`` adds them as rows with ``score`` (the result's, else the
  prediction's) and annotator ``model:<model_version>``.

Image names (the join key with golden files): ``image_name="basename"`` (default)
takes the last path component of ``data.image`` (of the ``?d=`` parameter for
``/data/local-files/`` URLs), URL-decoded; ``"upload"`` also strips the 8-hex-digit
prefix Label Studio adds to uploaded files (``/data/upload/3/e97d4735-x.jpg`` ->
``x.jpg``); ``"value"`` keeps the whole string. Two different values with the same
name are reported (``duplicate_file_name``).

Labels are kept exactly as written: Label Studio does not enforce the case of the
config's ``<Label value>`` in exports ('Butterfly' vs 'butterfly'); the taxonomy
rules are where such a mismatch is caught.

Where: every row has a JSON pointer (``/0/annotations/1/result/3``) and the 1-based
line of its opening brace, found by one vectorised pass over the raw bytes (the
k-th ``{`` outside strings is the k-th object of a document-order walk). A file
with a duplicate key could misalign that count; the pointers are authoritative.

Hostile input: not UTF-8 (UTF-16/32 BOM), empty, not JSON, nesting beyond orjson's
limit, or larger than ``max_bytes`` is a clean :class:`LoadError`; non-numbers, nan,
values that overflow to infinity, oversized strings and wrong types are problems
on the row, which is then not converted.
"""

from __future__ import annotations

import gc
import hashlib
import math
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import numpy.typing as npt
import orjson

from annogate.formats import Format, LoadError
from annogate.formats._builder import BatchBuilder, image_side_problem, read_capped
from annogate.model import Batch

__all__ = ["FORMAT", "decode_brush_rle", "load_labelstudio", "looks_like_labelstudio", "ls_rectangle_to_model"]

FORMAT_NAME = "labelstudio"
#: Whole-file reads above this are refused (the export is parsed in memory).
MAX_BYTES = 1 << 30
#: Brush masks above this many pixels are not decoded (4 bytes a pixel in Label Studio's RLE).
MAX_MASK_PIXELS = 1 << 24
#: Longest brush stream decoded (each run costs a Python step; this bounds the time to seconds).
MAX_BRUSH_BYTES = 1 << 22
#: Longest image or class name accepted; anything longer is an attack or a mistake.
MAX_NAME = 4096
ELLIPSE_VERTICES = 32

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_BRACKET = np.zeros(256, np.int8)
_BRACKET[[ord("{"), ord("[")]] = 1
_BRACKET[[ord("}"), ord("]")]] = -1
_KEY_AT = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:', re.S)
_NOT_OBJECTS = frozenset({"textarea", "rating", "number", "datetime", "taxonomy", "pairwise", "ranker"})
_OBJECT_TYPES = {
    "rectanglelabels": "rectanglelabels",
    "rectangle": None,
    "polygonlabels": "polygonlabels",
    "polygon": None,
    "keypointlabels": "keypointlabels",
    "keypoint": None,
    "ellipselabels": "ellipselabels",
    "ellipse": None,
    "brushlabels": "brushlabels",
    "brush": None,
}


def _structure(raw: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Positions, +1/-1 deltas and depths-after of the brackets outside strings.

    The first stage of simdjson with NumPy: quotes not escaped by an odd run of
    backslashes toggle "inside a string"; brackets inside strings do not count.
    Escaped quotes are rare in label files, so those few are resolved in Python.
    """
    arr = np.frombuffer(raw, np.uint8)
    quotes = np.flatnonzero(arr == 34)
    if quotes.size:
        keep = np.ones(quotes.size, bool)
        for k in np.flatnonzero(arr[np.maximum(quotes - 1, 0)] == 92).tolist():
            j, run = int(quotes[k]) - 1, 0
            while j >= 0 and arr[j] == 92:
                run += 1
                j -= 1
            keep[k] = run % 2 == 0
        quotes = quotes[keep]
    lut = _BRACKET[arr]
    pos = np.flatnonzero(lut)
    pos = pos[(np.searchsorted(quotes, pos) & 1) == 0]
    delta = lut[pos].astype(np.int64)
    return pos.astype(np.int64), delta, np.cumsum(delta)


# -- sniffing ------------------------------------------------------------------
def looks_like_labelstudio(path: Path, head: bytes) -> bool:
    """A Label Studio export by content: a JSON array whose first element is a task.

    A task is an object with an ``annotations``, ``completions`` or ``predictions``
    array; when the first task is larger than the sniffed head (a long text in
    ``data``), a ``data`` object without COCO result keys is enough. COCO results
    arrays (objects with ``image_id``/``category_id``) are never claimed.
    """
    head = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    stripped = head.lstrip(b" \t\r\n")
    if stripped[:1] != b"[" or stripped[1:].lstrip(b" \t\r\n")[:1] != b"{":
        return False
    pos, delta, depth = _structure(head)
    # the first task spans from the first depth-2 "{" to the first return to depth 1
    opens = pos[(delta == 1) & (depth == 2)]
    if not opens.size:
        return False
    start = int(opens[0])
    ends = pos[(delta == -1) & (depth == 1) & (pos > start)]
    end = int(ends[0]) + 1 if ends.size else len(head)
    keys = _object_keys(head[start:end])
    if keys & {"image_id", "category_id"}:
        return False
    if keys & {"annotations", "completions", "predictions"}:
        return True
    return "data" in keys and not ends.size


def _object_keys(obj: bytes) -> set[str]:
    """Keys of the object that ``obj`` (its text, from its ``{``) opens, as far as shown."""
    pos, _, depth = _structure(obj)
    keys: set[str] = set()
    for m in _KEY_AT.finditer(obj):
        k = int(np.searchsorted(pos, m.start())) - 1
        if k >= 0 and int(depth[k]) == 1:
            keys.add(m.group(1).decode("utf-8", "replace"))
    return keys


# -- geometry --------------------------------------------------------------------
def ls_rectangle_to_model(
    x: float, y: float, w: float, h: float, rotation: float
) -> tuple[tuple[float, float, float, float], float]:
    """Label Studio's box (top-left corner, clockwise rotation about it; pixels) to the model's.

    The model stores the unrotated box and a clockwise rotation about its centre.
    Rotating about the top-left corner moves the centre to ``tl + R (w/2, h/2)``.
    """
    r = rotation % 360.0
    if r == 0.0:
        return (x, y, w, h), 0.0
    t = math.radians(r)
    c, s = math.cos(t), math.sin(t)
    cx = x + (w / 2) * c - (h / 2) * s
    cy = y + (w / 2) * s + (h / 2) * c
    return (cx - w / 2, cy - h / 2, w, h), r


def _ellipse_ring(cx: float, cy: float, rx: float, ry: float, rotation: float) -> list[float]:
    t = math.radians(rotation)
    c, s = math.cos(t), math.sin(t)
    out: list[float] = []
    for k in range(ELLIPSE_VERTICES):
        a = 2 * math.pi * k / ELLIPSE_VERTICES
        ex, ey = rx * math.cos(a), ry * math.sin(a)
        out += [cx + ex * c - ey * s, cy + ex * s + ey * c]
    return out


# -- brush RLE -----------------------------------------------------------------------
class BrushError(ValueError):
    """A Label Studio brush RLE stream that cannot be decoded (message says why)."""


def decode_brush_rle(rle: Any, *, width: int, height: int, max_pixels: int = MAX_MASK_PIXELS) -> npt.NDArray[np.bool_]:
    """Decode Label Studio's brush RLE to a (height, width) mask (alpha > 0).

    The stream (``rle-pack``, as in the SDK's ``decode_rle``) is bits, big-endian:
    32 bits value count, 5 bits word size - 1, four 4-bit run-length field sizes - 1,
    then runs: 1 bit repeat flag, 2 bits which size, that many bits run length - 1,
    then one word (repeat) or run-length words (literal). The values are the RGBA
    image row by row. Every read is bounded by the stream and the header's count,
    which must equal ``4 * width * height``; anything else raises :class:`BrushError`.
    """
    if not isinstance(rle, list) or not rle:
        raise BrushError("'rle' is not a non-empty list of bytes")
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise BrushError(f"image {width}x{height} is outside 1..{max_pixels} pixels")
    if len(rle) > MAX_BRUSH_BYTES:
        raise BrushError(f"stream of {len(rle)} bytes (limit {MAX_BRUSH_BYTES})")
    for v in rle:
        if type(v) is not int or not 0 <= v <= 255:
            raise BrushError(f"stream holds {v!r}, not a byte 0..255")
    data = bytes(rle)
    nbits = 8 * len(data)
    pos = 0

    def read(n: int) -> int:  # n <= 32: a window of at most 5 bytes
        nonlocal pos
        end = pos + n
        if end > nbits:
            raise BrushError("stream ends inside a run")
        b0, b1 = pos >> 3, (end + 7) >> 3
        v = (int.from_bytes(data[b0:b1], "big") >> ((b1 << 3) - end)) & ((1 << n) - 1)
        pos = end
        return v

    num = read(32)
    if num != 4 * width * height:
        raise BrushError(f"header says {num} values, the {width}x{height} RGBA image has {4 * width * height}")
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise BrushError(f"run ends at value {j}, past the image's {num}")
        if repeat:
            out[i:j] = read(word) & 0xFF
        else:
            out[i:j] = [read(word) & 0xFF for _ in range(j - i)]
        i = j
    return out.reshape(height, width, 4)[:, :, 3] > 0


def _mask_to_coco_rle(mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major runs, starting with zeros)."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


# -- reading -----------------------------------------------------------------------
def _num(v: Any) -> float | None:
    """A finite JSON number (booleans are not numbers), else None."""
    if type(v) is int:
        try:
            f = float(v)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    if type(v) is float and math.isfinite(v):
        return v
    return None


def _finite(*vals: float) -> bool:
    return all(map(math.isfinite, vals))


def _dict_lines(raw: bytes, root: Any) -> dict[int, int] | None:
    """id(dict) -> 1-based line of its opening brace, or None if the count disagrees.

    One vectorised pass finds every ``{`` outside strings; a document-order walk of
    the parsed tree meets the objects in the same order (orjson keeps key order).
    """
    arr = np.frombuffer(raw, np.uint8)
    pos, delta, _ = _structure(raw)
    braces = pos[(delta == 1) & (arr[pos] == 123)]
    newlines = np.flatnonzero(arr == 10)
    lines = (np.searchsorted(newlines, braces) + 1).tolist()
    out: dict[int, int] = {}
    stack: list[Any] = [root]
    n = 0
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if n >= len(lines):
                return None
            out[id(v)] = lines[n]
            n += 1
            stack.extend(reversed([x for x in v.values() if type(x) is dict or type(x) is list]))
        else:
            stack.extend(reversed([x for x in v if type(x) is dict or type(x) is list]))
    return out if n == len(lines) else None


def _image_name(value: str, mode: str) -> str:
    if mode == "value":
        return value
    s = value.replace("\\", "/")
    parts = urlsplit(s)
    path = parts.path
    d = parse_qs(parts.query).get("d")
    if d:
        path = d[0]
    base = posixpath.basename(unquote(path).rstrip("/"))
    if not base:
        return value
    if mode == "upload" and "/data/upload/" in s:
        base = _UPLOAD_PREFIX.sub("", base, count=1)
    return base


@dataclass
class _Row:
    kwargs: dict[str, Any]
    region: str | None = None
    parent: str | None = None  # for keypoints: the region id they belong to
    kp_name: str | None = None
    kp_xy: tuple[float, float] | None = None
    kps: dict[str, tuple[float, float]] = field(default_factory=dict)


class _Reader:
    def __init__(
        self,
        path: Path,
        *,
        predictions: bool,
        image_key: str,
        image_name: str,
        annotator: str,
        max_mask_pixels: int,
    ) -> None:
        self.path = path
        self.b = BatchBuilder(path=path, format=FORMAT_NAME)
        self.predictions = predictions
        self.image_key = image_key
        self.image_name = image_name
        self.annotator_mode = annotator
        self.max_mask_pixels = max_mask_pixels
        self.lines: dict[int, int] = {}
        self.lines_ok = True
        self.rows: list[_Row] = []
        self.kp_names: dict[str, list[str]] = {}
        self.ignored: dict[str, int] = {}
        self.not_objects: dict[str, int] = {}
        self.ignored_first: dict[str, tuple[str, int]] = {}
        self.choices: list[dict[str, Any]] = []
        self.emails: dict[str, str] = {}
        self.name_source: dict[str, str] = {}
        self.sizes: dict[str, tuple[float, float]] = {}
        self.cancelled = 0
        self.no_annotator = 0
        self.annotator_from: dict[str, int] = {}
        self.empty_annotations = 0
        self.coverage: dict[str, set[str]] = {}
        self.tasks_without_image = 0
        self.relations = 0
        self.predictions_seen = 0

    def line(self, obj: Any) -> int:
        return self.lines.get(id(obj), 0)

    def problem(self, rule: str, message: str, *, pointer: str, obj: Any, image: str | None = None, **kw: Any) -> None:
        self.b.problem(rule=rule, message=message, pointer=pointer, line=self.line(obj) or None, image=image, **kw)

    # -- tasks ---------------------------------------------------------------
    def task(self, i: int, task: Any) -> None:
        ptr = f"/{i}"
        if type(task) is not dict:
            self.problem("schema", f"{ptr}: a task must be an object, not {type(task).__name__}", pointer=ptr, obj=task)
            return
        image = self.task_image(i, task)
        for key in ("annotations", "completions"):
            anns = task.get(key)
            if anns is None:
                continue
            if type(anns) is not list:
                self.problem("schema", f"{ptr}/{key}: must be an array", pointer=f"{ptr}/{key}", obj=task, image=image)
                continue
            for j, ann in enumerate(anns):
                self.annotation(f"{ptr}/{key}/{j}", ann, image, prediction=False)
        preds = task.get("predictions")
        if type(preds) is list:
            self.predictions_seen += len(preds)
            if self.predictions:
                for j, ann in enumerate(preds):
                    self.annotation(f"{ptr}/predictions/{j}", ann, image, prediction=True)

    def task_image(self, i: int, task: dict[str, Any]) -> str:
        data = task.get("data")
        value: Any = None
        if type(data) is dict:
            value = data.get(self.image_key)
            if value is None and self.image_key == "image":
                value = next(
                    (v for v in data.values() if type(v) is str and v.lower().endswith(_IMAGE_EXT)),
                    None,
                )
        tid = task.get("id")
        fallback = f"task-{tid}" if type(tid) is int else f"task-at-{i}"
        name: str
        if type(value) is not str or not value:
            self.tasks_without_image += 1
            name = fallback
        elif len(value) > MAX_NAME:
            self.problem(
                "schema",
                f"/{i}/data/{self.image_key}: image reference of {len(value)} characters (limit {MAX_NAME});"
                f" named {fallback!r}",
                pointer=f"/{i}/data/{self.image_key}",
                obj=task,
            )
            name = fallback
        else:
            name = _image_name(value, self.image_name)
            prev = self.name_source.setdefault(name, value)
            if prev != value:
                self.problem(
                    "duplicate_file_name",
                    f"/{i}/data/{self.image_key}: {value!r} and {prev!r} both have the file name {name!r}"
                    " (images are matched by name; image_name='value' keeps whole paths)",
                    pointer=f"/{i}/data/{self.image_key}",
                    obj=task,
                    image=name,
                )
        if not self.b.has_image(name):
            self.b.add_image(name, width=None, height=None, line=self.line(task))
        return name

    def annotator(self, ptr: str, ann: dict[str, Any], prediction: bool) -> str | None:
        if prediction:
            mv = ann.get("model_version")
            return f"model:{mv}" if type(mv) in (str, int) else "model"
        cb = ann.get("completed_by")
        if type(cb) is dict:
            email = cb.get("email")
            ident = cb.get("id")
            if type(ident) is int and type(email) is str:
                self.emails[str(ident)] = email
            if self.annotator_mode == "email" and type(email) is str:
                return email[:MAX_NAME]
            if type(ident) in (int, str):
                return str(ident)[:MAX_NAME]
            return email[:MAX_NAME] if type(email) is str else None
        if cb is None:
            # some exports (e.g. the SDK's test_export_coco) omit completed_by; the
            # author is then the last creator (or, failing that, the last editor)
            for key in ("last_created_by", "updated_by"):
                if type(ann.get(key)) is int:
                    self.annotator_from[key] = self.annotator_from.get(key, 0) + 1
                    cb = ann[key]
                    break
        if type(cb) is int or (type(cb) is str and cb):
            name = str(cb)[:MAX_NAME]
            if self.annotator_mode == "email":
                return self.emails.get(name, name)
            return name
        self.no_annotator += 1
        return None

    def annotation(self, ptr: str, ann: Any, image: str, *, prediction: bool) -> None:
        if type(ann) is not dict:
            self.problem("schema", f"{ptr}: must be an object", pointer=ptr, obj=ann, image=image)
            return
        if ann.get("was_cancelled") is True:
            self.cancelled += 1
            return
        who = self.annotator(ptr, ann, prediction)
        results = ann.get("result")
        if results is None:
            results = []
        if type(results) is not list:
            self.problem("schema", f"{ptr}/result: must be an array", pointer=f"{ptr}/result", obj=ann, image=image)
            return
        # legacy 0.x: a list of lists of results
        flat: list[tuple[str, Any]] = []
        for k, r in enumerate(results):
            if type(r) is list:
                flat += [(f"{ptr}/result/{k}/{m}", x) for m, x in enumerate(r)]
            else:
                flat.append((f"{ptr}/result/{k}", r))
        if not flat:
            self.empty_annotations += 1
        if who is not None:
            self.coverage.setdefault(who, set()).add(image)
        score = _num(ann.get("score")) if prediction else None
        rows: list[_Row] = []
        for rptr, r in flat:
            row = self.result(rptr, r, image, who, score if prediction else None, prediction)
            if row is not None:
                rows.append(row)
        # tie keypoints to their parent region of the same annotation; rows stay in source order
        by_region = {r.region: r for r in rows if r.region is not None and r.kp_name is None}
        for r in rows:
            if r.kp_name is None:
                self.rows.append(r)
                continue
            parent = by_region.get(r.parent) if r.parent is not None else None
            ptr_r, line_r = r.kwargs["pointer"], r.kwargs["line"] or None
            if r.parent is not None and parent is None:
                self.b.problem(
                    rule="keypoint_parent",
                    message=f"{ptr_r}: parentID {r.parent!r:.80} is no region of this annotation;"
                    " the point is kept as an object of its own",
                    pointer=ptr_r,
                    line=line_r,
                    image=image,
                    severity="warning",
                )
            assert r.kp_xy is not None
            if parent is None:
                r.kps[r.kp_name] = r.kp_xy
                r.kwargs["bbox"] = (math.nan,) * 4  # a point has no box (all-nan: absent, not degenerate)
                self._kp_name(r.kwargs["category"], r.kp_name)
                self.rows.append(r)
            elif r.kp_name in parent.kps:
                self.b.problem(
                    rule="duplicate_keypoint",
                    message=f"{ptr_r}: a second {r.kp_name!r} point on region {parent.region!r}; ignored",
                    pointer=ptr_r,
                    line=line_r,
                    image=image,
                )
            else:
                parent.kps[r.kp_name] = r.kp_xy
                self._kp_name(parent.kwargs["category"], r.kp_name)

    def _kp_name(self, category: str | None, name: str) -> None:
        names = self.kp_names.setdefault(category or "", [])
        if name not in names:
            names.append(name)

    # -- results ---------------------------------------------------------------
    def result(
        self, ptr: str, r: Any, image: str, who: str | None, score: float | None, prediction: bool
    ) -> _Row | None:
        if type(r) is not dict:
            self.problem("schema", f"{ptr}: a result must be an object", pointer=ptr, obj=r, image=image)
            return None
        typ = r.get("type")
        if typ == "relation":
            self.relations += 1
            return None
        value = r.get("value")
        if typ == "choices":
            ch = value.get("choices") if type(value) is dict else None
            if type(ch) is list and all(type(c) is str for c in ch):
                self.choices.append(
                    {
                        "image": image,
                        "annotator": who,
                        "from_name": r.get("from_name") if type(r.get("from_name")) is str else None,
                        "choices": list(ch),
                        "pointer": ptr,
                        "line": self.line(r),
                    }
                )
            else:
                self.problem("schema", f"{ptr}/value/choices: must be an array of strings", pointer=ptr, obj=r)
            return None
        if type(typ) is not str or typ not in _OBJECT_TYPES:
            key = typ if type(typ) is str and len(typ) < 64 else "?"
            if key in _NOT_OBJECTS:
                self.not_objects[key] = self.not_objects.get(key, 0) + 1
                return None
            self.ignored[key] = self.ignored.get(key, 0) + 1
            self.ignored_first.setdefault(key, (ptr, self.line(r)))
            return None
        if type(value) is not dict:
            self.problem("schema", f"{ptr}/value: must be an object", pointer=ptr, obj=r, image=image)
            return None
        W, H = _num(r.get("original_width")), _num(r.get("original_height"))
        if r.get("original_width") is None and r.get("original_height") is None:
            # predictions imported into Label Studio often carry no size: use the one
            # the annotators' results gave this image, if any
            W, H = self.sizes.get(image, (None, None))
        # finite, positive and at most MAX_IMAGE_SIDE: 2**70 makes percent coordinates absurd pixels
        if W is None or H is None or image_side_problem(W) is not None or image_side_problem(H) is not None:
            self.problem(
                "schema",
                f"{ptr}: original_width/original_height missing or not positive numbers up to 2**31"
                f" ({r.get('original_width')!r:.40}, {r.get('original_height')!r:.40}):"
                " percent coordinates cannot be converted to pixels",
                pointer=ptr,
                obj=r,
                image=image,
            )
            return None
        self.image_size(ptr, r, image, W, H)
        # the class
        label_key = _OBJECT_TYPES[typ]
        category: str | None = None
        attributes: dict[str, Any] = {}
        if label_key is not None:
            labels = value.get(label_key)
            if type(labels) is not list or not all(type(x) is str for x in labels):
                self.problem("schema", f"{ptr}/value/{label_key}: must be an array of strings", pointer=ptr, obj=r)
                return None
            if labels:
                category = labels[0]
                if len(category) > MAX_NAME:
                    self.problem("schema", f"{ptr}: label longer than {MAX_NAME} characters", pointer=ptr, obj=r)
                    return None
            if len(labels) > 1:
                attributes["labels"] = list(labels)
                self.b.problem(
                    rule="multiple_labels",
                    message=f"{ptr}: {len(labels)} labels on one region {labels!r:.200}; the first is its class",
                    pointer=ptr,
                    line=self.line(r) or None,
                    image=image,
                    severity="warning",
                )
        origin = r.get("origin")
        if type(origin) is str and origin != "manual":
            attributes["origin"] = origin
        if prediction:
            rs = _num(r.get("score"))
            score = rs if rs is not None else score
        rid = r.get("id") if type(r.get("id")) is str else None
        kw: dict[str, Any] = {
            "image": image,
            "category": category,
            "file": self.path,
            "line": self.line(r),
            "annotator": who,
            "score": score,
            "pointer": ptr,
        }
        kind = typ.removesuffix("labels")

        def bad(what: str) -> None:
            self.problem("schema", f"{ptr}/value: {what}", pointer=ptr, obj=r, image=image)

        if kind == "rectangle":
            x, y, w, h = (_num(value.get(k)) for k in ("x", "y", "width", "height"))
            rot = _num(value.get("rotation", 0))
            if x is None or y is None or w is None or h is None or rot is None:
                bad("x, y, width, height (and rotation) must be finite numbers")
                return None
            px, py, pw, ph = x * W / 100, y * H / 100, w * W / 100, h * H / 100
            if not _finite(px, py, pw, ph):
                bad("coordinates overflow when converted to pixels")
                return None
            bbox, rotation = ls_rectangle_to_model(px, py, pw, ph, rot)
            if not _finite(*bbox):
                bad("coordinates overflow when converted to pixels")
                return None
            kw["bbox"] = bbox
            kw["rotation"] = rotation or None
        elif kind == "polygon":
            pts = value.get("points")
            ring: list[float] = []
            if type(pts) is not list:
                bad("points must be an array of [x, y] pairs")
                return None
            for p in pts:
                if type(p) is not list or len(p) != 2:
                    bad("points must be an array of [x, y] pairs")
                    return None
                px_, py_ = _num(p[0]), _num(p[1])
                if px_ is None or py_ is None:
                    bad("points must be finite numbers")
                    return None
                ring += [px_ * W / 100, py_ * H / 100]
            if not _finite(*ring):
                bad("coordinates overflow when converted to pixels")
                return None
            kw["polygons"] = [ring]
            if value.get("closed") is False:
                attributes["closed"] = False
        elif kind == "ellipse":
            x, y, rx, ry = (_num(value.get(k)) for k in ("x", "y", "radiusX", "radiusY"))
            rot = _num(value.get("rotation", 0))
            if x is None or y is None or rx is None or ry is None or rot is None:
                bad("x, y, radiusX, radiusY (and rotation) must be finite numbers")
                return None
            cx, cy, prx, pry = x * W / 100, y * H / 100, rx * W / 100, ry * H / 100
            if not _finite(cx, cy, prx, pry, math.pi * prx * pry):
                bad("coordinates overflow when converted to pixels")
                return None
            ring = _ellipse_ring(cx, cy, prx, pry, rot)
            if not _finite(*ring):
                bad("coordinates overflow when converted to pixels")
                return None
            kw["polygons"] = [ring]
            kw["area"] = math.pi * abs(prx * pry)
            attributes["shape"] = "ellipse"
        elif kind == "keypoint":
            x, y = _num(value.get("x")), _num(value.get("y"))
            if x is None or y is None:
                bad("x and y must be finite numbers")
                return None
            px, py = x * W / 100, y * H / 100
            if not _finite(px, py):
                bad("coordinates overflow when converted to pixels")
                return None
            parent = r.get("parentID")
            kw["attributes"] = attributes or None
            return _Row(
                kwargs=kw,
                region=rid,
                parent=parent if type(parent) is str and parent else None,
                kp_name=category or "point",
                kp_xy=(px, py),
            )
        else:  # brush
            if value.get("format", "rle") != "rle":
                self.problem(
                    "brush_mask",
                    f"{ptr}: brush mask not decoded: format {value.get('format')!r:.40} (only 'rle' is read)",
                    pointer=ptr,
                    obj=r,
                    image=image,
                )
                return None
            w_i, h_i = int(W), int(H)
            try:
                if w_i != W or h_i != H:
                    raise BrushError(f"image size {W}x{H} is not whole pixels")
                mask = decode_brush_rle(value.get("rle"), width=w_i, height=h_i, max_pixels=self.max_mask_pixels)
            except BrushError as e:
                self.problem("brush_mask", f"{ptr}: brush mask not decoded: {e}", pointer=ptr, obj=r, image=image)
                return None
            ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            if ys.size:
                kw["bbox"] = (float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))
            else:
                kw["bbox"] = (float("nan"),) * 4
            kw["rle"] = _mask_to_coco_rle(mask)
            kw["area"] = float(mask.sum())
        kw["attributes"] = attributes or None
        return _Row(kwargs=kw, region=rid)

    def image_size(self, ptr: str, r: Any, image: str, W: float, H: float) -> None:
        w0, h0 = self.sizes.setdefault(image, (W, H))
        if (w0, h0) == (W, H):
            self.b.add_image(image, width=W, height=H)
        else:
            self.problem(
                "image_size",
                f"{ptr}: drawn on a {W:g}x{H:g} image; an earlier result on {image!r} says {w0:g}x{h0:g}",
                pointer=ptr,
                obj=r,
                image=image,
                severity="warning",
            )

    # -- output ------------------------------------------------------------------
    def build(self, sha: str, n_tasks: int) -> Batch:
        b = self.b
        for row in self.rows:
            kw = row.kwargs
            cat = kw["category"]
            names = self.kp_names.get(cat or "", [])
            if cat is not None and not b.has_category(cat):
                b.add_category(cat, keypoints=names, line=kw["line"])
            if row.kps:
                kp: list[float] = []
                for nm in names:
                    xy = row.kps.get(nm)
                    kp += [xy[0], xy[1], 2.0] if xy is not None else [0.0, 0.0, 0.0]
                kw["keypoints"] = kp
            b.add_annotation(**kw)
        for typ, n in sorted(self.ignored.items()):
            ptr, line = self.ignored_first[typ]
            b.problem(
                rule="unsupported_result",
                message=f"{n} result(s) of type {typ!r}, which this reader does not read, are not gated"
                f" (first at {ptr})",
                pointer=ptr,
                line=line or None,
            )
        if self.no_annotator:
            b.problem(
                rule="no_annotator",
                message=f"{self.no_annotator} annotation(s) without completed_by: their objects have no annotator",
                severity="warning",
            )
        batch = b.build(sha256=sha, pointer_base=None)
        meta = {
            "tasks": n_tasks,
            "cancelled_annotations": self.cancelled,
            "empty_annotations": self.empty_annotations,
            "predictions": self.predictions_seen,
            "predictions_read": self.predictions,
            "relations": self.relations,
            "unsupported_result_types": dict(self.ignored),
            "other_result_types": dict(self.not_objects),
            # annotations without completed_by whose annotator came from this field
            "annotator_from": dict(self.annotator_from),
            "line_numbers": self.lines_ok,
            "choices": self.choices,
            "annotator_emails": dict(self.emails),
            # images each annotator submitted, including those with no objects: the
            # agreement gate can tell "saw it, drew nothing" from "never saw it"
            "coverage": {k: sorted(v) for k, v in self.coverage.items()},
        }
        skip = None
        if not len(batch.annotations) and n_tasks and self.tasks_without_image == n_tasks:
            skip = "Label Studio export without images (no task has data.image): not an image batch"
        return replace(batch, meta={"labelstudio": meta}, skip_reason=skip)


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    # the size as reported refuses a big file without reading it; the capped read holds
    # even when the file grows meanwhile
    raw = None if size > max_bytes else read_capped(path, max_bytes)
    if raw is None:
        raise LoadError(
            f"{max(size, max_bytes + 1)} bytes is above the Label Studio reader's limit of {max_bytes} "
            "(option max_bytes)",
            path=path,
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LoadError("UTF-16/32 encoded; Label Studio exports are UTF-8 (re-save as UTF-8)", path=path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip(b" \t\r\n"):
        raise LoadError("empty file: no Label Studio tasks", path=path)
    if b"\x00" in raw[:4]:
        raise LoadError("not UTF-8 (NUL bytes: UTF-16/32 without a byte-order mark?)", path=path)
    return raw


def load_labelstudio(
    path: Path,
    *,
    predictions: bool = False,
    image_key: str = "image",
    image_name: str = "basename",
    annotator: str = "id",
    max_bytes: int = MAX_BYTES,
    max_mask_pixels: int = MAX_MASK_PIXELS,
    **_other_formats_options: Any,
) -> Batch:
    """Read a Label Studio JSON export into a :class:`Batch` (see the module docstring).

    ``predictions``: also read ``predictions`` as scored rows (default False).
    ``image_key``: the ``data`` key naming the image. ``image_name``: ``basename``,
    ``upload`` or ``value`` (the join key). ``annotator``: ``id`` (default; stable when
    a user changes their email) or ``email``. Options meant for other formats are
    ignored, so one rules file can serve a folder of mixed exports.
    """
    path = Path(path)
    if image_name not in ("basename", "upload", "value"):
        raise LoadError(f"image_name must be basename, upload or value, not {image_name!r}", path=path)
    if annotator not in ("id", "email"):
        raise LoadError(f"annotator must be id or email, not {annotator!r}", path=path)
    raw = _read_bytes(path, max_bytes)
    was_enabled = gc.isenabled()
    gc.disable()  # the tree holds millions of objects and no cycles: tracing them triples the time
    try:
        return _load(path, raw, predictions, image_key, image_name, annotator, max_mask_pixels)
    finally:
        if was_enabled:
            gc.enable()


def _load(
    path: Path, raw: bytes, predictions: bool, image_key: str, image_name: str, annotator: str, max_mask_pixels: int
) -> Batch:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise LoadError(f"invalid JSON: {e.msg}", path=path, line=e.lineno, column=e.colno) from None
    if type(doc) is not list:
        raise LoadError(
            f"not a Label Studio export: the root is a JSON {type(doc).__name__}, expected an array of tasks", path=path
        )
    rd = _Reader(
        path,
        predictions=predictions,
        image_key=image_key,
        image_name=image_name,
        annotator=annotator,
        max_mask_pixels=max_mask_pixels,
    )
    lines = _dict_lines(raw, doc)
    # None: the brace count disagrees with the parsed objects (a duplicate key); rows
    # then carry line 0 and their JSON pointer, which stays exact
    rd.lines = lines or {}
    rd.lines_ok = lines is not None
    for i, task in enumerate(doc):
        rd.task(i, task)
    return rd.build(hashlib.sha256(raw).hexdigest(), len(doc))


FORMAT = Format(name=FORMAT_NAME, suffixes=(".json",), sniff=looks_like_labelstudio, load=load_labelstudio)
