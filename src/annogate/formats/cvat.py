"""CVAT XML 1.1, "for images" and "for video" (one batch per file).

Why a reader of its own: CVAT is the one common tool whose export keeps shapes that
COCO cannot hold (rotated boxes, polylines, ellipses, skeletons with named nodes,
typed attributes, video tracks), and a gate that flattens them would judge something
other than what the annotators drew. The file is parsed by :mod:`annogate.formats._xml`
(defusedxml; no DTD, entities or external references; size, depth and token caps;
the line of every element), so a hostile file fails cleanly as a :class:`LoadError`.

Mapping (pixels, top-left origin, as :mod:`annogate.model` defines):

* ``<box>``: ``xtl, ytl, xbr, ybr`` -> ``bbox = (xtl, ytl, xbr - xtl, ybr - ytl)``;
  ``rotation`` (degrees, clockwise about the box centre, as CVAT draws it) is kept
  with ``bbox`` the unrotated box (:func:`rotated_box_corners` gives the corners).
* ``<polygon>``: one ring.
* ``<polyline>``, ``<points>`` and ``<cuboid>``: *keypoint-like* objects, each vertex an
  ``(x, y, v)`` triple (``v`` = 1 when the shape is occluded, else 2). Why not polygons:
  they are open or unordered point sets, so as a ring the geometry gate would call a
  zig-zag line self-intersecting and a straight one of zero area; as keypoints every
  vertex is still checked against the image. Polylines and points carry no box (all
  ``nan``, which the gates read as absent): they have no area, and their extent as a
  box would make every single point and straight line a ``box_nonpositive`` defect. A
  cuboid's box is the extent of its 8 corners. ``attributes["shape"]`` says which shape
  it was.
* ``<ellipse>``: ``cx, cy, rx, ry, rotation`` -> a polygon of
  :data:`ELLIPSE_VERTICES` vertices (so mask IoU and area are right), ``bbox`` its
  axis-aligned extent and no row rotation (the rotation is in the polygon; a rotated
  unrotated-box would disagree with the polygon's extent in the geometry gate);
  ``attributes["ellipse"]`` keeps the five numbers.
* ``<mask>``: CVAT's row-major RLE over the ``left, top, width, height`` patch is
  validated (non-negative integers summing to ``width x height``, inside the image,
  at most :data:`MAX_MASK_PIXELS` pixels) and re-encoded as a COCO uncompressed RLE
  over the whole image (:func:`cvat_rle_to_coco`); ``bbox`` is the mask's tight extent.
* ``<skeleton>``: keypoints in the order the label's sublabels are declared in
  ``<meta>`` (not the XML order of the nodes); a node ``outside`` or missing is
  ``(0, 0, 0)``, ``occluded`` is ``v = 1``, else ``v = 2``; ``bbox`` is the extent of the
  labelled nodes (the scale OKS needs), absent when that is empty (one visible node). The category's keypoint
  names are the sublabel names and its skeleton the SVG edges
  (``data-node-from``/``data-node-to`` via the circles' ``data-node-id`` ->
  ``data-label-name``) as 0-based pairs.
* Attributes: ``occluded`` (bool), ``z_order`` (int), ``source`` (str), ``group_id``
  (int), ``shape`` (the element name), for tracks ``track_id`` and ``keyframe``; user
  attributes typed by their declaration: checkbox -> bool, number -> float, text,
  radio and select -> str (a user attribute named like a built-in key is stored as
  ``cvat:<name>``). Image-level ``<tag>`` elements are not objects: they are listed in
  ``Batch.meta["tags"]``.
* Tracks (CVAT for video): each frame's shape is an object on that frame's image; a
  shape with ``outside="1"`` is an absent object and not emitted, a skeleton node whose
  track is outside or has ended is ``v = 0``. Frames are the task's
  ``range(start_frame, stop_frame + 1, step)`` (``frame_filter`` ``step=N``), named
  ``frame_000010`` (datumaro's names, six digits) and sized by ``<original_size>``. In a
  "for images" file, a track's frame is the ``<image>`` whose ``id`` is that frame.
* Annotator: CVAT 1.1 has no per-shape annotator. A task's ``<assignee>`` (the person
  assigned to label it) is used for its images (``task_id`` in project exports); the
  ``<owner>`` is who created the task, not who labelled it, so it is never used.
* Image names: the ``name`` attribute. In a project export the same name may occur in
  several subsets; such names become ``<subset>/<name>`` so that they stay distinct.

Everything wrong short of an unreadable file is a :class:`~annogate.model.SourceProblem`
with the 1-based line of its element and an XPath-like pointer, and the object is still
emitted (with ``nan`` where a number was bad) so that no drawn object is hidden from
the gates. Rules: ``undeclared_label`` (a label absent from ``<meta>`` while ``<meta>``
declares labels; errors by default, set its severity to ``warning`` in the schema
thresholds to be lenient), ``undeclared_attribute``, ``bad_attribute_value``,
``missing_field``, ``bad_number``, ``bad_points``, ``unknown_node``, ``duplicate_node``,
``mask_invalid``, ``missing_image_size``, ``image_size`` (a width or height that is not
finite, not positive or above ``MAX_IMAGE_SIDE``: the size is then unknown),
``duplicate_image``, ``frame_outside_task``, ``duplicate_frame``, ``unknown_element``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.formats import Format, LoadError
from annogate.formats._builder import BatchBuilder, image_side_problem
from annogate.formats._xml import XMLProblem, line_of, parse_xml
from annogate.model import Batch

__all__ = [
    "ELLIPSE_VERTICES",
    "FORMAT",
    "MAX_FRAMES",
    "MAX_MASK_PIXELS",
    "cvat_rle_to_coco",
    "ellipse_polygon",
    "load_cvat",
    "looks_like_cvat",
    "rotated_box_corners",
]

FORMAT_NAME = "cvat"
# Vertices of the polygon an ellipse becomes: its area is 99.84 % of the ellipse's.
ELLIPSE_VERTICES = 64
# Largest mask patch decoded (pixels); a bigger one is a problem, not a memory spike.
MAX_MASK_PIXELS = 1 << 26
# Largest frame range turned into images; beyond it only frames with shapes are images.
MAX_FRAMES = 1_000_000

_SHAPES = frozenset({"box", "polygon", "polyline", "points", "ellipse", "mask", "skeleton", "cuboid"})
_BUILTIN_KEYS = frozenset({"shape", "occluded", "z_order", "source", "group_id", "track_id", "keyframe", "ellipse"})
_CUBOID_KEYS = tuple(f"{c}{k}" for k in "12" for c in ("xtl", "ytl", "xbl", "ybl", "xtr", "ytr", "xbr", "ybr"))
_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})
_NAN = float("nan")
_ABSENT_BOX = (_NAN, _NAN, _NAN, _NAN)  # the geometry gate reads an all-nan box as "no box"

_ROOT = re.compile(rb"^(?:\s|<\?xml[^>]*\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)*<annotations[\s>/]", re.DOTALL)
_META = re.compile(rb"<(?:version|meta)[\s>]")
_SVG_TAG = re.compile(r"<(line|circle)\b([^>]*)>", re.IGNORECASE)
_SVG_ATTR = re.compile(r"([\w:-]+)\s*=\s*\"([^\"]*)\"")
_STEP = re.compile(r"(?:^|[\s;,])step\s*=\s*(\d+)")


# --------------------------------------------------------------------------- public helpers


def looks_like_cvat(path: Path, head: bytes) -> bool:
    """A CVAT 1.1 file by content: root ``<annotations>`` with a ``<version>`` or ``<meta>``.

    Pascal VOC's root is ``<annotation>`` (singular). A DOCTYPE before the root is
    allowed here so that a hostile file is claimed and then refused by the parser with
    its reason, rather than passing as "no reader".
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            head = head.decode("utf-16").encode("utf-8", "replace")
        except UnicodeDecodeError:
            return False
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return _ROOT.match(head) is not None and _META.search(head) is not None


