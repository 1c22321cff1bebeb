"""The geometry gate: labels whose shapes cannot be right, whatever the image shows.

Every check here is deterministic (a box of width -3 is wrong without a golden set),
so each finding is an exact defect count for the cost model. The gate reads only the
columnar :class:`~annogate.model.Batch` and runs vectorised over all annotations:
a batch of 1.3 million polygons must be checked faster than it was parsed, so no
Python loop runs per annotation or per polygon. Python runs per *defect* (to build
its message) and per RLE mask (whose counts need decoding; masks are the rare crowd
regions in COCO-style data).

Error types (``rule`` of each finding; stable, they are config keys under
``[tool.annogate.geometry.thresholds]``):

Boxes
    ``box_nonfinite``, ``box_nonpositive``, ``box_tiny``, ``box_outside_image``.
    A box that is entirely ``nan`` is *absent* (formats without boxes), not a defect.
Polygons
    ``polygon_odd_coordinates``, ``polygon_nonfinite``, ``polygon_too_few_points``,
    ``polygon_zero_area``, ``polygon_invalid`` (self-intersections that change the
    covered area: bow-ties, loops), ``polygon_spike`` (a vertex doubling back along an
    edge: invalid for GEOS, same area; a warning unless configured),
    ``polygon_outside_image``.
RLE masks
    ``rle_undecodable``, ``rle_size_mismatch``, ``rle_empty``.
Consistency
    ``box_segmentation_mismatch``, ``area_mismatch``.
Keypoints
    ``keypoints_count_mismatch``, ``keypoint_visibility_invalid``,
    ``keypoint_outside_image``, ``keypoint_outside_box``, ``num_keypoints_mismatch``.
Duplicates
    ``duplicate_object``.

COCO polygon semantics. A COCO annotation's ``segmentation`` list holds *separate
parts* of one object, not a shell and its holes: pycocotools rasterises each ring
and takes the union. So each ring is validated as a polygon of its own; parts may
touch, overlap or nest without that being a defect (building one MultiPolygon and
asking GEOS would wrongly call overlapping parts invalid, and treating later rings
as holes would invert their area). The object's extent is the union of its rings'
extents. Its area is checked against the sum of its parts' areas (what the COCO
tools wrote: overlapping parts are counted twice in real COCO files) and, only when
that disagrees, against the area of their union (what a rasteriser would measure).

Speed. Validity is decided in three tiers, cheapest first: (1) numpy per-ring
figures (coordinate parity, finiteness, shoelace area, bounds); (2) a numpy
*star test* that proves most rings simple without GEOS (see :func:`_star_test`);
(3) shapely 2's array API (``linearrings`` with indices, ``is_valid_reason``) only
for the rings the star test could not prove, which in real data are a minority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from annogate.defects import CostFacts, defect_rows
from annogate.findings import DEFAULT_MAX_FINDINGS_PER_RULE, FindingLog, GateResult
from annogate.gates import Gate, GateContext
from annogate.model import SEG_POLYGON, SEG_RLE, Batch
from annogate.ragged import ranges
from annogate.rle import decode_counts_string, rle_counts
from annogate.thresholds import (
    THRESHOLDS_SCHEMA,
    apply_severity,
    error_type_checks,
    max_findings_per_rule,
    severity_for,
)

__all__ = ["DEFAULTS", "GATE", "RULES", "RULES_SCHEMA", "run"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

GATE_NAME = "geometry"

RULES: tuple[str, ...] = (
    "box_nonfinite",
    "box_nonpositive",
    "box_tiny",
    "box_outside_image",
    "polygon_odd_coordinates",
    "polygon_nonfinite",
    "polygon_too_few_points",
    "polygon_zero_area",
    "polygon_invalid",
    "polygon_spike",
    "polygon_outside_image",
    "rle_undecodable",
    "rle_size_mismatch",
    "rle_empty",
    "box_segmentation_mismatch",
    "area_mismatch",
    "keypoints_count_mismatch",
    "keypoint_visibility_invalid",
    "keypoint_outside_image",
    "keypoint_outside_box",
    "num_keypoints_mismatch",
    "duplicate_object",
)
_RULE_ORDER = {r: k for k, r in enumerate(RULES)}

#: Tolerances, chosen so the real COCO val2014 sample trips none of them needlessly
#: (measured: polygons never leave the image, the smallest box side is 2.6 px, polygon
#: boxes equal the polygon extent to 0.01 px, crowd boxes are 1 px short of the mask
#: extent, polygon areas equal the sum of the parts' areas within 0.1 %, crowd areas
#: differ from the mask pixel count by up to 13 %) while a genuinely wrong value
#: (a box off by a few pixels, an area off by a fifth) is caught.
DEFAULTS: dict[str, Any] = {
    # px a box, polygon or keypoint may extend beyond the image (half-pixel conventions)
    "border_tolerance": 1.0,
    # px: a box whose width or height is below this is tiny
    "min_box_size": 1.0,
    # class name -> px, overrides min_box_size
    "min_box_size_per_class": {},
    # px between a box edge and its segmentation's extent (COCO crowd boxes are 1 px short)
    "box_segmentation_tolerance": 2.0,
    # relative |area - computed| / computed (LabelMe rasterised areas run ~7 % high)
    "area_tolerance": 0.10,
    # the same for crowd regions (COCO val2014 crowd areas are up to 13 % off their masks)
    "crowd_area_tolerance": 0.20,
    # fraction of the box's longer side a labelled keypoint may lie outside it
    # (occluded limbs do: 8 % in COCO person keypoints)
    "keypoint_box_tolerance": 0.25,
    # same class, same image, box IoU at least this: a duplicate
    "duplicate_iou": 0.95,
    # near-duplicate candidate pairs compared per image at most (the rest are counted
    # in metrics["duplicate_pairs_not_examined"]); exact copies are always all found
    "duplicate_max_pairs": 2_000_000,
}

#: Absolute slack (px^2) of the area check, so that rounding of tiny areas is no defect.
_AREA_SLACK = 1.0
#: A group whose x-sweep would compare more than this many pairs per box (boxes sharing
#: a left edge) is joined on the grid instead.
_SWEEP_FACTOR = 16
#: Largest ring (vertices) that GEOS repairs to tell a spike from a self-intersection.
_SPIKE_MAX_POINTS = 100_000
#: Points per chunk of ring processing: bounds the temporaries (~10 arrays of this size).
_CHUNK_POINTS = 1 << 20

_NUM = {"type": "number", "minimum": 0}

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Geometry gate: tolerances and per-error-type thresholds.",
    "additionalProperties": False,
    "properties": {
        "thresholds": THRESHOLDS_SCHEMA,
        "border_tolerance": {**_NUM, "description": "px beyond the image allowed for boxes, polygons, keypoints"},
        "min_box_size": {**_NUM, "description": "px; a box narrower or lower is tiny"},
        "min_box_size_per_class": {
            "type": "object",
            "additionalProperties": _NUM,
            "description": "class name -> minimum box side in px",
        },
        "box_segmentation_tolerance": {**_NUM, "description": "px between box edges and segmentation extent"},
        "area_tolerance": {**_NUM, "description": "relative tolerance of the area field"},
        "crowd_area_tolerance": {**_NUM, "description": "relative tolerance of the area field of crowd regions"},
        "keypoint_box_tolerance": {
            **_NUM,
            "description": "fraction of the box's longer side a keypoint may lie outside it",
        },
        "duplicate_iou": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "box IoU at or above which two same-class objects in one image are duplicates",
        },
        "duplicate_max_pairs": {
            "type": "integer",
            "minimum": 0,
            "description": "near-duplicate candidate pairs compared per image at most (the rest are counted)",
        },
    },
}


# --------------------------------------------------------------------------- helpers


def _seg_reduce(ufunc: np.ufunc, values: npt.NDArray[Any], counts: I64, empty: Any) -> npt.NDArray[Any]:
    """``ufunc.reduceat`` over consecutive segments of lengths ``counts``, safe for empty ones."""
    return _Segments(counts).reduce(ufunc, values, empty)


class _Segments:
    """Consecutive segments (rings of points, rings of an annotation) given by their lengths.

    Plain ``ufunc.reduceat`` returns an element for an empty segment and fails on one
    at the end; :meth:`reduce` gives empty segments ``empty`` instead.
    """

    def __init__(self, counts: I64) -> None:
        self.counts = counts
        self.starts = np.cumsum(counts) - counts
        self.nonempty = counts > 0
        self.nz_starts = self.starts[self.nonempty]
        self.nz_ends = self.nz_starts + counts[self.nonempty] - 1

    def reduce(self, ufunc: np.ufunc, values: npt.NDArray[Any], empty: Any, dtype: Any = None) -> npt.NDArray[Any]:
        out = np.full(self.counts.shape[0], empty, dtype=dtype or values.dtype)
        if values.size and self.nz_starts.size:
            out[self.nonempty] = ufunc.reduceat(values, self.nz_starts, dtype=dtype)
        return out

    def owner(self) -> I64:
        """Segment index of every element."""
        return np.repeat(np.arange(self.counts.shape[0], dtype=np.int64), self.counts)

    def next_of(self, v: F64) -> F64:
        """``v`` shifted by one within each segment, cyclically (the next vertex of a ring)."""
        out = np.empty_like(v)
        if v.size:
            out[:-1] = v[1:]
            out[self.nz_ends] = v[self.nz_starts]
        return out


def _fmt(v: float) -> str:
    return f"{v:.6g}"


class _Collector:
    """Findings of one run, per rule, built only for the rows that failed."""

    def __init__(self, batch: Batch, max_per_rule: int = DEFAULT_MAX_FINDINGS_PER_RULE) -> None:
        self.batch = batch
        # at most max_per_rule findings built per rule; the tally counts every defect
        self.log = FindingLog(max_per_rule=max_per_rule)

    def add(
        self,
        rule: str,
        rows: npt.NDArray[np.integer[Any]],
        messages: list[str],
        values: list[float] | None = None,
    ) -> None:
        if len(rows) == 0:
            return
        self.log.add_rows(self.batch, rows, gate=GATE_NAME, rule=rule, messages=messages, values=values)


@dataclass(frozen=True)
class _Config:
    border_tol: float
    min_box: F64  # per annotation
    box_seg_tol: float
    area_tol: float
    crowd_area_tol: float
    kp_box_tol: float
    dup_iou: float
    dup_max_pairs: int
    thresholds: Mapping[str, Any]

    @classmethod
    def from_section(cls, section: Mapping[str, Any], batch: Batch) -> _Config:
        s = {**DEFAULTS, **section}
        ann = batch.annotations
        min_box = np.full(len(ann), float(s["min_box_size"]))
        by_name = batch.categories.index_by_name()
        for name, v in dict(s["min_box_size_per_class"]).items():
            k = by_name.get(str(name))
            if k is not None:
                min_box[ann.category == k] = float(v)
        return cls(
            border_tol=float(s["border_tolerance"]),
            min_box=min_box,
            box_seg_tol=float(s["box_segmentation_tolerance"]),
            area_tol=float(s["area_tolerance"]),
            crowd_area_tol=float(s["crowd_area_tolerance"]),
            kp_box_tol=float(s["keypoint_box_tolerance"]),
            dup_iou=float(s["duplicate_iou"]),
            dup_max_pairs=int(s["duplicate_max_pairs"]),
            thresholds=_with_default_severities(section.get("thresholds", {})),
        )


#: Error types that only warn unless the rules say otherwise: a spike leaves the
#: covered region unchanged (COCO val2014 has two), it is untidy, not wrong.
_WARNING_BY_DEFAULT = ("polygon_spike",)


def _with_default_severities(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(thresholds)
    for rule in _WARNING_BY_DEFAULT:
        out[rule] = {"severity": "warning", **dict(out.get(rule, {}))}
    return out


def _outside(x0: F64, y0: F64, x1: F64, y1: F64, width: F64, height: F64, tol: float) -> tuple[F64, B]:
    """Overshoot beyond each image side (N, 4: left, top, right, bottom) and whether any exceeds ``tol``.

    Unknown image sizes are nan, and nan compares false: such rows are never flagged.
    """
    over = np.stack([-x0, -y0, x1 - width, y1 - height], axis=1)
    with np.errstate(invalid="ignore"):
        bad: B = np.asarray((over > tol).any(axis=1), dtype=np.bool_)
    return over, bad


_SIDES = ("left", "top", "right", "bottom")


def _outside_message(
    what: str, over: F64, x0: float, y0: float, x1: float, y1: float, w: float, h: float, tol: float
) -> str:
    edge_value = (
        f"min x {_fmt(x0)} < 0",
        f"min y {_fmt(y0)} < 0",
        f"max x {_fmt(x1)} > width {_fmt(w)}",
        f"max y {_fmt(y1)} > height {_fmt(h)}",
    )
    parts = [f"{_SIDES[k]} by {_fmt(float(over[k]))} px ({edge_value[k]})" for k in range(4) if over[k] > tol]
    return f"{what} extends beyond the image: " + ", ".join(parts) + f"; tolerance {_fmt(tol)} px"


# --------------------------------------------------------------------------- boxes


@dataclass
class _Boxes:
    valid: B  # finite, positive size
    x0: F64
    y0: F64
    x1: F64
    y1: F64


def _check_boxes(batch: Batch, cfg: _Config, width: F64, height: F64, out: _Collector) -> _Boxes:
    """Box defects; returns which boxes are usable by the later consistency checks."""
    bb = batch.annotations.bbox.reshape(-1, 4)
    finite = np.isfinite(bb)
    absent = np.isnan(bb).all(axis=1)
    nonfinite = ~finite.all(axis=1) & ~absent
    rows = np.flatnonzero(nonfinite)
    out.add("box_nonfinite", rows, [f"bbox {[_fmt(float(v)) for v in bb[i]]} has a non-finite value" for i in rows])

    ok = finite.all(axis=1)
    x, y, w, h = bb[:, 0], bb[:, 1], bb[:, 2], bb[:, 3]
    nonpos = ok & ((w <= 0) | (h <= 0))
    rows = np.flatnonzero(nonpos)
    out.add(
        "box_nonpositive",
        rows,
        [f"box width {_fmt(w[i])}, height {_fmt(h[i])}: must both be > 0" for i in rows],
        [float(min(w[i], h[i])) for i in rows],
    )
    valid = ok & ~nonpos

    tiny = valid & (np.minimum(w, h) < cfg.min_box)
    rows = np.flatnonzero(tiny)
    out.add(
        "box_tiny",
        rows,
        [
            f"box {_fmt(w[i])} x {_fmt(h[i])} px is smaller than the minimum side {_fmt(cfg.min_box[i])} px"
            for i in rows
        ],
        [float(min(w[i], h[i])) for i in rows],
    )

    x1, y1 = x + w, y + h
    over, bad = _outside(x, y, x1, y1, width, height, cfg.border_tol)
    bad &= valid
    rows = np.flatnonzero(bad)
    out.add(
        "box_outside_image",
        rows,
        [_outside_message("box", over[i], x[i], y[i], x1[i], y1[i], width[i], height[i], cfg.border_tol) for i in rows],
        [float(over[i].max()) for i in rows],
    )
    return _Boxes(valid=valid, x0=x, y0=y, x1=x1, y1=y1)


# --------------------------------------------------------------------------- polygons


def _star_test(x: F64, y: F64, seg: _Segments, cx: F64, cy: F64, span: F64) -> tuple[B, F64, F64, F64]:
    """Prove rings simple without GEOS: are they star-shaped around (cx, cy)?

    If, seen from a centre c, every edge of a ring turns the same way (all cross
    products (p_i - c) x (p_i+1 - c) strictly of one sign, zero-length edges aside)
    and the ring winds around c exactly once, then the edges occupy disjoint angular
    sectors that tile the full turn: non-adjacent edges cannot meet, no edge passes
    through c, so the ring is simple with positive area, i.e. a valid polygon. The
    converse does not hold (a ring not star-shaped around c may be valid), so a ring
    that fails goes on to the next centre or to shapely. The sign threshold ``eps`` is
    far above float rounding (relative 1e-10 of the ring's size and position), so a
    near-degenerate ring is sent to shapely rather than wrongly passed.

    Winding once: with all turns positive, the ring crosses the horizontal line
    through c upwards exactly once per turn (counted half-open, so a vertex on the
    line counts once); the same holds for all turns negative.

    Returns (proven, twice the signed area, area-centroid x, area-centroid y) per ring.
    """
    ring = seg.owner()
    dx = x - cx[ring]
    dy = y - cy[ring]
    dxn = seg.next_of(dx)
    dyn = seg.next_of(dy)
    cross = dx * dyn
    cross -= dxn * dy
    eps = (1e-10 * span * (span + np.abs(cx) + np.abs(cy) + 1.0))[ring]
    zero_edge = (dx == dxn) & (dy == dyn)
    pos = (cross > eps) | zero_edge
    neg = (cross < -eps) | zero_edge
    up = (dy < 0) & (dyn >= 0)
    winds = seg.reduce(np.add, up.view(np.int8), 0, dtype=np.int64)
    one_sign = seg.reduce(np.logical_and, pos, False) | seg.reduce(np.logical_and, neg, False)
    area2 = seg.reduce(np.add, cross, 0.0)
    dx += dxn
    dx *= cross
    dy += dyn
    dy *= cross
    with np.errstate(invalid="ignore", divide="ignore"):
        gx = cx + seg.reduce(np.add, dx, 0.0) / (3.0 * area2)
        gy = cy + seg.reduce(np.add, dy, 0.0) / (3.0 * area2)
    proven = one_sign & (winds == 1) & (seg.counts >= 3)
    return proven, area2, gx, gy


@dataclass
class _RingFigures:
    """Per-ring figures of one chunk of rings (all computed vectorised)."""

    finite: B
    area: F64  # absolute area, shoelace
    x0: F64
    y0: F64
    x1: F64
    y1: F64
    proven: B


def _ring_figures(x: F64, y: F64, cnt: I64) -> _RingFigures:
    """Finiteness, bounds, area and the star test (up to three centres) for consecutive rings."""
    seg = _Segments(cnt)
    fin_pt = np.isfinite(x) & np.isfinite(y)
    finite = seg.reduce(np.logical_and, fin_pt, True)
    x0 = seg.reduce(np.minimum, x, np.nan)
    x1 = seg.reduce(np.maximum, x, np.nan)
    y0 = seg.reduce(np.minimum, y, np.nan)
    y1 = seg.reduce(np.maximum, y, np.nan)
    span = np.maximum(x1 - x0, y1 - y0)
    safe = np.maximum(cnt, 1)
    cx = seg.reduce(np.add, x, 0.0) / safe
    cy = seg.reduce(np.add, y, 0.0) / safe
    proven, area2, gx, gy = _star_test(x, y, seg, cx, cy, span)
    proven &= finite
    # Concave rings whose vertex mean lies outside their kernel get two more chances,
    # on the unproven rings only: around the area centroid, then the box centre.
    for ccx, ccy in ((gx, gy), ((x0 + x1) / 2, (y0 + y1) / 2)):
        retry = np.flatnonzero(~proven & finite & (cnt >= 3) & np.isfinite(ccx) & np.isfinite(ccy))
        if retry.size == 0:
            break
        first = seg.starts[retry]
        idx = ranges(first, first + cnt[retry])
        p2, _, _, _ = _star_test(x[idx], y[idx], _Segments(cnt[retry]), ccx[retry], ccy[retry], span[retry])
        proven[retry] = p2
    return _RingFigures(finite=finite, area=np.abs(area2) / 2.0, x0=x0, y0=y0, x1=x1, y1=y1, proven=proven)


def _chunks(pt_offsets: I64, limit: int) -> Iterator[tuple[int, int]]:
    """Ring ranges [a, b) holding about ``limit`` points each (at least one ring)."""
    r = pt_offsets.shape[0] - 1
    a = 0
    while a < r:
        b = int(np.searchsorted(pt_offsets, pt_offsets[a] + limit, side="right")) - 1
        b = min(max(b, a + 1), r)
        yield a, b
        a = b


@dataclass
class _Segs:
    """Per-annotation segmentation figures for the consistency checks."""

    has_extent: B
    x0: F64
    y0: F64
    x1: F64
    y1: F64
    area_ok: B  # computed area is meaningful (no defective ring / decodable mask)
    area: F64
    multipart: B
    has_rings: B  # a polygon annotation with at least one ring


def _check_polygons(
    batch: Batch, cfg: _Config, width: F64, height: F64, out: _Collector
) -> tuple[_Segs, dict[str, int]]:
    ann = batch.annotations
    n = len(ann)
    aro = ann.ann_ring_offsets.astype(np.int64)
    ro = ann.ring_offsets.astype(np.int64)
    n_rings_ann = np.diff(aro)
    # Rings of annotations that are not polygons (if a reader left any) are ignored.
    ring_ann = np.repeat(np.arange(n, dtype=np.int64), n_rings_ann)
    use_ring = ann.seg_kind[ring_ann] == SEG_POLYGON
    ncoord = np.diff(ro)
    r_total = ncoord.shape[0]

    odd = (ncoord % 2 == 1) & use_ring
    even = ~odd & use_ring
    xy = ann.poly_xy
    # Points of the even rings, as (x, y) views when every ring is even (the normal case).
    if not odd.any() and xy.size % 2 == 0 and np.all(ro % 2 == 0):
        pts = xy.reshape(-1, 2)
        pt_off = ro // 2
        ring_rows = np.arange(r_total)
    else:
        keep = np.flatnonzero(~odd)
        first = ro[keep]
        idx = ranges(first, first + ncoord[keep])
        pts = xy[idx].reshape(-1, 2)
        pt_off = np.concatenate([[0], np.cumsum(ncoord[keep] // 2)]).astype(np.int64)
        ring_rows = keep
    cnt_all = np.diff(pt_off)

    finite = np.ones(r_total, bool)
    area = np.zeros(r_total)
    bx0 = np.full(r_total, np.nan)
    by0 = np.full(r_total, np.nan)
    bx1 = np.full(r_total, np.nan)
    by1 = np.full(r_total, np.nan)
    proven = np.zeros(r_total, bool)
    for a, b in _chunks(pt_off, _CHUNK_POINTS):
        p0, p1 = int(pt_off[a]), int(pt_off[b])
        f = _ring_figures(pts[p0:p1, 0], pts[p0:p1, 1], cnt_all[a:b])
        rr = ring_rows[a:b]
        finite[rr] = f.finite
        area[rr] = f.area
        bx0[rr], by0[rr], bx1[rr], by1[rr] = f.x0, f.y0, f.x1, f.y1
        proven[rr] = f.proven

    npts = np.zeros(r_total, np.int64)
    npts[ring_rows] = cnt_all
    nonfinite = even & ~finite
    few = even & finite & (npts < 3)
    # Rings GEOS must judge: the star test did not prove them and they are well-formed.
    to_geos = even & finite & (npts >= 3) & ~proven
    reason = np.full(r_total, "", dtype=object)
    n_unique = npts.copy()
    invalid = np.zeros(r_total, bool)
    spike = np.zeros(r_total, bool)
    zero = np.zeros(r_total, bool)
    sel = np.flatnonzero(to_geos)
    pos_all = np.searchsorted(ring_rows, sel)  # rows of sel within pts / pt_off
    sel_off = np.concatenate([[0], np.cumsum(cnt_all[pos_all])]).astype(np.int64)
    for a, b in _chunks(sel_off, _CHUNK_POINTS):
        _geos_rings(
            pts,
            pt_off[pos_all[a:b]],
            cnt_all[pos_all[a:b]],
            sel[a:b],
            bx0,
            by0,
            bx1,
            by1,
            n_unique,
            few,
            zero,
            invalid,
            spike,
            reason,
        )

    def ring_finding(rule: str, mask: B, describe: Callable[[int], str], value: Callable[[int], float] | None) -> None:
        rings_bad = np.flatnonzero(mask)
        if rings_bad.size == 0:
            return
        owners, first = np.unique(ring_ann[rings_bad], return_index=True)
        n_bad = np.bincount(ring_ann[rings_bad], minlength=n)
        msgs: list[str] = []
        vals: list[float] = []
        for a_row, k in zip(owners, first, strict=True):
            r = int(rings_bad[k])
            ring_no = r - int(aro[a_row])
            where = f"ring {ring_no + 1} of {int(n_rings_ann[a_row])}" if n_rings_ann[a_row] > 1 else "polygon"
            more = f" (and {int(n_bad[a_row]) - 1} more ring(s))" if n_bad[a_row] > 1 else ""
            msgs.append(f"{where}: {describe(r)}{more}")
            if value is not None:
                vals.append(value(r))
        out.add(rule, owners, msgs, vals if value is not None else None)

    ring_finding(
        "polygon_odd_coordinates",
        odd,
        lambda r: f"{int(ncoord[r])} coordinates, an odd count (x, y pairs expected)",
        lambda r: float(ncoord[r]),
    )
    ring_finding("polygon_nonfinite", nonfinite, lambda r: "has a non-finite coordinate", None)
    ring_finding(
        "polygon_too_few_points",
        few,
        lambda r: f"{int(n_unique[r])} distinct point(s), at least 3 needed",
        lambda r: float(n_unique[r]),
    )
    ring_finding(
        "polygon_zero_area",
        zero,
        lambda r: f"area {_fmt(area[r])}: all {int(n_unique[r])} points are collinear",
        lambda r: float(area[r]),
    )
    ring_finding("polygon_invalid", invalid, lambda r: f"invalid ring: {reason[r]}", None)
    ring_finding(
        "polygon_spike",
        spike,
        lambda r: f"zero-area spike (a vertex doubles back; area unchanged): {reason[r]}",
        None,
    )

    # Per annotation: extent over its usable rings (finite, even, non-empty).
    usable = even & finite & (npts > 0)
    defective = odd | nonfinite | few | zero | invalid
    n_usable = np.bincount(ring_ann[usable], minlength=n)
    n_defect = np.bincount(ring_ann[defective], minlength=n)

    def per_ann(vals: F64, fn: np.ufunc, empty: float) -> F64:
        v = np.where(usable, vals, empty)
        return _seg_reduce(fn, v, n_rings_ann, empty)

    ax0 = per_ann(bx0, np.minimum, np.inf)
    ay0 = per_ann(by0, np.minimum, np.inf)
    ax1 = per_ann(bx1, np.maximum, -np.inf)
    ay1 = per_ann(by1, np.maximum, -np.inf)
    ann_area = _seg_reduce(np.add, np.where(usable, area, 0.0), n_rings_ann, 0.0)
    is_poly = ann.seg_kind == SEG_POLYGON
    has_extent = is_poly & (n_usable > 0)
    area_ok = is_poly & (n_rings_ann > 0) & (n_defect == 0)

    over, bad = _outside(ax0, ay0, ax1, ay1, width, height, cfg.border_tol)
    bad &= has_extent
    rows = np.flatnonzero(bad)
    out.add(
        "polygon_outside_image",
        rows,
        [
            _outside_message("polygon", over[i], ax0[i], ay0[i], ax1[i], ay1[i], width[i], height[i], cfg.border_tol)
            for i in rows
        ],
        [float(over[i].max()) for i in rows],
    )
    segs = _Segs(
        has_extent=has_extent,
        x0=ax0,
        y0=ay0,
        x1=ax1,
        y1=ay1,
        area_ok=area_ok,
        area=ann_area,
        multipart=is_poly & (n_rings_ann > 1),
        has_rings=is_poly & (n_rings_ann > 0),
    )
    stats = {
        "polygons": int((is_poly & (n_rings_ann > 0)).sum()),
        "polygon_rings": int(use_ring.sum()),
        "rings_proven_by_star_test": int(proven.sum()),
        "rings_validated_by_shapely": int(sel.size),
    }
    return segs, stats


def _geos_rings(
    pts: F64,
    starts: I64,
    counts: I64,
    rows: I64,
    bx0: F64,
    by0: F64,
    bx1: F64,
    by1: F64,
    n_unique: I64,
    few: B,
    zero: B,
    invalid: B,
    spike: B,
    reason: npt.NDArray[np.object_],
) -> None:
    """Judge rings the star test could not prove, with shapely's array API (in place).

    ``is_valid`` on the LinearRings decides (for a polygon without holes it agrees
    with the polygon's validity and spares building polygons); only the invalid rings
    are then classified: fewer than 3 distinct points, all points collinear (zero
    area: GEOS calls that a self-intersection, a user would not), or invalid with
    GEOS's reason for the polygon, which names the kind and location of the defect.
    """
    idx = ranges(starts, starts + counts)
    owner = np.repeat(np.arange(rows.size), counts)
    rings = shapely.linearrings(pts[idx], indices=owner)
    bad = np.flatnonzero(~shapely.is_valid(rings))
    if bad.size == 0:
        return
    r_bad = rows[bad]
    uniq = np.asarray(shapely.get_num_coordinates(shapely.extract_unique_points(rings[bad])), np.int64)
    hull = np.asarray(shapely.area(shapely.convex_hull(rings[bad])), np.float64)
    span = np.maximum(bx1[r_bad] - bx0[r_bad], by1[r_bad] - by0[r_bad])
    n_unique[r_bad] = uniq
    is_few = uniq < 3
    is_zero = ~is_few & (hull <= 1e-12 * span * span)
    rest = ~is_few & ~is_zero
    few[r_bad[is_few]] = True
    zero[r_bad[is_zero]] = True
    polys = shapely.polygons(rings[bad[rest]])
    reason[r_bad[rest]] = shapely.is_valid_reason(polys)
    # A spike (a vertex doubling back along an edge) makes the ring invalid without
    # changing what it covers: repairing it keeps the shoelace area. A bow-tie or a
    # loop covers differently from its shoelace area (lobes cancel or count twice).
    # Checked cheapest first: a 180-degree turn (numpy, linear), then, only for those
    # rings and only up to _SPIKE_MAX_POINTS vertices (GEOS's repair is slow on huge
    # rings: 40 s for a 1M-vertex bow-tie), whether repairing keeps the area. A huge
    # ring left undecided stays polygon_invalid, the stricter verdict.
    is_spike = _doubles_back(pts, starts[bad[rest]], counts[bad[rest]]) & (counts[bad[rest]] <= _SPIKE_MAX_POINTS)
    cand = np.flatnonzero(is_spike)
    if cand.size:
        shoelace = np.asarray(shapely.area(polys[cand]), np.float64)
        repaired = np.asarray(shapely.area(shapely.make_valid(polys[cand])), np.float64)
        span_c = span[rest][cand]
        is_spike[cand] = np.abs(repaired - shoelace) <= 1e-9 * np.maximum(shoelace, 1e-300) + 1e-12 * span_c**2
    spike[r_bad[rest][is_spike]] = True
    invalid[r_bad[rest][~is_spike]] = True


def _doubles_back(pts: F64, starts: I64, counts: I64) -> B:
    """Per ring: does some vertex turn back by 180 degrees (the tip of a spike)?

    Repeated points are dropped first (a closing point or a double click is no turn).
    A ring that touches itself at a point without reversing anywhere is no spike.
    """
    idx = ranges(starts, starts + counts)
    owner = np.repeat(np.arange(counts.size), counts)
    p = pts[idx]
    seg = _Segments(counts)
    nxt = np.stack([seg.next_of(p[:, 0]), seg.next_of(p[:, 1])], axis=1)
    keep = np.any(p != nxt, axis=1)
    p, owner = p[keep], owner[keep]
    seg = _Segments(np.bincount(owner, minlength=counts.size).astype(np.int64))
    if p.shape[0] == 0:
        return np.zeros(counts.size, bool)
    nx, ny = seg.next_of(p[:, 0]), seg.next_of(p[:, 1])
    ex, ey = nx - p[:, 0], ny - p[:, 1]  # edge k: vertex k -> k+1
    fx, fy = seg.next_of(ex), seg.next_of(ey)  # edge k+1
    cross = ex * fy - ey * fx
    dot = ex * fx + ey * fy
    scale = np.hypot(ex, ey) * np.hypot(fx, fy)
    back = (np.abs(cross) <= 1e-9 * scale) & (dot < 0)
    return np.asarray(seg.reduce(np.logical_or, back, False), dtype=np.bool_)


def _union_areas(batch: Batch, rows: I64) -> F64:
    """Area of the union of each listed annotation's rings (parts), with shapely.

    Called only for multi-part annotations whose area field disagrees with the sum
    of their parts: overlapping parts are where sum and union differ.
    """
    ann = batch.annotations
    aro = ann.ann_ring_offsets.astype(np.int64)
    ro = ann.ring_offsets.astype(np.int64)
    ring_idx = ranges(aro[rows], aro[rows + 1])
    owner = np.repeat(np.arange(rows.size), np.diff(aro)[rows])
    coord_idx = ranges(ro[ring_idx], ro[ring_idx + 1])
    pts = ann.poly_xy[coord_idx].reshape(-1, 2)
    ring_of_pt = np.repeat(np.arange(ring_idx.size), np.diff(ro)[ring_idx] // 2)
    polys = shapely.polygons(shapely.linearrings(pts, indices=ring_of_pt))
    multi = shapely.multipolygons(polys, indices=owner)
    # buffer(0) dissolves overlapping parts of a MultiPolygon into their union.
    return np.asarray(shapely.area(shapely.buffer(multi, 0)), dtype=np.float64)


# --------------------------------------------------------------------------- RLE masks


#: Kept for callers of the old name: the decoder lives in :mod:`annogate.rle`.
_rle_string_counts = decode_counts_string


def _check_rle(batch: Batch, width: F64, height: F64, out: _Collector, segs: _Segs) -> int:
    """RLE mask defects; fills the mask extent and area into ``segs``. Returns masks examined."""
    from pycocotools import mask as mask_utils

    ann = batch.annotations
    rows = np.flatnonzero(ann.seg_kind == SEG_RLE)
    undecodable: list[tuple[int, str]] = []
    good_rows: list[int] = []
    good_rles: list[dict[str, Any]] = []
    sizes: list[tuple[int, int]] = []
    for i in rows:
        rle = ann.rle[i]
        # The image size is compared below (its own rule); here only safety for C code.
        checked = rle_counts(rle, np.nan, np.nan)
        if isinstance(checked, str):
            undecodable.append((int(i), checked))
            continue
        size, counts = checked
        good_rows.append(int(i))
        sizes.append(size)
        if isinstance(rle["counts"], (list, tuple)):
            enc = mask_utils.frPyObjects({"size": list(size), "counts": [int(c) for c in counts]}, size[0], size[1])
        else:
            c = rle["counts"]
            enc = {"size": list(size), "counts": c.encode("ascii") if isinstance(c, str) else bytes(c)}
        good_rles.append(enc)
    out.add(
        "rle_undecodable",
        np.array([r for r, _ in undecodable], np.int64),
        [f"RLE mask cannot be decoded: {p}" for _, p in undecodable],
    )
    if not good_rows:
        return int(rows.size)
    g = np.array(good_rows, np.int64)
    hw = np.array(sizes, np.float64).reshape(-1, 2)
    areas = np.asarray(mask_utils.area(good_rles), np.float64).reshape(-1)
    boxes = np.asarray(mask_utils.toBbox(good_rles), np.float64).reshape(-1, 4)

    mism = (hw[:, 0] != height[g]) | (hw[:, 1] != width[g])
    mism &= np.isfinite(height[g]) & np.isfinite(width[g])
    k = np.flatnonzero(mism)
    out.add(
        "rle_size_mismatch",
        g[k],
        [
            f"mask size {int(hw[j, 0])}x{int(hw[j, 1])} (h x w) differs from the image's {_fmt(height[g[j]])}x{_fmt(width[g[j]])}"
            for j in k
        ],
    )
    empty = areas == 0
    k = np.flatnonzero(empty)
    out.add("rle_empty", g[k], ["RLE mask has no foreground pixel (area 0)" for _ in k], [0.0 for _ in k])

    nonempty = ~empty
    gi = g[nonempty]
    segs.has_extent[gi] = True
    segs.x0[gi] = boxes[nonempty, 0]
    segs.y0[gi] = boxes[nonempty, 1]
    segs.x1[gi] = boxes[nonempty, 0] + boxes[nonempty, 2]
    segs.y1[gi] = boxes[nonempty, 1] + boxes[nonempty, 3]
    segs.area_ok[gi] = True
    segs.area[gi] = areas[nonempty]
    return int(rows.size)


# --------------------------------------------------------------------------- consistency


def _check_consistency(batch: Batch, cfg: _Config, boxes: _Boxes, segs: _Segs, out: _Collector) -> None:
    """Box vs segmentation extent, and the ``area`` field vs the computed area."""
    ann = batch.annotations
    both = boxes.valid & segs.has_extent
    dev = np.stack([boxes.x0 - segs.x0, boxes.y0 - segs.y0, boxes.x1 - segs.x1, boxes.y1 - segs.y1], axis=1)
    with np.errstate(invalid="ignore"):
        worst = np.where(both, np.abs(dev).max(axis=1), 0.0)
    rows = np.flatnonzero(both & (worst > cfg.box_seg_tol))
    names = ("left (x)", "top (y)", "right (x+w)", "bottom (y+h)")
    box_e = np.stack([boxes.x0, boxes.y0, boxes.x1, boxes.y1], axis=1)
    seg_e = np.stack([segs.x0, segs.y0, segs.x1, segs.y1], axis=1)
    msgs = []
    for i in rows:
        k = int(np.argmax(np.abs(dev[i])))
        msgs.append(
            f"box {names[k]} edge {_fmt(box_e[i, k])} vs segmentation extent {_fmt(seg_e[i, k])}: "
            f"off by {_fmt(abs(dev[i, k]))} px (tolerance {_fmt(cfg.box_seg_tol)} px)"
        )
    out.add("box_segmentation_mismatch", rows, msgs, [float(worst[i]) for i in rows])

    # The area to compare with: the segmentation's, else (no segmentation) the box's.
    computed = np.where(segs.area_ok, segs.area, np.nan)
    # "segmentation": [] (box-only COCO exports) is no segmentation, not an empty one.
    no_seg = (ann.seg_kind != SEG_RLE) & ~segs.has_rings
    bw = boxes.x1 - boxes.x0
    bh = boxes.y1 - boxes.y0
    computed = np.where(no_seg & boxes.valid, bw * bh, computed)
    field = ann.area
    tol = np.where(ann.iscrowd, cfg.crowd_area_tol, cfg.area_tol)
    # COCO's area is the mask's: without a segmentation the box only bounds it from
    # above, so a box-only area may be anything up to the box area (plus tolerance).
    box_only = no_seg & boxes.valid
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(box_only, field - computed, np.abs(field - computed))
        cand = np.isfinite(field) & np.isfinite(computed) & (computed > 0) & (diff > tol * computed + _AREA_SLACK)
    rows = np.flatnonzero(cand)
    union = np.full(rows.size, np.nan)
    mp = rows[segs.multipart[rows]]
    if mp.size:
        u = _union_areas(batch, mp)
        union[np.searchsorted(rows, mp)] = u
    with np.errstate(invalid="ignore"):
        union_ok = np.abs(field[rows] - union) <= tol[rows] * union + _AREA_SLACK
    rows_bad = rows[~union_ok]
    union_bad = union[~union_ok]
    msgs = []
    vals = []
    for i, u in zip(rows_bad, union_bad, strict=True):
        rel = (field[i] - computed[i]) / computed[i]
        what = (
            "sum of its parts"
            if segs.multipart[i]
            else (
                "mask pixel count"
                if ann.seg_kind[i] == SEG_RLE
                else ("polygon area" if segs.area_ok[i] else "box area")
            )
        )
        extra = f", union of parts {_fmt(u)}" if np.isfinite(u) else ""
        bound = " (an upper bound without a segmentation)" if box_only[i] else ""
        msgs.append(
            f"area field {_fmt(field[i])} vs {what} {_fmt(computed[i])}{bound}{extra}: {rel:+.1%}"
            f" (tolerance {tol[i]:.0%})"
        )
        vals.append(float(rel))
    out.add("area_mismatch", rows_bad, msgs, vals)


# --------------------------------------------------------------------------- keypoints


def _check_keypoints(batch: Batch, cfg: _Config, boxes: _Boxes, width: F64, height: F64, out: _Collector) -> int:
    ann = batch.annotations
    n = len(ann)
    nkp: I64 = np.diff(ann.kp_offsets).astype(np.int64)
    kp = ann.keypoints.reshape(-1, 3)
    declared = np.array([len(k) for k in batch.categories.keypoints] + [0], np.int64)
    k_cat = declared[np.where(ann.category >= 0, ann.category, len(declared) - 1)]
    kp_names = batch.categories.keypoints

    def kp_name(i: int, j: int) -> str:
        c = int(ann.category[i])
        names = kp_names[c] if 0 <= c < len(kp_names) else ()
        return f"keypoint {j + 1}" + (f" ({names[j]})" if j < len(names) else "")

    # Categories that declare no keypoint names are not checked for count: readers
    # cannot tell an absent list from an empty one.
    wrong_len = (nkp > 0) & (k_cat > 0) & (nkp != k_cat)
    rows = np.flatnonzero(wrong_len)
    out.add(
        "keypoints_count_mismatch",
        rows,
        [f"{int(nkp[i])} keypoints ({3 * int(nkp[i])} values), category declares {int(k_cat[i])}" for i in rows],
        [float(nkp[i]) for i in rows],
    )

    owner = np.repeat(np.arange(n, dtype=np.int64), nkp)
    first_pt = ann.kp_offsets[:-1].astype(np.int64)
    x, y, v = kp[:, 0], kp[:, 1], kp[:, 2]
    bad_v = ~np.isin(v, (0.0, 1.0, 2.0))

    def per_point(rule: str, mask: B, describe: Callable[[int, int], str], value: Callable[[int], float]) -> None:
        pts = np.flatnonzero(mask)
        if pts.size == 0:
            return
        owners, first = np.unique(owner[pts], return_index=True)
        n_bad = np.bincount(owner[pts], minlength=n)
        msgs = []
        vals = []
        for a_row, k in zip(owners, first, strict=True):
            p = int(pts[k])
            more = f" (and {int(n_bad[a_row]) - 1} more)" if n_bad[a_row] > 1 else ""
            msgs.append(describe(int(a_row), p) + more)
            vals.append(value(p))
        out.add(rule, owners, msgs, vals)

    per_point(
        "keypoint_visibility_invalid",
        bad_v,
        lambda i, p: f"{kp_name(i, p - int(first_pt[i]))} has visibility {_fmt(v[p])}, expected 0, 1 or 2",
        lambda p: float(v[p]),
    )
    labelled = (v == 1.0) | (v == 2.0)
    w_pt = width[ann.image[owner]] if n else np.empty(0)
    h_pt = height[ann.image[owner]] if n else np.empty(0)
    w_pt = np.where(ann.image[owner] >= 0, w_pt, np.nan)
    h_pt = np.where(ann.image[owner] >= 0, h_pt, np.nan)
    tol = cfg.border_tol
    with np.errstate(invalid="ignore"):
        over_img = np.maximum.reduce([-x - tol, -y - tol, x - w_pt - tol, y - h_pt - tol])
        outside_img = labelled & ((over_img > 0) | ~np.isfinite(x) | ~np.isfinite(y))
    per_point(
        "keypoint_outside_image",
        outside_img,
        lambda i, p: (
            f"{kp_name(i, p - int(first_pt[i]))} at ({_fmt(x[p])}, {_fmt(y[p])}) is outside the "
            f"{_fmt(w_pt[p])}x{_fmt(h_pt[p])} image by {_fmt(over_img[p] + tol)} px (tolerance {_fmt(tol)} px)"
        ),
        lambda p: float(over_img[p] + tol),
    )

    bx_ok = boxes.valid[owner]
    with np.errstate(invalid="ignore"):
        dist = np.maximum.reduce(
            [boxes.x0[owner] - x, x - boxes.x1[owner], boxes.y0[owner] - y, y - boxes.y1[owner], np.zeros_like(x)]
        )
        allowed = cfg.kp_box_tol * np.maximum(boxes.x1 - boxes.x0, boxes.y1 - boxes.y0)[owner]
        outside_box = labelled & bx_ok & ~outside_img & (dist > allowed)
    per_point(
        "keypoint_outside_box",
        outside_box,
        lambda i, p: (
            f"{kp_name(i, p - int(first_pt[i]))} at ({_fmt(x[p])}, {_fmt(y[p])}) is {_fmt(dist[p])} px "
            f"outside the box (tolerance {_fmt(allowed[p])} px = {cfg.kp_box_tol:g} x its longer side)"
        ),
        lambda p: float(dist[p]),
    )

    # num_keypoints counts v > 0, as pycocotools and the COCO format define it.
    n_lab = np.bincount(owner[v > 0], minlength=n)
    nk = ann.num_keypoints.astype(np.int64)
    mism = (nk >= 0) & (nk != n_lab) & ~wrong_len
    rows = np.flatnonzero(mism)
    out.add(
        "num_keypoints_mismatch",
        rows,
        [
            f"num_keypoints is {int(nk[i])} but {int(n_lab[i])} keypoint(s) are labelled (v > 0): off by {int(nk[i] - n_lab[i]):+d}"
            for i in rows
        ],
        [float(nk[i] - n_lab[i]) for i in rows],
    )
    return int((nkp > 0).sum())


# --------------------------------------------------------------------------- duplicates


def _splitmix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _dense_rank(*keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Rank of each row's key tuple among the distinct tuples in lexicographic order.

    The same numbers as ``np.unique(np.stack(keys, 1), axis=0, return_inverse=True)[1]``
    from one ``lexsort`` of the columns: ``np.unique`` on rows sorts a structured view
    (a comparison per field in Python-level C loops), ~6% of the whole gate at 1.3M rows.
    """
    order = np.lexsort(keys[::-1])
    change = np.zeros(order.size, np.bool_)
    for k in keys:
        ks = k[order]
        change[1:] |= ks[1:] != ks[:-1]
    rank = np.empty(order.size, np.int64)
    rank[order] = np.cumsum(change)
    return rank


def _check_duplicates(batch: Batch, cfg: _Config, boxes: _Boxes, out: _Collector) -> tuple[int, int]:
    """Same annotator, image, class and crowd flag, box IoU >= ``duplicate_iou``.

    Two annotators boxing the same object is agreement (the agreement gate's subject),
    not a duplicate, so the annotator is part of the key. Returns the numbers of
    near-duplicate candidate pairs examined and *not* examined (because an image
    exceeded ``duplicate_max_pairs``).

    Linear-ish by construction (no all-pairs over an image, which cost 74 s and
    18.8 GB for 20,000 identical boxes):

    1. Exact copies are grouped by sorting on their coordinates: every copy after the
       first duplicates the first (IoU 1), found in n log n whatever their number.
    2. The distinct boxes are joined on a grid. IoU >= t forces the two widths within a
       factor 1/t of each other and the left edges within (1 - t) x the width of the
       box that starts first (the x overlap is at least t times each width); the same
       holds for y. So each box gets a size class per axis (``floor(ln w / ln(1/t))``:
       partners are in the same or the next class) and a cell per axis of side
       (1 - t) x the largest width of its class and the next: partners sit in the same
       or a neighbouring cell at either box's class. Each box probes 5 class pairs x
       3 x 3 cells of a sorted index; only the boxes found there are compared. Stacked
       or side-by-side boxes that merely share an edge never meet. Real data takes a
       cheaper x sweep first (see :func:`_near_duplicate_pairs`); only groups where
       that sweep would compare many pairs per box are joined on the grid.
    3. Near-copies that are all mutual candidates (thousands of jittered copies of
       one box) are genuinely quadratic in pairs: the pairs examined per image are
       capped and the number skipped is reported, never silently dropped.
    """
    ann = batch.annotations
    t = cfg.dup_iou
    w = boxes.x1 - boxes.x0
    h = boxes.y1 - boxes.y0
    with np.errstate(over="ignore", invalid="ignore"):
        area = w * h
        usable = boxes.valid & (ann.image >= 0) & (ann.category >= 0) & np.isfinite(area) & (area > 0)
    usable &= np.isfinite(boxes.x1) & np.isfinite(boxes.y1)
    ok = np.flatnonzero(usable)
    if ok.size < 2:
        return 0, 0
    # Group: annotator, image, class, crowd flag (dense rank), then exact coordinates.
    group = _dense_rank(ann.annotator[ok], ann.image[ok], ann.category[ok], ann.iscrowd[ok])
    x0, y0, x1, y1 = boxes.x0[ok], boxes.y0[ok], boxes.x1[ok], boxes.y1[ok]
    order = np.lexsort((ok, y1, x1, y0, x0, group))  # row order last: the first copy is the earliest row
    same_prev = np.zeros(ok.size, bool)
    so = order
    same_prev[1:] = (
        (group[so[1:]] == group[so[:-1]])
        & (x0[so[1:]] == x0[so[:-1]])
        & (y0[so[1:]] == y0[so[:-1]])
        & (x1[so[1:]] == x1[so[:-1]])
        & (y1[so[1:]] == y1[so[:-1]])
    )
    run_id = np.cumsum(~same_prev) - 1
    first_of_run = so[~same_prev]  # positions (into ok) of each exact group's earliest row
    rep_of = np.empty(ok.size, np.int64)
    rep_of[so] = first_of_run[run_id]
    copies = np.flatnonzero(rep_of != np.arange(ok.size))
    later_parts = [ok[copies]]
    earlier_parts = [ok[rep_of[copies]]]
    iou_parts = [np.ones(copies.size)]

    skipped = examined = 0
    reps = np.sort(first_of_run)
    if t < 1.0 and reps.size > 1:
        pi, pj, pv, examined, skipped = _near_duplicate_pairs(
            group[reps], x0[reps], y0[reps], x1[reps], y1[reps], t, cfg.dup_max_pairs, ann.image[ok[reps]]
        )
        later_parts.append(ok[reps[np.maximum(pi, pj)]])
        earlier_parts.append(ok[reps[np.minimum(pi, pj)]])
        iou_parts.append(pv)
    later = np.concatenate(later_parts)
    earlier = np.concatenate(earlier_parts)
    pv = np.concatenate(iou_parts)
    if later.size == 0:
        return examined, skipped
    # Report each later row once, as a duplicate of its earliest partner.
    srt = np.lexsort((earlier, later))
    later, earlier, pv = later[srt], earlier[srt], pv[srt]
    rows, first = np.unique(later, return_index=True)
    out.add(
        "duplicate_object",
        rows,
        [f"duplicates annotation {int(ann.id[earlier[k]])} (same class, box IoU {pv[k]:.3f} >= {t:g})" for k in first],
        [float(pv[k]) for k in first],
    )
    return examined, skipped


def _near_duplicate_pairs(
    group: I64, x0: F64, y0: F64, x1: F64, y1: F64, t: float, max_pairs: int, image: npt.NDArray[np.integer[Any]]
) -> tuple[I64, I64, F64, int, int]:
    """Pairs (i, j) of distinct boxes of one group with IoU >= t (see :func:`_check_duplicates`).

    Real data goes through a sort-and-sweep on x: sorted by (group, left edge), box j
    can only match an earlier box i if x0_j - x0_i <= (1 - t) w_i, so the candidates
    of i are a contiguous run whose length a binary search gives. Where those runs add
    up to more than ``_SWEEP_FACTOR`` per box in a group (boxes sharing a left edge,
    stacked), that group goes to the grid join instead. Returns (i, j, iou, candidate
    pairs examined, candidate pairs skipped by the per-image cap).
    """
    n = group.size
    order = np.lexsort((x0, group))
    gs, xs = group[order], x0[order]
    reach = xs + (1.0 - t) * (x1 - x0)[order]
    # Binary search within each group: rank every x0 and reach on one axis, offset by group.
    vals, inv = np.unique(np.concatenate([xs, reach]), return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    stride = np.int64(vals.size + 1)
    k_x = gs * stride + inv[:n]
    k_reach = gs * stride + inv[n:]
    run = np.searchsorted(k_x, k_reach, side="right") - np.arange(n) - 1
    run = np.maximum(run, 0).astype(np.int64)
    g_total = np.bincount(gs, weights=run)
    g_size = np.bincount(gs)
    cheap_group = g_total <= _SWEEP_FACTOR * g_size + 64
    cheap = cheap_group[gs]

    parts_i: list[I64] = []
    parts_j: list[I64] = []
    parts_v: list[F64] = []
    examined = 0
    c_run = np.where(cheap, run, 0)
    cum = np.concatenate([[0], np.cumsum(c_run)]).astype(np.int64)
    for a, b in _chunks(cum, _CHUNK_POINTS):
        c = c_run[a:b]
        first = np.arange(a, b, dtype=np.int64) + 1
        jpos = ranges(first, first + c)
        i = np.repeat(order[a:b], c)
        j = order[jpos]
        examined += int(i.size)
        _keep_hits(i, j, x0, y0, x1, y1, t, parts_i, parts_j, parts_v)

    skipped = 0
    dear = order[~cheap]
    if dear.size > 1:
        gi, gj, ex, skipped = _grid_candidates(
            group[dear], x0[dear], y0[dear], x1[dear], y1[dear], t, max_pairs, image[dear]
        )
        examined += ex
        for a, b in _chunks(np.concatenate([[0], np.cumsum(np.ones(gi.size, np.int64))]), _CHUNK_POINTS):
            _keep_hits(dear[gi[a:b]], dear[gj[a:b]], x0, y0, x1, y1, t, parts_i, parts_j, parts_v)
    if not parts_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), examined, skipped
    pi, pj, pv = np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_v)
    # Same-class grid pairs are found from both ends (and clipped cells from several probes).
    _, u = np.unique(pi * n + pj, return_index=True)
    return pi[u], pj[u], pv[u], examined, skipped


def _keep_hits(
    i: I64, j: I64, x0: F64, y0: F64, x1: F64, y1: F64, t: float, pi: list[I64], pj: list[I64], pv: list[F64]
) -> None:
    """Append the candidate pairs whose box IoU is at least ``t`` (as (min, max) index pairs)."""
    keep = i != j
    i, j = i[keep], j[keep]
    iw = np.minimum(x1[i], x1[j]) - np.maximum(x0[i], x0[j])
    ih = np.minimum(y1[i], y1[j]) - np.maximum(y0[i], y0[j])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    iou = inter / ((x1[i] - x0[i]) * (y1[i] - y0[i]) + (x1[j] - x0[j]) * (y1[j] - y0[j]) - inter)
    hit = iou >= t
    pi.append(np.minimum(i[hit], j[hit]))
    pj.append(np.maximum(i[hit], j[hit]))
    pv.append(iou[hit])


def _grid_candidates(
    group: I64, x0: F64, y0: F64, x1: F64, y1: F64, t: float, max_pairs: int, image: npt.NDArray[np.integer[Any]]
) -> tuple[I64, I64, int, int]:
    """Candidate pairs of the grid join (see :func:`_check_duplicates`), capped per image.

    Returns (i, j, pairs examined, pairs skipped by the cap).
    """
    n = group.size
    w = x1 - x0
    h = y1 - y0
    step = -np.log(t)
    cw = np.floor(np.log(w) / step).astype(np.int64)
    ch = np.floor(np.log(h) / step).astype(np.int64)

    def cell(v: F64, c: I64) -> I64:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            q = np.floor(v / ((1.0 - t) * np.exp(step * (c + 2))))
        # Beyond 2^52 cells floats lose neighbours; clipping only merges far-away cells
        # (more candidates, each still checked by its IoU), never separates partners.
        return np.asarray(np.clip(np.nan_to_num(q, nan=0.0), -(2.0**52), 2.0**52), dtype=np.int64)

    def key(g: I64, kw: I64, kh: I64, qx: I64, qy: I64) -> npt.NDArray[np.uint64]:
        """A 64-bit hash of the cell: a collision only adds candidates (their IoU decides)."""
        hv = np.zeros(g.size, np.uint64)
        for comp in (g, kw, kh, qx, qy):
            hv = _splitmix64(hv ^ comp.astype(np.uint64))
        return hv

    index = key(group, cw, ch, cell(x0, cw), cell(y0, ch))
    perm = np.argsort(index, kind="stable")
    index = index[perm]

    probe_keys: list[npt.NDArray[np.uint64]] = []
    # Box i is indexed at its own classes; j probes i's possible classes. Every pair is
    # seen from the box with the larger width class (or, equal widths, from either).
    for a, b in ((0, 0), (0, 1), (1, -1), (1, 0), (1, 1)):
        qx, qy = cell(x0, cw - a), cell(y0, ch - b)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                probe_keys.append(key(group, cw - a, ch - b, qx + dx, qy + dy))
    probes = np.concatenate(probe_keys)
    # Sorted needles make searchsorted cache-friendly (random ones cost 10x more).
    psort = np.argsort(probes)
    sorted_probes = probes[psort]
    lo = np.searchsorted(index, sorted_probes, side="left")
    hi = np.searchsorted(index, sorted_probes, side="right")
    hit = hi > lo
    pj_probe = (psort[hit] % n).astype(np.int64)
    lo_all = lo[hit].astype(np.int64)
    cnt = (hi - lo)[hit].astype(np.int64)
    # Cap per image, in probe order grouped by image: the first max_pairs candidates are kept.
    img = np.asarray(image, np.int64)[pj_probe]
    by_img = np.argsort(img, kind="stable")
    pj_probe, lo_all, cnt, img = pj_probe[by_img], lo_all[by_img], cnt[by_img], img[by_img]
    before = np.cumsum(cnt) - cnt
    img_start = np.searchsorted(img, img, side="left")
    first_before = before[img_start]
    used_before = before - first_before
    allowed = np.clip(max_pairs - used_before, 0, cnt)
    skipped = int((cnt - allowed).sum())
    cnt = allowed
    examined = int(cnt.sum())

    pos = ranges(lo_all, lo_all + cnt)
    return perm[pos], np.repeat(pj_probe, cnt), examined, skipped


# --------------------------------------------------------------------------- the gate


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Check every annotation's geometry; fail when a count or rate threshold is exceeded."""
    cfg = _Config.from_section(ctx.section or {}, batch)
    ann = batch.annotations
    n = len(ann)
    out = _Collector(batch, max_findings_per_rule(cfg.thresholds))
    img = ann.image.astype(np.int64)
    has_img = img >= 0
    safe_img = np.where(has_img, img, 0)
    iw = batch.images.width.astype(np.float64)
    ih = batch.images.height.astype(np.float64)
    sized = np.isfinite(iw) & np.isfinite(ih) & (iw > 0) & (ih > 0)
    width = np.full(n, np.nan)
    height = np.full(n, np.nan)
    if len(batch.images):
        known = has_img & sized[safe_img]
        width[known] = iw[safe_img[known]]
        height[known] = ih[safe_img[known]]

    # nan (absent, unknown) and inf propagate through the arithmetic by design and
    # compare false, so a missing value never makes a finding by itself.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        boxes = _check_boxes(batch, cfg, width, height, out)
        segs, poly_stats = _check_polygons(batch, cfg, width, height, out)
        n_rle = _check_rle(batch, width, height, out, segs)
        _check_consistency(batch, cfg, boxes, segs, out)
        n_kp = _check_keypoints(batch, cfg, boxes, width, height, out)
        dup_examined, dup_skipped = _check_duplicates(batch, cfg, boxes, out)

    findings = apply_severity(out.log.findings, cfg.thresholds)
    findings.sort(key=lambda f: (f.file, f.line or 0, f.annotation_id or 0, _RULE_ORDER.get(f.rule, 99)))
    cats = batch.categories
    per_cat = np.bincount(ann.category[ann.category >= 0], minlength=len(cats)) if n else np.zeros(len(cats), np.int64)
    class_population: dict[str, int] = {}
    for k in range(len(cats)):
        name = str(cats.name[k])
        class_population[name] = class_population.get(name, 0) + int(per_cat[k])
    checks = error_type_checks(tally=out.log.tally, population=n, cfg=cfg.thresholds, class_population=class_population)
    counts = {r: 0 for r in RULES}
    counts.update(out.log.counts())
    metrics: dict[str, Any] = {
        "annotations": n,
        "boxes": int((~np.isnan(ann.bbox.reshape(-1, 4)).all(axis=1)).sum()),
        **poly_stats,
        "rle_masks": n_rle,
        "keypoint_annotations": n_kp,
        "images_without_size": int((~sized).sum()),
        "duplicate_pairs_examined": dup_examined,
        "duplicate_pairs_not_examined": dup_skipped,
        "findings": sum(counts.values()),
        "findings_by_type": {r: c for r, c in counts.items() if c},
    }
    cost = CostFacts(
        exact=defect_rows(batch, out.log.rows, is_error=lambda r: severity_for(cfg.thresholds, r) == "error")
    )
    return GateResult.from_checks(
        gate=GATE_NAME,
        population=n,
        checks=checks,
        findings=findings,
        metrics=metrics,
        cost=cost,
        finding_counts=out.log.counts(),
        max_findings_per_rule=out.log.max_per_rule,
    )


GATE = Gate(
    name=GATE_NAME,
    run=run,
    rules_schema=RULES_SCHEMA,
    description=(
        "Shapes that cannot be right: non-finite, empty, tiny or out-of-image boxes; odd, degenerate, "
        "self-intersecting or out-of-image polygons; undecodable, empty or wrong-size RLE masks; "
        "box/segmentation/area inconsistencies; bad keypoints; duplicate objects."
    ),
    order=20,
)
