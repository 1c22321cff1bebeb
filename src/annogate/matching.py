"""One-to-one object matching between a batch and a reference, with COCOeval's semantics.

Why this module exists: the golden, confusion and agreement gates all need to pair
the objects of one label set with those of another. Pairing must be the *same*
pairing pycocotools' ``COCOeval.evaluateImg`` makes at one IoU threshold, because
that is what teams already trust and what published numbers are computed with;
and it must be fast, because a golden subset can hold tens of thousands of
objects. So this module re-implements ``evaluateImg`` exactly, but vectorised:

* images are joined by **file name** (never by numeric id, ids differ between
  exports), classes by **name**;
* per image and class, batch objects are ordered by descending ``score`` with a
  stable sort (file order when there are no scores) and cut at ``max_dets``
  (per image *and class*, as COCOeval does with ``useCats``);
* golden objects are ordered non-ignored first (stable), where *ignored* means
  ``iscrowd`` (or, for keypoints, ``num_keypoints == 0``) or an area outside
  ``[0, 1e10]`` (COCO's area range "all");
* each batch object, in order, takes the available golden object of its class with
  the highest IoU ``>= min(iou, 1 - 1e-10)``; on equal IoU the *later* golden object
  wins (COCOeval's ``<`` comparison), a non-ignored object always beats an ignored
  one, and crowd regions stay available, absorbing any number of batch objects as
  *ignored* (neither true nor false positives). Crowd IoU is
  ``intersection / area(batch object)``, as COCO defines it;
* IoU is box IoU (``bbox``), mask IoU on masks rasterised at the golden image's
  size exactly as ``pycocotools.mask`` does (``segm``: polygons, RLE, or the box
  when an object has no segmentation, as ``COCO.loadRes`` does), or OKS
  (``keypoints``).

Then a second, class-agnostic pass (same greedy rule, per image) pairs the batch
objects and golden objects that are still unmatched, so that a right box with a
wrong class is reported once as *mislabelled* rather than as a miss plus an extra.

How it stays fast without per-object Python: objects are grouped with
``argsort``; IoU is computed only for pairs in the same image; masks of
single-ring polygons (and boxes) are drawn by a vectorised re-implementation of
pycocotools' ``rleFrPoly`` as column intervals, and a pair's intersection is
computed only over the columns both masks share (multi-ring polygons and RLE
masks go through pycocotools itself, one call per image); and
the inherently sequential greedy loop is run in vectorised *rounds*: a batch
object whose current best candidate is not wanted by any earlier undecided object
can be decided now, because availability only ever shrinks. Every group's first
undecided object is always decidable, so the rounds terminate; a rare long chain
of conflicts is finished by a plain loop.

Deliberate deviations from COCOeval, all on inputs it cannot handle sensibly:
non-finite IoU (nan boxes) counts as 0 instead of matching whatever comes next;
batch objects whose image or class is unknown to the reference still take part in
the class-agnostic pass; a keypoint pair with different keypoint counts has OKS 0.

Public API: :class:`MatchSettings`, :func:`match`, :class:`MatchResult`,
:class:`Status`, :func:`box_iou`, :data:`COCO_KEYPOINT_SIGMAS`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from annogate.model import SEG_POLYGON, SEG_RLE, Batch

__all__ = [
    "COCO_KEYPOINT_SIGMAS",
    "IouType",
    "MatchResult",
    "MatchSettings",
    "Status",
    "box_iou",
    "match",
]

IouType = Literal["bbox", "segm", "keypoints"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

#: COCO's per-keypoint OKS sigmas for the 17 person keypoints (pycocotools' ``kpt_oks_sigmas``).
COCO_KEYPOINT_SIGMAS: tuple[float, ...] = tuple(
    float(s)
    for s in np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)

_AREA_MAX = 1e5**2  # COCOeval areaRng "all" = [0, 1e5 ** 2]
_MAX_ROUNDS = 64  # vectorised rounds before a long conflict chain is finished by a loop


class Status(IntEnum):
    """What happened to one object. Stored as ``int8`` in :class:`MatchResult`.

    ``UNEVALUATED``: not in the comparison (image absent from the other side,
    dangling image, or excluded by ``rows``/``images``). ``MATCHED``: paired with
    an object of the same class. ``MISLABELLED``: paired by the class-agnostic pass
    (right place, wrong class). ``UNMATCHED``: an *extra* batch object or a
    *missing* golden object. ``IGNORED``: a batch object absorbed by a crowd (or
    otherwise ignored) golden region, or an ignored golden object. ``TRUNCATED``:
    a batch object beyond ``max_dets`` in its image and class (COCOeval drops it).
    """

    UNEVALUATED = 0
    MATCHED = 1
    MISLABELLED = 2
    UNMATCHED = 3
    IGNORED = 4
    TRUNCATED = 5


@dataclass(frozen=True, kw_only=True)
class MatchSettings:
    """How to match. Hashable, so it can key a cache (see :meth:`key`).

    ``oks_sigmas``: per-keypoint sigmas for OKS; ``None`` uses
    :data:`COCO_KEYPOINT_SIGMAS` for 17-keypoint classes. ``class_agnostic``:
    run the second, class-agnostic pass that finds mislabelled objects.
    """

    iou_type: IouType = "bbox"
    iou: float = 0.5
    max_dets: int = 100
    oks_sigmas: tuple[float, ...] | None = None
    class_agnostic: bool = True

    def __post_init__(self) -> None:
        if self.iou_type not in ("bbox", "segm", "keypoints"):
            raise ValueError(f"iou_type must be bbox, segm or keypoints, not {self.iou_type!r}")
        if not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"iou threshold must be within [0, 1], not {self.iou}")
        if self.max_dets < 1:
            raise ValueError(f"max_dets must be >= 1, not {self.max_dets}")

    def key(self) -> str:
        """A stable string for cache keys."""
        return f"{self.iou_type}|{self.iou!r}|{self.max_dets}|{self.oks_sigmas}|{self.class_agnostic}"


@dataclass(frozen=True, kw_only=True, eq=False)
class MatchResult:
    """The pairing of a batch with a golden (reference) set, one row per object.

    ``batch_*`` arrays have one entry per batch annotation row, ``gold_*`` one per
    golden annotation row (rows are those of ``Batch.annotations``).

    * ``batch_status`` / ``gold_status``: :class:`Status` codes (int8).
    * ``batch_match``: the golden row paired with each batch row (MATCHED,
      MISLABELLED, or the ignored region that absorbed it), else -1.
    * ``gold_match``: the batch row paired with each golden row, else -1 (for a
      crowd region: the last batch object it absorbed, as COCOeval's ``gtMatches``).
    * ``batch_iou``: IoU (or OKS) of the pair, nan when unpaired.
    * ``batch_image`` / ``gold_image``: for every batch/golden *image* row, the
      row of the same file name on the other side (-1 absent or not evaluated).
    * ``images``: golden image rows that were evaluated (present on both sides).
    """

    settings: MatchSettings
    batch_status: npt.NDArray[np.int8]
    batch_match: I64
    batch_iou: F64
    gold_status: npt.NDArray[np.int8]
    gold_match: I64
    batch_image: I64
    gold_image: I64
    images: I64
    meta: dict[str, Any] = field(default_factory=dict)

    def pairs(self, *, mislabelled: bool = True) -> tuple[I64, I64, F64]:
        """``(batch_rows, gold_rows, iou)`` of every matched pair, in batch row order.

        Same-class matches always; class-agnostic (mislabelled) pairs too unless
        ``mislabelled=False``. Crowd absorptions are not pairs.
        """
        ok = self.batch_status == Status.MATCHED
        if mislabelled:
            ok |= self.batch_status == Status.MISLABELLED
        rows = np.flatnonzero(ok).astype(np.int64)
        return rows, self.batch_match[rows], self.batch_iou[rows]

    def batch_rows(self, status: Status) -> I64:
        """Batch rows with ``status`` (e.g. ``Status.UNMATCHED`` = extras)."""
        return np.flatnonzero(self.batch_status == status).astype(np.int64)

    def gold_rows(self, status: Status) -> I64:
        """Golden rows with ``status`` (e.g. ``Status.UNMATCHED`` = missing)."""
        return np.flatnonzero(self.gold_status == status).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Overall counts, plain ints: matched, mislabelled, extra, missing, ignored, truncated."""
        bs, gs = self.batch_status, self.gold_status
        return {
            "matched": int(np.count_nonzero(bs == Status.MATCHED)),
            "mislabelled": int(np.count_nonzero(bs == Status.MISLABELLED)),
            "extra": int(np.count_nonzero(bs == Status.UNMATCHED)),
            "missing": int(np.count_nonzero(gs == Status.UNMATCHED)),
            "ignored": int(np.count_nonzero(bs == Status.IGNORED)),
            "truncated": int(np.count_nonzero(bs == Status.TRUNCATED)),
            "golden_images": int(self.images.shape[0]),
        }


# ---------------------------------------------------------------------------
# similarity functions


def box_iou(d: F64, g: F64, crowd: B | None = None) -> F64:
    """Box IoU matrix (len(d), len(g)) for ``[x, y, w, h]`` boxes, as ``pycocotools.mask.iou``.

    Same floating-point operations in the same order as pycocotools' C ``bbIou``,
    so ties at the threshold resolve identically. ``crowd[j]`` makes column ``j``
    a crowd region: intersection / area(d).
    """
    d = np.asarray(d, np.float64).reshape(-1, 4)
    g = np.asarray(g, np.float64).reshape(-1, 4)
    cr = np.zeros(g.shape[0], np.bool_) if crowd is None else np.asarray(crowd, np.bool_)
    di = np.repeat(np.arange(d.shape[0]), g.shape[0])
    gi = np.tile(np.arange(g.shape[0]), d.shape[0])
    return _pair_box_iou(d[di], g[gi], cr[gi]).reshape(d.shape[0], g.shape[0])


def _pair_box_iou(D: F64, G: F64, crowd: B) -> F64:
    """Box IoU of aligned pairs D[k], G[k] (see :func:`box_iou`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ga = G[:, 2] * G[:, 3]
        da = D[:, 2] * D[:, 3]
        w = np.fmin(D[:, 2] + D[:, 0], G[:, 2] + G[:, 0]) - np.fmax(D[:, 0], G[:, 0])
        h = np.fmin(D[:, 3] + D[:, 1], G[:, 3] + G[:, 1]) - np.fmax(D[:, 1], G[:, 1])
        i = w * h
        u = np.where(crowd, da, da + ga - i)
        o = i / u
    return np.where((w <= 0) | (h <= 0), 0.0, o)


@dataclass(kw_only=True)
class _Side:
    """The per-row arrays of one side that matching needs, for its evaluated rows only."""

    batch: Batch
    rows: I64  # annotation rows taking part
    img: I64  # joint image key (golden image row) per row
    cls: I64  # joint class key per row
    order: I64  # sort key within (image, class): smaller first
    ignore: B
    crowd: B
    gold: Batch | None = None  # the golden batch, whose image sizes masks are drawn at (segm)
    masks: dict[int, Any] = field(default_factory=dict)  # pycocotools RLE per local index, made on demand
    fast: B | None = None  # segm: drawn by the numpy rasteriser (one ring, or a box)
    size: I64 | None = None  # segm: (n, 2) h, w per local index


def _box_of(batch: Batch, rows: I64) -> F64:
    return np.asarray(batch.annotations.bbox[rows], np.float64).reshape(-1, 4)


def _image_size(gold: Batch, img: int, fallback: Sequence[float]) -> tuple[int, int]:
    h, w = float(gold.images.height[img]), float(gold.images.width[img])
    if not (np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0):
        h = max(1.0, float(fallback[1]))
        w = max(1.0, float(fallback[0]))
    return int(h), int(w)


def _to_rles(batch: Batch, rows: I64, img: I64, gold: Batch) -> list[Any]:
    """Each row's mask as a compressed RLE at its golden image's size, as COCO.annToRLE.

    Polygons of all rows of one image go to one ``frPyObjects`` call (one RLE per
    ring, then merged per annotation); an object without segmentation uses its box
    as a polygon, as ``COCO.loadRes`` does for box results.
    """
    from pycocotools import mask as mu

    ann = batch.annotations
    out: list[Any] = [None] * len(rows)
    if len(rows) == 0:
        return out
    ext = np.nan_to_num(ann.bbox[rows, :2] + ann.bbox[rows, 2:], nan=1.0)
    empty: dict[tuple[int, int], Any] = {}
    order = np.argsort(img, kind="stable")
    bounds = np.flatnonzero(np.diff(img[order])) + 1
    for grp in np.split(order, bounds):
        gi = int(img[grp[0]])
        h, w = _image_size(gold, gi, np.max(ext[grp], axis=0))
        rings: list[Any] = []
        owners: list[int] = []
        for k in grp.tolist():
            r = int(rows[k])
            kind = int(ann.seg_kind[r])
            if kind == SEG_RLE and ann.rle[r] is not None:
                out[k] = _rle_obj(ann.rle[r], h, w)
                continue
            if kind == SEG_POLYGON:
                r0, r1 = int(ann.ann_ring_offsets[r]), int(ann.ann_ring_offsets[r + 1])
                rr = [ann.poly_xy[ann.ring_offsets[j] : ann.ring_offsets[j + 1]] for j in range(r0, r1)]
                if rr and all(x.shape[0] > 4 for x in rr):
                    rings.extend(rr)
                    owners.extend([k] * len(rr))
                    continue
                out[k] = _odd_polygon(rr, h, w, empty)
                continue
            x, y, bw, bh = (float(v) for v in ann.bbox[r])
            if np.isfinite([x, y, bw, bh]).all():
                rings.append(np.array([x, y, x, y + bh, x + bw, y + bh, x + bw, y], np.float64))
                owners.append(k)
            else:
                out[k] = _empty_rle(h, w, empty)
        if rings:
            rl = mu.frPyObjects(rings, h, w)
            own = np.asarray(owners)
            starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
            ends = np.r_[starts[1:], len(own)]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                out[owners[s]] = rl[s] if e - s == 1 else mu.merge(rl[s:e])
    return out


def _rle_obj(rle: Any, h: int, w: int) -> Any:
    from pycocotools import mask as mu

    counts = rle.get("counts") if isinstance(rle, dict) else None
    try:
        if isinstance(counts, list):
            return mu.frPyObjects(rle, h, w)
        if isinstance(counts, str):
            return {"size": list(rle["size"]), "counts": counts.encode()}
        return rle
    except Exception:  # a malformed RLE is the schema gate's finding; here it matches nothing
        return _empty_rle(h, w, {})


def _odd_polygon(rings: list[F64], h: int, w: int, cache: dict[tuple[int, int], Any]) -> Any:
    """A polygon with a ring of <= 4 coordinates: pycocotools' own (odd) path, or empty."""
    from pycocotools import mask as mu

    try:
        rl = mu.frPyObjects([x.tolist() for x in rings], h, w)
        return mu.merge(rl) if isinstance(rl, list) else rl
    except Exception:
        return _empty_rle(h, w, cache)


def _empty_rle(h: int, w: int, cache: dict[tuple[int, int], Any]) -> Any:
    from pycocotools import mask as mu

    if (h, w) not in cache:
        cache[(h, w)] = mu.encode(np.zeros((h, w, 1), np.uint8, order="F"))[0]
    return cache[(h, w)]


def _ragged(counts: I64) -> tuple[I64, I64]:
    """(owner, position within owner) of a ragged expansion: owner k repeated counts[k] times."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    start = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - start[owner]


def _cdiv(a: I64, b: int) -> I64:
    return -((-a) // b)


@dataclass(kw_only=True, eq=False)
class _Raster:
    """Masks as column intervals, exactly as pycocotools' ``rleFrPoly`` rasterises polygons.

    Object ``i`` covers columns ``cmin[i]..cmax[i]`` (slots ``slot0[i]...``); slot
    ``s`` holds intervals ``istart[s]..istart[s+1]`` of rows ``[y0, y1)``. ``ok[i]``
    is False where the numpy path cannot promise pycocotools' result (non-finite or
    huge coordinates): those objects go through pycocotools itself.
    """

    cmin: I64
    cmax: I64
    slot0: I64
    istart: I64
    y0: F64
    y1: F64
    area: F64
    ok: B


def _crossings_flat(n_e: I64, base_e: I64, t0_e: I64, ys_e: F64, s_e: F64, h: F64 | float) -> tuple[I64, F64]:
    """Slots and rows of the column crossings of flat edges (``|dx| >= |dy|``).

    Crossing ``k`` of an edge is at ``t = t0 + 5k`` and keeps the smaller of the
    walk's ``v`` at ``t`` and ``t + 1``; ``v`` is monotone in ``t`` with the sign of
    the slope, so that is ``v(t)`` for a rising edge and ``v(t + 1)`` otherwise.
    """
    total = int(n_e.sum())
    cum = np.cumsum(n_e) - n_e
    ea = np.repeat(np.arange(len(n_e)), n_e)
    idx = np.arange(total, dtype=np.int64)
    slot = (base_e - cum)[ea] + idx
    t = np.arange(total, dtype=np.float64)
    t *= 5.0
    t += (t0_e + (s_e < 0) - 5 * cum).astype(np.float64)[ea]
    t *= s_e[ea]
    t += ys_e[ea]
    t += 0.5
    np.trunc(t, out=t)
    return slot, _y_of(t, h if isinstance(h, float) else h[ea])


def _y_of(v: F64, h: F64 | float) -> F64:
    """``rleFrPoly``'s downsampling of a walk row: ``ceil(clamp((v + .5) / 5 - .5, 0, h))``, in place."""
    v += 0.5
    v /= 5.0
    v -= 0.5
    np.clip(v, 0.0, h, out=v)
    return np.ceil(v, out=v)