def rotated_box_corners(x: float, y: float, w: float, h: float, rotation: float) -> npt.NDArray[np.float64]:
    """Corners (top-left, top-right, bottom-right, bottom-left of the unrotated box) after rotation.

    ``rotation`` is in degrees, clockwise on screen (y down) about the box centre, which
    is how CVAT rotates a box; returns a (4, 2) array of x, y.
    """
    cx, cy = x + w / 2.0, y + h / 2.0
    t = np.radians(rotation)
    with np.errstate(invalid="ignore"):
        c, s = float(np.cos(t)), float(np.sin(t))
    d = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float64)
    return np.stack([cx + d[:, 0] * c - d[:, 1] * s, cy + d[:, 0] * s + d[:, 1] * c], axis=1)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, rotation: float = 0.0) -> list[float]:
    """Flat ring of :data:`ELLIPSE_VERTICES` points on the ellipse, rotated clockwise (y down)."""
    a = np.linspace(0.0, 2 * math.pi, ELLIPSE_VERTICES, endpoint=False)
    px, py = rx * np.cos(a), ry * np.sin(a)
    t = np.radians(rotation)
    with np.errstate(invalid="ignore"):
        c, s = float(np.cos(t)), float(np.sin(t))  # nan (not an exception) for a non-finite angle
    xs, ys = cx + px * c - py * s, cy + px * s + py * c
    out = np.empty(2 * ELLIPSE_VERTICES, np.float64)
    out[0::2], out[1::2] = xs, ys
    return [float(v) for v in out]