def _rasterise(xy: F64, start: I64, npts: I64, h: I64, w: I64) -> _Raster:
    """Rasterise single-ring polygons (``npts`` vertices from ``xy[start]``) at sizes ``h`` x ``w``.

    Why not ``pycocotools.mask.frPyObjects``: it costs ~20 us per polygon in C plus
    string encoding and decoding for every IoU call; this does the same arithmetic
    for all polygons at once. It is ``rleFrPoly`` step by step: vertices scaled by 5
    and truncated, each edge walked in the upsampled grid, and a column-boundary
    point kept where the walk crosses from ``5c+2`` to ``5c+3`` (the only steps whose
    ``(x+.5)/5-.5`` is an integer), with the same ``y`` rounding and clamping. Only
    those crossings are generated (one per column per edge), in closed form for
    flat edges and by a corrected estimate for steep ones. A column's crossings,
    sorted, pair into its intervals (parity, as the RLE of the sorted points).
    Tested equal to pycocotools on random, self-intersecting and degenerate polygons.
    """
    n = len(start)
    vo, vl = _ragged(npts)
    vstart = np.cumsum(npts) - npts
    xi = start[vo] + 2 * vl
    with np.errstate(invalid="ignore", over="ignore"):
        fx = 5.0 * xy[xi] + 0.5
        fy = 5.0 * xy[xi + 1] + 0.5
    okv = np.isfinite(fx) & np.isfinite(fy) & (np.abs(fx) < 2e9) & (np.abs(fy) < 2e9)
    ok = np.ones(n, np.bool_)
    ok[vo[~okv]] = False
    X = np.trunc(np.where(okv, fx, 0.0)).astype(np.int64)
    Y = np.trunc(np.where(okv, fy, 0.0)).astype(np.int64)
    nxt = np.arange(1, len(vo) + 1)
    last = vstart + npts - 1
    nxt[last] = vstart
    xs, xe, ys, ye = X, X[nxt], Y, Y[nxt]
    dx = np.abs(xe - xs)
    dy = np.abs(ys - ye)
    hz = dx >= dy
    flip = (hz & (xs > xe)) | (~hz & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(hz, (ye - ys) / np.where(dx == 0, 1, dx), (xe - xs) / np.where(dy == 0, 1, dy))
    wv = w[vo]
    hv = h[vo].astype(np.float64)
    h_all: F64 | float = float(h[0]) if n and bool((h == h[0]).all()) else hv
    xsf = xs.astype(np.float64)
    # column range of each edge's crossings
    a_lo = np.maximum(_cdiv(xs - 2, 5), 0)
    a_hi = np.minimum((xe - 3) // 5, wv - 1)
    u0 = np.trunc(xsf + s * 0.0 + 0.5)
    u1 = np.trunc(xsf + s * dy.astype(np.float64) + 0.5)
    b_lo = np.maximum(_cdiv(np.minimum(u0, u1).astype(np.int64) - 2, 5), 0)
    b_hi = np.minimum((np.maximum(u0, u1).astype(np.int64) - 3) // 5, wv - 1)
    lo = np.where(hz, a_lo, b_lo)
    hi = np.where(hz, a_hi, b_hi)
    n_e = np.where(hz & (dx == 0), 0, np.clip(hi - lo + 1, 0, None))
    big = np.iinfo(np.int64).max
    cmin = np.minimum.reduceat(np.where(n_e > 0, lo, big), vstart) if n else np.zeros(0, np.int64)
    cmax = np.maximum.reduceat(np.where(n_e > 0, hi, -1), vstart) if n else np.zeros(0, np.int64)
    ncol = np.where(cmax >= cmin, cmax - cmin + 1, 0)
    cmin = np.where(ncol > 0, cmin, 0)
    cmax = np.where(ncol > 0, cmax, -1)
    slot0 = np.cumsum(ncol) - ncol
    nslot = int(ncol.sum())
    base = (slot0 - cmin)[vo] + lo  # slot of each edge's first crossing
    fa = np.flatnonzero(hz & (n_e > 0))
    slot_a, y_a = _crossings_flat(
        n_e[fa],
        base[fa],
        5 * lo[fa] + 2 - xs[fa],
        ys[fa].astype(np.float64),
        s[fa],
        h_all if isinstance(h_all, float) else hv[fa],
    )
    # steep edges (|dy| > |dx|): u(t) = trunc(xs + s t + .5) is monotone; find the step onto 5c+3 / 5c+2
    fb = np.flatnonzero(~hz & (n_e > 0))
    eb, kb = _ragged(n_e[fb])
    cb = lo[fb][eb] + kb
    e = fb[eb]
    sb = s[e]
    xb = xsf[e]
    inc = sb > 0
    tgt = np.where(inc, 5 * cb + 3, 5 * cb + 2).astype(np.float64)
    est = (5 * cb + 2.5 - xb) / sb
    dyb = dy[e].astype(np.float64)
    t = np.clip(np.where(inc, np.ceil(est), np.floor(est) + 1.0), 1.0, dyb)

    def pred(tt: F64) -> B:
        u = np.trunc(xb + sb * tt + 0.5)
        return np.where(inc, u >= tgt, u <= tgt)

    # the estimate is right but for rounding: fix the few that are off by a step or two
    p = pred(t)
    bad = np.flatnonzero(~p | (pred(t - 1.0) & (t > 1.0)))
    for _ in range(8):
        if bad.size == 0:
            break
        ib, sb_, xb_, tg = inc[bad], sb[bad], xb[bad], tgt[bad]
        tb = t[bad]

        def pr(tt: F64, ib: B = ib, sb_: F64 = sb_, xb_: F64 = xb_, tg: F64 = tg) -> B:
            u = np.trunc(xb_ + sb_ * tt + 0.5)
            return np.where(ib, u >= tg, u <= tg)

        pb, qb = pr(tb), pr(tb - 1.0) & (tb > 1.0)
        t[bad] = np.where(~pb, tb + 1.0, np.where(qb, tb - 1.0, tb))
        tb = t[bad]
        bad = bad[~pr(tb) | (pr(tb - 1.0) & (tb > 1.0))]
    if bad.size:
        ok[vo[e[bad]]] = False
    slot_b = base[e] + kb
    y_b = _y_of(ys[e].astype(np.float64) + t - 1.0, h_all if isinstance(h_all, float) else hv[e])
    slot = np.concatenate([slot_a, slot_b])
    y = np.concatenate([y_a, y_b])
    cnt = np.bincount(slot, minlength=nslot)
    odd = (cnt & 1) == 1
    if odd.any():
        sobj = np.repeat(np.arange(n), ncol)
        ok[sobj[odd]] = False
        cnt = cnt - odd
    nint = cnt >> 1
    istart = np.zeros(nslot + 1, np.int64)
    np.cumsum(nint, out=istart[1:])
    y0 = np.zeros(int(istart[-1]), np.float64)
    y1 = np.zeros(int(istart[-1]), np.float64)
    S = np.bincount(slot, weights=y, minlength=nslot)
    Q = np.bincount(slot, weights=y * y, minlength=nslot)
    si = np.flatnonzero(cnt == 2)
    D = np.rint(np.sqrt(np.maximum(2 * Q[si] - S[si] * S[si], 0.0)))
    y0[istart[si]] = (S[si] - D) * 0.5
    y1[istart[si]] = (S[si] + D) * 0.5
    if (cnt > 2).any():
        cx = np.flatnonzero(cnt[slot] > 2)
        order = cx[np.lexsort((y[cx], slot[cx]))]
        ss = slot[order]
        first = np.r_[True, ss[1:] != ss[:-1]]
        st = np.flatnonzero(first)
        rank = np.arange(len(order)) - np.repeat(st, np.diff(np.r_[st, len(order)]))
        keep = rank < cnt[ss]
        order, ss, rank = order[keep], ss[keep], rank[keep]
        pos = istart[ss] + rank // 2
        ev = rank % 2 == 0
        y0[pos[ev]] = y[order[ev]]
        y1[pos[~ev]] = y[order[~ev]]
    ln = y1 - y0
    csum = np.zeros(len(ln) + 1)
    np.cumsum(ln, out=csum[1:])
    ends = slot0 + ncol
    area = csum[istart[ends]] - csum[istart[slot0]]
    return _Raster(cmin=cmin, cmax=cmax, slot0=slot0, istart=istart, y0=y0, y1=y1, area=area, ok=ok)


def _raster_iou(A: _Raster, pa: I64, Bm: _Raster, pb: I64, crowd: B) -> F64:
    """IoU of aligned pairs ``A[pa]``, ``Bm[pb]`` as pycocotools' ``rleIou``: overlap of intervals
    in shared columns; union, or the first mask's area for crowd; 0 without overlap."""
    lo = np.maximum(A.cmin[pa], Bm.cmin[pb])
    hi = np.minimum(A.cmax[pa], Bm.cmax[pb])
    n = np.clip(hi - lo + 1, 0, None)
    p, k = _ragged(n)
    sa = (A.slot0 - A.cmin)[pa][p] + lo[p] + k
    sb = (Bm.slot0 - Bm.cmin)[pb][p] + lo[p] + k
    ia = A.istart[sa]
    ib = Bm.istart[sb]
    na = A.istart[sa + 1] - ia
    nb = Bm.istart[sb + 1] - ib
    one = (na == 1) & (nb == 1)
    ov = np.minimum(A.y1[ia], Bm.y1[ib]) - np.maximum(A.y0[ia], Bm.y0[ib])
    ov = np.where(one, np.maximum(ov, 0.0), 0.0)
    inter = np.bincount(p, weights=ov, minlength=len(pa))
    multi = np.flatnonzero(~one & (na > 0) & (nb > 0))
    if multi.size:
        m = na[multi] * nb[multi]
        q, r = _ragged(m)
        j = multi[q]
        xa = ia[j] + r // nb[j]
        xb = ib[j] + r % nb[j]
        o2 = np.maximum(np.minimum(A.y1[xa], Bm.y1[xb]) - np.maximum(A.y0[xa], Bm.y0[xb]), 0.0)
        inter += np.bincount(p[j], weights=o2, minlength=len(pa))
    aa, ab = A.area[pa], Bm.area[pb]
    with np.errstate(invalid="ignore", divide="ignore"):
        o = inter / np.where(crowd, aa, aa + ab - inter)
    return np.where(inter > 0, o, 0.0)


_CHUNK_PAIRS = 1 << 11  # pairs per rasterisation chunk: bounds the temporary interval arrays
_THREADS = min(4, os.cpu_count() or 1)


def _prepare_masks(side: _Side) -> None:
    """Decide per object whether the numpy rasteriser draws it, and at which size.

    Single-ring polygons (more than 4 coordinates) and objects without segmentation
    (their box, as ``COCO.loadRes`` makes it) go the fast way; multi-ring polygons,
    RLE masks and degenerate rings go through pycocotools itself, so every object
    gets exactly pycocotools' mask.
    """
    assert side.gold is not None
    ann = side.batch.annotations
    rows = side.rows
    gi = side.gold.images
    h = gi.height[side.img] if len(rows) else np.empty(0)
    w = gi.width[side.img] if len(rows) else np.empty(0)
    good = np.isfinite(h) & np.isfinite(w) & (h >= 1) & (w >= 1) & (h * w < 2**31)
    side.size = np.stack([np.where(good, h, 1), np.where(good, w, 1)], 1).astype(np.int64)
    kind = ann.seg_kind[rows]
    r0 = ann.ann_ring_offsets[rows]
    nr = ann.ann_ring_offsets[rows + 1] - r0
    ln = (
        ann.ring_offsets[np.minimum(r0 + 1, len(ann.ring_offsets) - 1)]
        - ann.ring_offsets[np.minimum(r0, len(ann.ring_offsets) - 1)]
    )
    poly = (kind == SEG_POLYGON) & (nr == 1) & (ln > 4)
    boxed = (kind != SEG_POLYGON) & (kind != SEG_RLE) & np.isfinite(ann.bbox[rows]).all(axis=1)
    side.fast = good & (poly | boxed)


def _fast_raster(side: _Side, loc: I64) -> _Raster:
    """Rasterise the side's objects ``loc`` (all fast) in one go."""
    ann = side.batch.annotations
    assert side.size is not None
    rows = side.rows[loc]
    kind = ann.seg_kind[rows]
    is_poly = kind == SEG_POLYGON
    r0 = ann.ann_ring_offsets[rows]
    start = np.where(is_poly, ann.ring_offsets[np.minimum(r0, len(ann.ring_offsets) - 1)], 0)
    ncoord = np.where(is_poly, ann.ring_offsets[np.minimum(r0 + 1, len(ann.ring_offsets) - 1)] - start, 8)
    npts = ncoord // 2
    # gather the rings' coordinates (boxes become 4-vertex polygons) into one array
    o, k = _ragged(2 * npts)
    xy = np.empty(len(o), np.float64)
    pm = is_poly[o]
    xy[pm] = ann.poly_xy[start[o[pm]] + k[pm]]
    bx = ann.bbox[rows]
    corners = np.stack(
        [
            bx[:, 0],
            bx[:, 1],
            bx[:, 0],
            bx[:, 1] + bx[:, 3],
            bx[:, 0] + bx[:, 2],
            bx[:, 1] + bx[:, 3],
            bx[:, 0] + bx[:, 2],
            bx[:, 1],
        ],
        1,
    )
    xy[~pm] = corners[o[~pm], k[~pm]]
    off = np.cumsum(2 * npts) - 2 * npts
    hw = side.size[loc]
    return _rasterise(xy, off, npts, hw[:, 0], hw[:, 1])


def _rles_for(side: _Side, loc: npt.NDArray[np.int64]) -> list[Any]:
    """pycocotools RLEs of the side's objects ``loc`` (made once, then cached)."""
    assert side.gold is not None
    need = np.array(sorted({int(x) for x in loc.tolist()} - side.masks.keys()), np.int64)
    if need.size:
        for k, r in zip(need.tolist(), _to_rles(side.batch, side.rows[need], side.img[need], side.gold), strict=True):
            side.masks[k] = r
    return [side.masks[int(x)] for x in loc.tolist()]


def _pair_mask_iou(ds: _Side, gs: _Side, di: I64, gi: I64, crowd: B) -> F64:
    """Mask IoU of aligned pairs, equal to pycocotools' ``maskUtils.iou`` on COCO's masks.

    Pairs of two fast objects use the numpy rasteriser, chunk by chunk in image
    order; the rest call pycocotools once per image.
    """
    from pycocotools import mask as mu

    out = np.zeros(len(di), np.float64)
    if len(di) == 0:
        return out
    assert ds.fast is not None and gs.fast is not None
    both = ds.fast[di] & gs.fast[gi]
    fast = np.flatnonzero(both)
    fast = fast[np.argsort(gs.img[gi[fast]], kind="stable")]

    def work(ch: I64) -> I64:
        ud, pd = np.unique(di[ch], return_inverse=True)
        ug, pg = np.unique(gi[ch], return_inverse=True)
        ra, rb = _fast_raster(ds, ud), _fast_raster(gs, ug)
        out[ch] = _raster_iou(ra, pd, rb, pg, crowd[ch])
        return ch[~(ra.ok[pd] & rb.ok[pg])]

    chunks = [fast[c0 : c0 + _CHUNK_PAIRS] for c0 in range(0, len(fast), _CHUNK_PAIRS)]
    slow: list[I64] = [np.flatnonzero(~both)]
    if len(chunks) > 1 and _THREADS > 1:
        # numpy releases the GIL in these array loops: chunks draw in parallel
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(_THREADS, len(chunks))) as ex:
            slow += list(ex.map(work, chunks))
    else:
        slow += [work(ch) for ch in chunks]
    rest = np.concatenate(slow)
    if rest.size == 0:
        return out
    order = rest[np.argsort(gs.img[gi[rest]], kind="stable")]
    bounds = np.flatnonzero(np.diff(gs.img[gi[order]])) + 1
    for grp in np.split(order, bounds):
        ud, dpos = np.unique(di[grp], return_inverse=True)
        ug, gpos = np.unique(gi[grp], return_inverse=True)
        cr = np.zeros(len(ug), np.bool_)
        cr[gpos] = crowd[grp]  # COCO's crowd flag belongs to the golden object
        o = mu.iou(_rles_for(ds, ud), _rles_for(gs, ug), cr.astype(np.uint8).tolist())
        out[grp] = np.asarray(o, np.float64).reshape(len(ud), len(ug))[dpos, gpos]
    return out


def _pair_oks(ds: _Side, gs: _Side, di: I64, gi: I64, sigmas: tuple[float, ...] | None) -> F64:
    """OKS of aligned pairs, vectorised per keypoint count, as COCOeval.computeOks."""
    da, ga = ds.batch.annotations, gs.batch.annotations
    dr, gr = ds.rows[di], gs.rows[gi]
    kd = da.kp_offsets[dr + 1] - da.kp_offsets[dr]
    kg = ga.kp_offsets[gr + 1] - ga.kp_offsets[gr]
    out = np.zeros(len(di), np.float64)
    for K in np.unique(kg[(kg == kd) & (kg > 0)]).tolist():
        sel = np.flatnonzero((kg == K) & (kd == K))
        if sigmas is not None and len(sigmas) == K:
            sg = np.asarray(sigmas, np.float64)
        elif K == len(COCO_KEYPOINT_SIGMAS):
            sg = np.asarray(COCO_KEYPOINT_SIGMAS, np.float64)
        else:
            raise ValueError(f"objects with {K} keypoints need oks_sigmas of length {K}")
        var = (sg * 2) ** 2
        span = np.arange(3 * K)
        G = ga.keypoints[3 * ga.kp_offsets[gr[sel]][:, None] + span].reshape(-1, K, 3)
        D = da.keypoints[3 * da.kp_offsets[dr[sel]][:, None] + span].reshape(-1, K, 3)
        xg, yg, vg = G[..., 0], G[..., 1], G[..., 2]
        xd, yd = D[..., 0], D[..., 1]
        k1 = np.count_nonzero(vg > 0, axis=1)
        bb = ga.bbox[gr[sel]]
        x0 = (bb[:, 0] - bb[:, 2])[:, None]
        x1 = (bb[:, 0] + bb[:, 2] * 2)[:, None]
        y0 = (bb[:, 1] - bb[:, 3])[:, None]
        y1 = (bb[:, 1] + bb[:, 3] * 2)[:, None]
        vis = (k1 > 0)[:, None]
        z = np.zeros_like(xd)
        dx = np.where(vis, xd - xg, np.maximum(z, x0 - xd) + np.maximum(z, xd - x1))
        dy = np.where(vis, yd - yg, np.maximum(z, y0 - yd) + np.maximum(z, yd - y1))
        area = ga.area[gr[sel]][:, None]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            e = (dx**2 + dy**2) / var / (area + np.spacing(1)) / 2
            keep = np.where(vis, vg > 0, True)
            s = np.sum(np.where(keep, np.exp(-e), 0.0), axis=1)
            out[sel] = s / np.count_nonzero(keep, axis=1)
    return out


def _similarity(ds: _Side, gs: _Side, di: I64, gi: I64, settings: MatchSettings, use_crowd: bool) -> F64:
    """IoU / OKS of aligned pairs ``(ds[di], gs[gi])``; non-finite values become 0."""
    crowd = gs.crowd[gi] if use_crowd else np.zeros(len(gi), np.bool_)
    if settings.iou_type == "bbox":
        v = _pair_box_iou(_box_of(ds.batch, ds.rows[di]), _box_of(gs.batch, gs.rows[gi]), crowd)
    elif settings.iou_type == "segm":
        v = _pair_mask_iou(ds, gs, di, gi, crowd)
    else:
        v = _pair_oks(ds, gs, di, gi, settings.oks_sigmas)
    return np.where(np.isfinite(v), v, 0.0)


# ---------------------------------------------------------------------------
# pairing and the greedy match


def _group_pairs(dkey: I64, gkey: I64) -> tuple[I64, I64]:
    """Every (d, g) index pair with ``dkey[d] == gkey[g]``: a ragged cartesian product."""
    if len(dkey) == 0 or len(gkey) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys, ginv = np.unique(gkey, return_inverse=True)
    g_order = np.argsort(ginv, kind="stable")
    g_cnt = np.bincount(ginv, minlength=len(keys))
    g_start = np.cumsum(g_cnt) - g_cnt
    pos = np.searchsorted(keys, dkey)
    pos = np.clip(pos, 0, len(keys) - 1)
    has = keys[pos] == dkey
    d_idx = np.flatnonzero(has)
    per = g_cnt[pos[d_idx]]
    total = int(per.sum())
    di = np.repeat(d_idx, per)
    start = np.repeat(np.cumsum(per) - per, per)
    within = np.arange(total) - start
    gi = g_order[np.repeat(g_start[pos[d_idx]], per) + within]
    return di.astype(np.int64), gi.astype(np.int64)


def _greedy(d_rank: I64, g: I64, pref: tuple[npt.NDArray[Any], ...], crowd: B, n_gold: int) -> tuple[I64, I64]:
    """COCOeval's greedy assignment over candidate pairs, in vectorised rounds.

    ``d_rank``: each pair's batch object position in the global processing order
    (group-major, then score order). ``g``: golden index (0..n_gold). ``pref``:
    lexsort keys, least significant first, whose maximum is the object's choice
    among available candidates. ``crowd[k]``: the golden object of pair k never
    becomes unavailable. Returns the chosen pairs' ``(d_rank, pair index)``.
    """
    if len(d_rank) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    srt = np.lexsort((*pref, d_rank))
    dr, gg, cr = d_rank[srt], g[srt], crowd[srt]
    alive = np.ones(len(srt), np.bool_)
    taken = np.zeros(n_gold, np.bool_)
    n_det = int(dr.max()) + 1
    decided = np.zeros(n_det, np.bool_)
    chosen: list[I64] = []
    for _ in range(_MAX_ROUNDS):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        d = dr[idx]
        last = np.r_[d[1:] != d[:-1], True]
        best = idx[last]
        # the earliest undecided object wanting each (non-crowd) golden object
        nc = idx[~cr[idx]]
        ug, first = np.unique(gg[nc], return_index=True)
        first_d = np.full(n_gold, -1, np.int64)
        first_d[ug] = dr[nc[first]]
        bg = gg[best]
        safe = cr[best] | (first_d[bg] == dr[best])
        now = best[safe]
        chosen.append(now)
        decided[dr[now]] = True
        taken[gg[now][~cr[now]]] = True
        alive &= ~decided[dr] & ~(taken[gg] & ~cr)
    else:
        # a long chain of conflicts: finish it in order, exactly as COCOeval's loop
        idx = np.flatnonzero(alive)
        rest: list[int] = []
        if idx.size:
            d = dr[idx]
            starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            ends = np.r_[starts[1:], len(idx)]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                for k in idx[s:e][::-1].tolist():
                    gk = int(gg[k])
                    if cr[k] or not taken[gk]:
                        rest.append(k)
                        if not cr[k]:
                            taken[gk] = True
                        break
        chosen.append(np.asarray(rest, np.int64))
    sel = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    return dr[sel], srt[sel]


def _rank_within(keys: Sequence[npt.NDArray[Any]], order: npt.NDArray[Any]) -> tuple[I64, I64]:
    """Sort by ``keys`` (group keys, most significant last) then ``order``; rank within group."""
    srt = np.lexsort((order, *keys))
    grp = np.zeros(len(srt), np.bool_)
    if len(srt):
        grp[0] = True
        for k in keys:
            ks = k[srt]
            grp[1:] |= ks[1:] != ks[:-1]
    starts = np.flatnonzero(grp)
    run = np.arange(len(srt)) - np.repeat(starts, np.diff(np.r_[starts, len(srt)]))
    rank = np.empty(len(srt), np.int64)
    rank[srt] = run
    pos = np.empty(len(srt), np.int64)
    pos[srt] = np.arange(len(srt))
    return pos, rank


def _as_rows(rows: Iterable[int] | npt.NDArray[Any] | None, n: int) -> B:
    m = np.zeros(n, np.bool_)
    if rows is None:
        m[:] = True
        return m
    a = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows))
    if a.dtype == np.bool_:
        m[: len(a)] = a[:n]
    elif a.size:
        m[a.astype(np.int64)] = True
    return m


def match(
    batch: Batch,
    golden: Batch,
    settings: MatchSettings | None = None,
    *,
    batch_rows: Iterable[int] | npt.NDArray[Any] | None = None,
    gold_rows: Iterable[int] | npt.NDArray[Any] | None = None,
    images: Iterable[str] | None = None,
) -> MatchResult:
    """Pair ``batch``'s objects with ``golden``'s, one to one, as COCOeval at one threshold.

    ``batch`` plays COCOeval's detections, ``golden`` its ground truth. Only images
    whose file name is on both sides are evaluated (optionally only ``images``);
    ``batch_rows`` / ``gold_rows`` (indices or boolean masks) restrict the objects
    taking part, so the same :class:`Batch` can be passed twice with different
    annotators' rows (inter-annotator agreement). Classes are joined by name.

    Raises ``ValueError`` for keypoints with a keypoint count that has no sigmas.
    """
    st = settings or MatchSettings()
    ba, ga = batch.annotations, golden.annotations
    nb, ng = len(ba), len(ga)

    # ---- join images by file name
    gname = golden.images.index_by_name()
    wanted = None if images is None else {str(x) for x in images}
    b2g = np.full(len(batch.images), -1, np.int64)
    for i, n in enumerate(batch.images.file_name.tolist()):
        k = gname.get(str(n), -1)
        if k >= 0 and (wanted is None or str(n) in wanted):
            b2g[i] = k
    g2b = np.full(len(golden.images), -1, np.int64)
    hit = np.flatnonzero(b2g >= 0)
    g2b[b2g[hit[::-1]]] = hit[::-1]  # first batch image of each name
    evaluated = np.flatnonzero(g2b >= 0).astype(np.int64)
    if len(golden.images):
        g_img_ok = g2b >= 0
    else:
        g_img_ok = np.zeros(0, np.bool_)

    # ---- join classes by name: golden class index; unknown batch classes get their own keys
    gcat = golden.categories.index_by_name()
    bcat_map = np.array(
        [gcat.get(str(n), len(golden.categories) + i) for i, n in enumerate(batch.categories.name.tolist())] or [0],
        np.int64,
    )[: len(batch.categories)]
    b_cls = np.where(ba.category >= 0, bcat_map[np.clip(ba.category, 0, None)] if len(bcat_map) else -3, -3).astype(
        np.int64
    )
    g_cls = np.where(ga.category >= 0, ga.category, -2).astype(np.int64)

    b_img = np.where(ba.image >= 0, b2g[np.clip(ba.image, 0, None)] if len(b2g) else -1, -1).astype(np.int64)
    b_ok = (b_img >= 0) & _as_rows(batch_rows, nb)
    g_img = ga.image.astype(np.int64)
    g_ok = (g_img >= 0) & _as_rows(gold_rows, ng)
    if len(g_img_ok):
        g_ok &= g_img_ok[np.clip(g_img, 0, None)]
    else:
        g_ok[:] = False

    # ---- golden ignore flags (COCOeval: iscrowd, area range "all", keypoints without keypoints)
    g_crowd = ga.iscrowd.astype(np.bool_)
    g_ign = g_crowd | (ga.area < 0) | (ga.area > _AREA_MAX)
    if st.iou_type == "keypoints":
        nk = ga.num_keypoints.astype(np.int64)
        if np.any(nk < 0):
            vis = (
                np.add.reduceat(np.r_[ga.keypoints[2::3] > 0, False].astype(np.int64), ga.kp_offsets[:-1])
                if len(ga.keypoints)
                else np.zeros(ng, np.int64)
            )
            vis = np.where(np.diff(ga.kp_offsets) > 0, vis, 0)
            nk = np.where(nk < 0, vis, nk)
        g_ign = g_ign | (nk == 0)

    bro = np.flatnonzero(b_ok).astype(np.int64)
    gro = np.flatnonzero(g_ok).astype(np.int64)
    score = ba.score[bro]
    neg = np.where(np.isnan(score), np.inf, -score)  # COCOeval sorts -score; nan last
    ds = _Side(
        batch=batch,
        rows=bro,
        img=b_img[bro],
        cls=b_cls[bro],
        order=neg,
        ignore=np.zeros(len(bro), np.bool_),
        crowd=np.zeros(len(bro), np.bool_),
    )
    gs = _Side(
        batch=golden,
        rows=gro,
        img=g_img[gro],
        cls=g_cls[gro],
        order=g_ign[gro].astype(np.int64),
        ignore=g_ign[gro],
        crowd=g_crowd[gro],
    )

    # processing order: per (image, class), score order; gold order per (image, class): non-ignored first
    d_pos, d_rank_in = _rank_within([ds.cls, ds.img], ds.order)
    g_pos, _ = _rank_within([gs.cls, gs.img], gs.order)
    trunc = d_rank_in >= st.max_dets
    live_d = np.flatnonzero(~trunc)

    if st.iou_type == "segm":
        ds.gold = gs.gold = golden
        _prepare_masks(ds)
        _prepare_masks(gs)

    thr = min(st.iou, 1 - 1e-10)
    b_status = np.zeros(nb, np.int8)
    b_match = np.full(nb, -1, np.int64)
    b_iou = np.full(nb, np.nan, np.float64)
    g_status = np.zeros(ng, np.int8)
    g_match = np.full(ng, -1, np.int64)

    # ---- pass 1: per image and class
    n_cls = int(max(ds.cls.max(initial=0), gs.cls.max(initial=0))) + 4
    dkey = ds.img[live_d] * n_cls + (ds.cls[live_d] + 3)
    gkey = gs.img * n_cls + (gs.cls + 3)
    pi, pj = _group_pairs(dkey, gkey)
    pi = live_d[pi]
    v = _similarity(ds, gs, pi, pj, st, use_crowd=True)
    cand = v >= thr
    pi, pj, v = pi[cand], pj[cand], v[cand]
    d1, k1 = _greedy(d_pos[pi], pj, (g_pos[pj], v, ~gs.ignore[pj]), gs.crowd[pj], len(gro))
    m_d, m_g, m_v = pi[k1], pj[k1], v[k1]
    # d1 (processing order) ascending within the chosen set sorted -> later absorptions overwrite
    o = np.argsort(d1, kind="stable")
    m_d, m_g, m_v = m_d[o], m_g[o], m_v[o]

    b_status[bro] = Status.UNMATCHED
    b_status[bro[trunc]] = Status.TRUNCATED
    g_status[gro] = np.where(gs.ignore, Status.IGNORED, Status.UNMATCHED)
    ign_pair = gs.ignore[m_g]
    b_status[bro[m_d]] = np.where(ign_pair, Status.IGNORED, Status.MATCHED)
    b_match[bro[m_d]] = gro[m_g]
    b_iou[bro[m_d]] = m_v
    g_match[gro[m_g]] = bro[m_d]
    g_status[gro[m_g[~ign_pair]]] = Status.MATCHED
    # COCOeval: an unmatched detection outside the area range is ignored (boxes only can be)
    if st.iou_type == "bbox":
        bx = ba.bbox[bro]
        with np.errstate(invalid="ignore"):
            da = bx[:, 2] * bx[:, 3]
        out_rng = (da < 0) | (da > _AREA_MAX)
        un = out_rng & (b_status[bro] == Status.UNMATCHED)
        b_status[bro[un]] = Status.IGNORED

    # ---- pass 2: class-agnostic, leftovers only, per image
    if st.class_agnostic:
        ld = np.flatnonzero(b_status[bro] == Status.UNMATCHED)
        lg = np.flatnonzero(g_status[gro] == Status.UNMATCHED)
        qi, qj = _group_pairs(ds.img[ld], gs.img[lg])
        qi, qj = ld[qi], lg[qj]
        diff = ds.cls[qi] != gs.cls[qj]
        qi, qj = qi[diff], qj[diff]
        w = _similarity(ds, gs, qi, qj, st, use_crowd=False)
        cand = w >= thr
        qi, qj, w = qi[cand], qj[cand], w[cand]
        rank2, _ = _rank_within([ds.img], ds.order)  # score order within image, class-agnostic
        _, k2 = _greedy(rank2[qi], qj, (g_pos[qj], w), np.zeros(len(qj), np.bool_), len(gro))
        b_status[bro[qi[k2]]] = Status.MISLABELLED
        b_match[bro[qi[k2]]] = gro[qj[k2]]
        b_iou[bro[qi[k2]]] = w[k2]
        g_status[gro[qj[k2]]] = Status.MISLABELLED
        g_match[gro[qj[k2]]] = bro[qi[k2]]

    bimg = np.full(len(batch.images), -1, np.int64)
    bimg[hit] = b2g[hit]
    return MatchResult(
        settings=st,
        batch_status=b_status,
        batch_match=b_match,
        batch_iou=b_iou,
        gold_status=g_status,
        gold_match=g_match,
        batch_image=bimg,
        gold_image=g2b,
        images=evaluated,
        meta={"candidate_pairs": len(pi)},
    )