def cvat_rle_to_coco(
    counts: Sequence[int],
    *,
    left: int,
    top: int,
    width: int,
    height: int,
    image_width: int,
    image_height: int,
) -> tuple[dict[str, Any], tuple[float, float, float, float], int]:
    """CVAT's mask RLE as a COCO uncompressed RLE over the whole image.

    CVAT stores the ``width x height`` patch at ``(left, top)`` row-major, as run
    lengths that start with background; COCO runs are column-major over the image,
    also starting with background. Returns ``(rle, tight bbox, pixel count)``; raises
    ``ValueError`` saying which rule a bad mask breaks. Work and memory are linear in
    the patch (bounded by :data:`MAX_MASK_PIXELS`), never in the image.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"mask patch {width}x{height} is empty")
    if image_width <= 0 or image_height <= 0 or image_width * image_height >= 1 << 32:
        raise ValueError(f"mask on a {image_width}x{image_height} image: a COCO RLE holds fewer than 2**32 pixels")
    if width * height > MAX_MASK_PIXELS:
        raise ValueError(f"mask patch {width}x{height} exceeds the {MAX_MASK_PIXELS}-pixel limit")
    if left < 0 or top < 0 or left + width > image_width or top + height > image_height:
        raise ValueError(
            f"mask patch at ({left}, {top}) of {width}x{height} lies outside the {image_width}x{image_height} image"
        )
    if not counts:
        raise ValueError("mask has no run lengths")
    if min(counts) < 0:
        raise ValueError("mask has a negative run length")
    if max(counts) > width * height:  # also keeps the int64 sum below from wrapping
        raise ValueError(f"mask run length {max(counts)} exceeds the {width}x{height} patch")
    c = np.asarray(counts, np.int64)
    total = int(c.sum())
    if total != width * height:
        raise ValueError(f"mask run lengths sum to {total}, the {width}x{height} patch has {width * height} pixels")
    vals = np.zeros(c.size, np.bool_)
    vals[1::2] = True
    patch = np.repeat(vals, c).reshape(height, width)
    padded = np.zeros((width, height + 2), np.int8)
    padded[:, 1:-1] = patch.T
    d = np.diff(padded, axis=1)
    sc, sr = np.nonzero(d == 1)
    ec, er = np.nonzero(d == -1)
    n_img = image_width * image_height
    pixels = int(c[1::2].sum())
    if sc.size == 0:
        return {"size": [image_height, image_width], "counts": [n_img]}, (_NAN, _NAN, _NAN, _NAN), 0
    start = (left + sc) * image_height + top + sr
    end = (left + ec) * image_height + top + er
    # Runs that touch across a column boundary (patch spans the full image height) merge.
    keep = start[1:] != end[:-1]
    start = np.concatenate([start[:1], start[1:][keep]])
    end = np.concatenate([end[:-1][keep], end[-1:]])
    runs = np.empty(2 * start.size + 1, np.int64)
    runs[0] = start[0]
    runs[1:-1:2] = end - start
    runs[2:-1:2] = start[1:] - end[:-1]
    runs[-1] = n_img - end[-1]
    x0, x1 = left + int(sc.min()), left + int(ec.max()) + 1
    y0, y1 = top + int(sr.min()), top + int(er.max())
    rle = {"size": [image_height, image_width], "counts": [int(v) for v in runs]}
    return rle, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), pixels


# --------------------------------------------------------------------------- meta


@dataclass
class _Label:
    name: str
    line: int
    attrs: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # name -> (input_type, values)
    nodes: list[str] = field(default_factory=list)
    svg: str = ""
    edges: tuple[tuple[int, int], ...] = ()
    kind: str = ""


@dataclass
class _Task:
    id: str | None
    assignee: str | None
    start: int | None
    stop: int | None
    step: int
    size: int | None
    width: float | None
    height: float | None
    line: int


def _text(el: ET.Element | None, tag: str) -> str | None:
    if el is None:
        return None
    c = el.find(tag)
    return None if c is None else (c.text or "").strip()


def _int_or_none(s: str | None) -> int | None:
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        return None


def _svg_edges(label: _Label) -> tuple[list[tuple[int, int]], list[str]]:
    """0-based node pairs of a skeleton's SVG, and messages for edges that name no node."""
    node_of_id: dict[str, str] = {}
    lines: list[dict[str, str]] = []
    for tag, body in _SVG_TAG.findall(label.svg):
        a: dict[str, str] = {k: v for k, v in _SVG_ATTR.findall(body)}
        if tag.lower() == "circle" and "data-node-id" in a:
            node_of_id[a["data-node-id"]] = a.get("data-label-name", a["data-node-id"])
        elif tag.lower() == "line" and "data-node-from" in a:
            lines.append(a)
    index = {n: i for i, n in enumerate(label.nodes)}
    edges: list[tuple[int, int]] = []
    bad: list[str] = []
    for a in lines:
        ends = []
        for key in ("data-node-from", "data-node-to"):
            node = node_of_id.get(a.get(key, ""), a.get(key, ""))
            ends.append(index.get(node))
        if ends[0] is None or ends[1] is None:
            bad.append(f"edge {a.get('data-node-from')}-{a.get('data-node-to')} names a node that is not a sublabel")
        else:
            edges.append((ends[0], ends[1]))
    return edges, bad


# --------------------------------------------------------------------------- reader


class _Reader:
    """One pass over the parsed tree, feeding a :class:`BatchBuilder` in source order."""

    def __init__(self, path: Path, root: ET.Element) -> None:
        self.path = path
        self.root = root
        self.b = BatchBuilder(path=path, format=FORMAT_NAME)
        self.file = str(path)
        self.labels: dict[str, _Label] = {}
        self.declared = False
        self.undeclared: set[str] = set()
        self.tasks: list[_Task] = []
        self.tags: list[dict[str, Any]] = []
        self.image_size: dict[str, tuple[float, float]] = {}
        # node order of skeleton classes not declared in <meta>: the first instance's
        self.node_order: dict[str, list[str]] = {}

    # -- problems ----------------------------------------------------------
    def problem(
        self,
        rule: str,
        message: str,
        el: ET.Element | None,
        *,
        pointer: str | None = None,
        image: str | None = None,
        category: str | None = None,
        line: int | None = None,
    ) -> None:
        self.b.problem(
            rule=rule,
            message=message,
            line=line or line_of(el) or None,
            pointer=pointer,
            image=image,
            category=category,
        )

    def number(self, el: ET.Element, key: str, pointer: str, *, default: float | None = None) -> float:
        raw = el.get(key)
        if raw is None:
            if default is not None:
                return default
            self.problem("missing_field", f"<{el.tag}> has no {key!r} attribute", el, pointer=pointer)
            return _NAN
        try:
            return float(raw)
        except ValueError:
            self.problem("bad_number", f"<{el.tag}> {key}={raw!r} is not a number", el, pointer=pointer)
            return _NAN

    def side(self, el: ET.Element, key: str, pointer: str, *, image: str | None = None) -> float:
        """An image width/height: NaN (unknown) with an ``image_size`` problem unless in ``(0, MAX_IMAGE_SIDE]``.

        Why: ``width="1180591620717411303424"`` or ``height="-80"`` parse as numbers, and a
        2**70 image makes every box fit while a negative one makes none; neither is an image.
        """
        v = self.number(el, key, pointer)
        raw = el.get(key)
        if raw is None or _parse_float(raw) is None:  # missing or not a number: already a problem
            return _NAN
        why = image_side_problem(v)
        if why is None:
            return v
        self.problem("image_size", f"<{el.tag}> {key}={raw!r:.40}: {why}", el, pointer=pointer, image=image)
        return _NAN

    def rotation(self, el: ET.Element, pointer: str) -> float:
        """Degrees; a bad or non-finite angle is a problem and reads as 0 (the column stays usable)."""
        raw = el.get("rotation")
        if raw is None:
            return 0.0
        try:
            r = float(raw)
        except ValueError:
            r = _NAN
        if math.isfinite(r):
            return r
        self.problem("bad_number", f"<{el.tag}> rotation={raw!r} is not a finite number", el, pointer=pointer)
        return 0.0

    def flag(self, el: ET.Element, key: str, pointer: str) -> bool:
        raw = el.get(key)
        if raw is None:
            return False
        v = raw.strip().lower()
        if v in _TRUE:
            return True
        if v not in _FALSE:
            self.problem("bad_number", f"<{el.tag}> {key}={raw!r} is not 0/1", el, pointer=pointer)
        return False

    def points(self, el: ET.Element, pointer: str) -> list[float]:
        raw = el.get("points")
        if raw is None:
            self.problem("missing_field", f"<{el.tag}> has no 'points' attribute", el, pointer=pointer)
            return []
        out: list[float] = []
        raw = raw.strip()
        if not raw:
            return out
        for k, pair in enumerate(raw.split(";")):
            xy = pair.split(",")
            try:
                if len(xy) != 2:
                    raise ValueError
                out.append(float(xy[0]))
                out.append(float(xy[1]))
            except ValueError:
                self.problem(
                    "bad_points",
                    f"<{el.tag}> point {k + 1} {pair[:40]!r} is not 'x,y' (points are 'x1,y1;x2,y2;...')",
                    el,
                    pointer=pointer,
                )
                out.extend((_NAN, _NAN))
        return out

    # -- meta --------------------------------------------------------------
    def read_meta(self) -> None:
        meta = self.root.find("meta")
        if meta is None:
            return
        for labels_el in meta.iter("labels"):
            self.declared = True
            found = labels_el.findall("label")
            # parents first, so that a sublabel listed before its skeleton still finds it
            for label_el in sorted(found, key=lambda e: _text(e, "parent") is not None):
                self._read_label(label_el, parent=None)
        for lab in self.labels.values():
            if lab.nodes:
                edges, bad = _svg_edges(lab)
                lab.edges = tuple(edges)
                for msg in bad:
                    self.problem(
                        "unknown_node", f"skeleton {lab.name!r}: {msg}", None, line=lab.line, category=lab.name
                    )
            self.b.add_category(lab.name, keypoints=lab.nodes, skeleton=lab.edges, line=lab.line)
        for el in meta.iter():
            if el.tag in ("task", "job"):
                self._read_task(el)

    def _read_label(self, lab: ET.Element, *, parent: str | None) -> None:
        name = _text(lab, "name")
        if name is None:
            self.problem("missing_field", "<label> has no <name>", lab)
            return
        parent = _text(lab, "parent") or parent
        kind = "sublabel" if parent else (_text(lab, "type") or "")
        if parent:
            p = self.labels.get(parent)
            if p is None:
                self.problem("undeclared_label", f"sublabel {name!r} names parent {parent!r}, not declared", lab)
            elif name in p.nodes:
                self.problem("duplicate_node", f"skeleton {parent!r} declares node {name!r} twice", lab)
            else:
                p.nodes.append(name)
            return  # sublabels are nodes, not classes (a top-level label of the same name may exist)
        if name in self.labels:
            return  # project exports may repeat a label per task: first wins
        label = _Label(name=name, line=line_of(lab), kind=kind, svg=_text(lab, "svg") or "")
        for a in lab.iter("attribute"):
            an = _text(a, "name")
            if an:
                itype = (_text(a, "input_type") or "text").lower()
                values = tuple(v.strip() for v in (_text(a, "values") or "").splitlines() if v.strip())
                if itype in ("radio", "select") and len(values) == 1 and " " in values[0]:
                    values = tuple(values[0].split())  # old exports separate values by spaces
                label.attrs[an] = (itype, values)
        self.labels[name] = label
        sub = lab.find("sublabels")
        if sub is not None:  # nested sublabels (newer layouts)
            for s in sub.findall("label"):
                self._read_label(s, parent=name)

    def _read_task(self, el: ET.Element) -> None:
        assignee = _text(el.find("assignee"), "username") or None
        size = el.find("original_size")
        frame_filter = _text(el, "frame_filter") or ""
        m = _STEP.search(frame_filter)
        self.tasks.append(
            _Task(
                id=_text(el, "id"),
                assignee=assignee,
                start=_int_or_none(_text(el, "start_frame")),
                stop=_int_or_none(_text(el, "stop_frame")),
                step=max(1, int(m.group(1))) if m else 1,
                size=_int_or_none(_text(el, "size")),
                width=self._task_side(size, "width"),
                height=self._task_side(size, "height"),
                line=line_of(el),
            )
        )

    def _task_side(self, size: ET.Element | None, tag: str) -> float | None:
        """``<original_size><tag>``: None when absent; an ``image_size`` problem (and None) when unusable."""
        text = _text(size, tag)
        if size is None or text is None:
            return None
        v = _parse_float(text)
        why = "not a number" if v is None else image_side_problem(v)
        if why is None and v is not None:
            return v
        el = size.find(tag)
        self.problem(
            "image_size", f"<original_size><{tag}> {text!r:.40}: {why}", el, pointer=f"/meta//original_size/{tag}"
        )
        return None

    def assignee(self, task_id: str | None) -> str | None:
        if task_id is not None:
            for t in self.tasks:
                if t.id == task_id:
                    return t.assignee
        if len(self.tasks) == 1:
            return self.tasks[0].assignee
        return None

    # -- labels and attributes ---------------------------------------------
    def category(self, el: ET.Element, label: str | None, pointer: str) -> str | None:
        if not label:
            return None
        lab = self.labels.get(label)
        if (lab is None or lab.kind == "sublabel") and self.declared and label not in self.undeclared:
            self.undeclared.add(label)
            self.problem(
                "undeclared_label",
                f"label {label!r} is not declared in <meta> (first used here)",
                el,
                pointer=pointer,
                category=label,
            )
        return label

    def attributes(self, el: ET.Element, tag: str, label: str | None, pointer: str) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": tag, "occluded": self.flag(el, "occluded", pointer)}
        z = el.get("z_order")
        if z is not None:
            try:
                out["z_order"] = int(z)
            except ValueError:
                self.problem("bad_number", f"<{tag}> z_order={z!r} is not an integer", el, pointer=pointer)
        if el.get("source") is not None:
            out["source"] = el.get("source")
        g = el.get("group_id")
        if g is not None:
            try:
                out["group_id"] = int(g)
            except ValueError:
                self.problem("bad_number", f"<{tag}> group_id={g!r} is not an integer", el, pointer=pointer)
        lab = self.labels.get(label) if label else None
        for a in el.findall("attribute"):
            name = a.get("name")
            if name is None:
                self.problem("missing_field", "<attribute> has no 'name'", a, pointer=pointer)
                continue
            raw = a.text or ""
            spec = lab.attrs.get(name) if lab is not None else None
            value: Any = raw
            if spec is None:
                if lab is not None:
                    self.problem(
                        "undeclared_attribute",
                        f"attribute {name!r} is not declared for label {label!r}",
                        a,
                        pointer=pointer,
                        category=label,
                    )
            else:
                value = self._typed(a, name, raw, spec, label, pointer)
            out[f"cvat:{name}" if name in _BUILTIN_KEYS else name] = value
        return out

    def _typed(
        self, a: ET.Element, name: str, raw: str, spec: tuple[str, tuple[str, ...]], label: str | None, pointer: str
    ) -> Any:
        itype, values = spec
        v = raw.strip()
        if itype == "checkbox":
            if v.lower() in ("true", "1"):
                return True
            if v.lower() in ("false", "0"):
                return False
            msg = f"checkbox attribute {name!r} is {raw!r}, not true/false"
        elif itype == "number":
            try:
                return float(v)
            except ValueError:
                msg = f"number attribute {name!r} is {raw!r}, not a number"
        elif itype in ("radio", "select"):
            if not values or v in values:
                return v
            msg = f"{itype} attribute {name!r} is {raw!r}, not one of its declared values {list(values)[:10]}"
        else:
            return raw
        self.problem("bad_attribute_value", msg, a, pointer=pointer, category=label)
        return raw

    # -- shapes ------------------------------------------------------------
    def shape(
        self,
        el: ET.Element,
        *,
        image: str,
        label: str | None,
        pointer: str,
        annotator: str | None,
        extra: Mapping[str, Any] | None = None,
        nodes: Mapping[str, ET.Element] | None = None,
    ) -> None:
        """Emit one object for shape element ``el`` (``nodes``: a track skeleton's node shapes)."""
        tag = el.tag
        cat = self.category(el, label, pointer)
        attrs = self.attributes(el, tag, label, pointer)
        if extra:
            attrs.update(extra)
        kw: dict[str, Any] = {}
        occluded = bool(attrs.get("occluded"))
        if tag == "box":
            x0, y0 = self.number(el, "xtl", pointer), self.number(el, "ytl", pointer)
            x1, y1 = self.number(el, "xbr", pointer), self.number(el, "ybr", pointer)
            kw["bbox"] = (x0, y0, x1 - x0, y1 - y0)
            kw["rotation"] = self.rotation(el, pointer)
        elif tag == "polygon":
            ring = self.points(el, pointer)
            kw["polygons"] = [ring] if ring else []
        elif tag in ("polyline", "points"):
            kw["keypoints"] = self._vertices(self.points(el, pointer), occluded)
            kw["bbox"] = _ABSENT_BOX
        elif tag == "cuboid":
            xy = [self.number(el, k, pointer) for k in _CUBOID_KEYS]
            kw["keypoints"] = self._vertices(xy, occluded)
        elif tag == "ellipse":
            cx, cy = self.number(el, "cx", pointer), self.number(el, "cy", pointer)
            rx, ry = self.number(el, "rx", pointer), self.number(el, "ry", pointer)
            rot = self.rotation(el, pointer)
            attrs["ellipse"] = (cx, cy, rx, ry, rot)
            kw["polygons"] = [ellipse_polygon(cx, cy, rx, ry, rot)]
            if not all(math.isfinite(v) for v in (cx, cy, rx, ry, rot)):
                kw["bbox"] = (_NAN,) * 4
        elif tag == "mask":
            self._mask(el, image, pointer, kw)
        elif tag == "skeleton":
            if nodes is None:
                nodes = self._node_elements(el, label, pointer)
            kw["keypoints"] = kp = self._skeleton(el, cat, nodes, pointer)
            kw["bbox"] = _extent(kp)
        self.b.add_annotation(
            image=image,
            category=cat,
            file=self.file,
            line=line_of(el),
            annotator=annotator,
            attributes=attrs,
            pointer=pointer,
            **kw,
        )

    @staticmethod
    def _vertices(xy: Sequence[float], occluded: bool) -> list[float]:
        v = 1.0 if occluded else 2.0
        out: list[float] = []
        for j in range(0, len(xy) - 1, 2):
            out.extend((xy[j], xy[j + 1], v))
        return out

    def _node_elements(self, el: ET.Element, label: str | None, pointer: str) -> dict[str, ET.Element]:
        out: dict[str, ET.Element] = {}
        for p in el:
            if p.tag != "points":
                if p.tag != "attribute":
                    self.problem("unknown_element", f"<{p.tag}> inside <skeleton> is not a node", p, pointer=pointer)
                continue
            name = p.get("label") or ""
            if name in out:
                self.problem("duplicate_node", f"skeleton node {name!r} appears twice", p, pointer=pointer)
                continue
            out[name] = p
        return out

    def _skeleton(self, el: ET.Element, cat: str | None, nodes: Mapping[str, ET.Element], pointer: str) -> list[float]:
        names = self._node_names(cat, list(nodes))
        index = {n: i for i, n in enumerate(names)}
        kp = [0.0] * (3 * len(names))
        for name, p in nodes.items():
            k = index.get(name)
            if k is None:
                self.problem(
                    "unknown_node",
                    f"skeleton {cat!r} has no node {name!r} (its nodes: {names[:20]})",
                    p,
                    pointer=pointer,
                    category=cat,
                )
                continue
            if self.flag(p, "outside", pointer):
                continue
            xy = self.points(p, pointer)
            if len(xy) != 2:
                self.problem(
                    "bad_points", f"skeleton node {name!r} has {len(xy) // 2} points, not 1", p, pointer=pointer
                )
                if len(xy) < 2:
                    continue
            kp[3 * k : 3 * k + 3] = [xy[0], xy[1], 1.0 if self.flag(p, "occluded", pointer) else 2.0]
        return kp

    def _node_names(self, cat: str | None, seen: list[str]) -> list[str]:
        """Node order of skeleton class ``cat``: declared sublabels, else the first instance's order."""
        if cat is None:
            return seen
        lab = self.labels.get(cat)
        if lab is not None and lab.nodes:
            return lab.nodes
        order = self.node_order.get(cat)
        if order is None:
            order = self.node_order[cat] = list(seen)
            if not self.b.has_category(cat):
                self.b.add_category(cat, keypoints=order)
        return order

    def _mask(self, el: ET.Element, image: str, pointer: str, kw: dict[str, Any]) -> None:
        left, top = self.number(el, "left", pointer), self.number(el, "top", pointer)
        w, h = self.number(el, "width", pointer), self.number(el, "height", pointer)
        kw["bbox"] = (left, top, w, h)
        iw, ih = self.image_size.get(image, (_NAN, _NAN))
        raw = el.get("rle")
        if raw is None:
            self.problem("missing_field", "<mask> has no 'rle' attribute", el, pointer=pointer, image=image)
            return
        if not all(math.isfinite(v) and v == int(v) for v in (left, top, w, h)):
            self.problem("mask_invalid", "mask left/top/width/height are not integers", el, pointer=pointer)
            return
        if not (math.isfinite(iw) and math.isfinite(ih)):
            self.problem(
                "missing_image_size", "mask on an image of unknown size: not decoded", el, pointer=pointer, image=image
            )
            return
        try:
            counts = [int(t) for t in raw.split(",")]
            rle, bbox, pixels = cvat_rle_to_coco(
                counts,
                left=int(left),
                top=int(top),
                width=int(w),
                height=int(h),
                image_width=int(iw),
                image_height=int(ih),
            )
        except ValueError as e:
            msg = str(e) if "mask" in str(e) else "mask rle is not a comma-separated list of integers"
            self.problem("mask_invalid", msg, el, pointer=pointer, image=image)
            return
        kw["rle"] = rle
        kw["bbox"] = bbox
        kw["area"] = float(pixels)

    # -- images ------------------------------------------------------------
    def read(self) -> Batch:
        self.read_meta()
        images = [c for c in self.root if c.tag == "image"]
        tracks = [c for c in self.root if c.tag == "track"]
        for c in self.root:
            if c.tag not in ("version", "meta", "image", "track", "tag"):
                self.problem("unknown_element", f"<{c.tag}> is not a CVAT 1.1 element", c)
        frame_image = self.read_images(images)
        if tracks or (not images and self.tasks):
            self.read_tracks(tracks, frame_image, video=not images)
        for c in self.root:
            if c.tag == "tag":
                self.tags.append({"frame": c.get("frame"), "label": c.get("label"), "line": line_of(c)})
        batch = self.b.build(sha256=_sha256(self.path), pointer_base=None)
        if self.tags:
            batch.meta["tags"] = self.tags
        return batch

    def read_images(self, images: list[ET.Element]) -> dict[int, str]:
        subsets: dict[str, set[str]] = {}
        for im in images:
            subsets.setdefault(im.get("name") or "", set()).add(im.get("subset") or "")
        seen: set[str] = set()
        frame_image: dict[int, str] = {}
        counters: dict[str, int] = {}
        for ii, im in enumerate(images, 1):
            ptr = f"/annotations/image[{ii}]"
            name = im.get("name")
            if not name:
                name = f"image_{im.get('id', ii)}"
                self.problem("missing_field", f"<image> has no 'name': called {name!r}", im, pointer=ptr)
            key = f"{im.get('subset')}/{name}" if len(subsets.get(name, ())) > 1 else name
            if key in seen:
                self.problem(
                    "duplicate_image", f"image {key!r} appears twice: objects merged", im, pointer=ptr, image=key
                )
            seen.add(key)
            w, h = self.side(im, "width", ptr, image=key), self.side(im, "height", ptr, image=key)
            self.b.add_image(key, width=w, height=h, line=line_of(im))
            self.image_size.setdefault(key, (w, h))
            fid = _int_or_none(im.get("id"))
            if fid is not None:
                frame_image.setdefault(fid, key)
            annotator = self.assignee(im.get("task_id"))
            counters.clear()
            for el in im:
                k = counters[el.tag] = counters.get(el.tag, 0) + 1
                p = f"{ptr}/{el.tag}[{k}]"
                if el.tag in _SHAPES:
                    self.shape(el, image=key, label=el.get("label"), pointer=p, annotator=annotator)
                elif el.tag == "tag":
                    self.category(el, el.get("label"), p)
                    self.tags.append(
                        {
                            "image": key,
                            "label": el.get("label"),
                            "line": line_of(el),
                            "attributes": self.attributes(el, "tag", el.get("label"), p),
                        }
                    )
                else:
                    self.problem("unknown_element", f"<{el.tag}> is not a CVAT shape", el, pointer=p, image=key)
        return frame_image

    # -- tracks ------------------------------------------------------------
    def read_tracks(self, tracks: list[ET.Element], frame_image: dict[int, str], *, video: bool) -> None:
        task = self.tasks[0] if self.tasks else None
        frames: range | None = None
        w = h = None
        if task is not None:
            w, h = task.width, task.height
            if task.start is not None and task.stop is not None:
                frames = range(task.start, task.stop + 1, task.step)
        if video:
            if w is None or h is None:
                self.problem(
                    "missing_image_size",
                    "no <original_size> in <meta>: frame sizes unknown, so nothing is checked against the image",
                    self.root.find("meta"),
                )
            n_frames = 0 if frames is None else max(0, (frames.stop - frames.start - 1) // frames.step + 1)
            if frames is not None and n_frames <= MAX_FRAMES:
                for f in frames:
                    self._frame(f, frame_image, w, h)
            elif frames is not None:
                self.problem(
                    "frame_outside_task",
                    f"{n_frames} frames exceed the {MAX_FRAMES}-frame limit: only frames with shapes become images",
                    self.root.find("meta"),
                )
        annotator = self.assignee(None)
        for ti, tr in enumerate(tracks, 1):
            self._track(tr, f"/annotations/track[{ti}]", frames, frame_image, w, h, annotator, video)

    def _frame(self, f: int, frame_image: dict[int, str], w: float | None, h: float | None) -> str:
        name = frame_image.get(f)
        if name is None:
            name = frame_image[f] = f"frame_{f:06d}"
            self.b.add_image(name, width=w, height=h)
            self.image_size[name] = (_NAN if w is None else w, _NAN if h is None else h)
        return name

    def _track(
        self,
        tr: ET.Element,
        ptr: str,
        frames: range | None,
        frame_image: dict[int, str],
        w: float | None,
        h: float | None,
        annotator: str | None,
        video: bool,
    ) -> None:
        label = tr.get("label")
        track_extra: dict[str, Any] = {}
        tid = _int_or_none(tr.get("id"))
        if tid is not None:
            track_extra["track_id"] = tid
        # Skeleton tracks: one sub-track per node, each with its own frames; a node's
        # state on a frame is its latest shape at or before that frame (CVAT keeps a
        # track's state until its next keyframe; ``outside`` ends it).
        sub_tracks: dict[str, tuple[list[int], list[ET.Element]]] = {}
        is_skeleton = tr.find("skeleton") is not None
        for st in tr.findall("track"):
            # nothing inside a track may pass unread: only skeleton tracks hold node tracks of <points>
            for node_el in st:
                if not is_skeleton or node_el.tag != "points":
                    where = "a skeleton's node track" if is_skeleton else "a track without <skeleton> shapes"
                    self.problem("unknown_element", f"<{node_el.tag}> in {where} is not read", node_el, pointer=ptr)
            entries = sorted(
                ((f, p) for p in st if (f := _int_or_none(p.get("frame"))) is not None), key=lambda t: t[0]
            )
            sub_tracks.setdefault(st.get("label") or "", ([f for f, _ in entries], [p for _, p in entries]))
        counters: dict[str, int] = {}
        seen_frames: set[int] = set()
        for el in tr:
            if el.tag == "track":
                continue
            k = counters[el.tag] = counters.get(el.tag, 0) + 1
            p = f"{ptr}/{el.tag}[{k}]"
            if el.tag not in _SHAPES:
                self.problem("unknown_element", f"<{el.tag}> is not a CVAT shape", el, pointer=p)
                continue
            f = _int_or_none(el.get("frame"))
            if f is None:
                self.problem("missing_field", f"<{el.tag}> in a track has no integer 'frame'", el, pointer=p)
                continue
            if f in seen_frames:
                self.problem("duplicate_frame", f"track has two shapes on frame {f}: the first is kept", el, pointer=p)
                continue
            seen_frames.add(f)
            if video and frames is not None and f not in frames:
                self.problem(
                    "frame_outside_task",
                    f"frame {f} is not among the task's frames ({frames.start}..{frames.stop - 1} step {frames.step})",
                    el,
                    pointer=p,
                )
            if not video and f not in frame_image:
                self.problem("frame_outside_task", f"frame {f} has no <image> with that id", el, pointer=p)
            image = self._frame(f, frame_image, w, h)
            if self.flag(el, "outside", p):
                continue  # outside: the object is absent on this frame
            extra = {**track_extra, "keyframe": self.flag(el, "keyframe", p)}
            if tr.get("source") is not None and el.get("source") is None:
                extra["source"] = tr.get("source")
            if tr.get("group_id") is not None and el.get("group_id") is None:
                extra["group_id"] = _int_or_none(tr.get("group_id"))
            nodes = None
            if el.tag == "skeleton" and sub_tracks:
                nodes = {}
                for name, (fs, ps) in sub_tracks.items():
                    j = bisect.bisect_right(fs, f) - 1
                    if j >= 0:
                        nodes[name] = ps[j]
            self.shape(el, image=image, label=label, pointer=p, annotator=annotator, extra=extra, nodes=nodes)


def _extent(kp: Sequence[float]) -> tuple[float, float, float, float]:
    """Box around the labelled (v > 0) keypoints, or absent when that box is empty."""
    xs = [kp[j] for j in range(0, len(kp) - 2, 3) if kp[j + 2] > 0]
    ys = [kp[j + 1] for j in range(0, len(kp) - 2, 3) if kp[j + 2] > 0]
    if not xs or not all(math.isfinite(v) for v in xs + ys):
        return _ABSENT_BOX
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else _ABSENT_BOX


def _parse_float(s: str) -> float | None:
    """``float(s)`` (NaN and inf included), or None when ``s`` is not a number at all."""
    try:
        return float(s)
    except ValueError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_cvat(path: Path, **options: Any) -> Batch:
    """Read one CVAT 1.1 XML file (for images or for video) into a :class:`Batch`.

    Raises :class:`LoadError` only when the file cannot be read at all (unsafe or
    malformed XML, a cap exceeded, or a root that is not ``<annotations>``).
    """
    path = Path(path)
    try:
        root = parse_xml(path)
    except XMLProblem as e:
        raise e.to_load_error(path) from None
    if root.tag != "annotations":
        raise LoadError(
            f"root element is <{root.tag}>, not <annotations>: not a CVAT XML file", path=path, line=line_of(root)
        )
    return _Reader(path, root).read()


FORMAT = Format(name=FORMAT_NAME, suffixes=(".xml",), sniff=looks_like_cvat, load=load_cvat)
