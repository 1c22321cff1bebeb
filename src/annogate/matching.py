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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from annogate.masks import MaskSet, pair_mask_iou
from annogate.model import Batch
from annogate.ragged import ranges

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
    * ``unmatchable_batch`` / ``unmatchable_gold``: rows whose mask is unsafe or
      undrawable (``segm``; see :class:`~annogate.masks.MaskSet`): IoU 0 with
      everything, never handed to C; ``meta["reasons"]`` counts why.
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
    unmatchable_batch: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    unmatchable_gold: I64 = field(default_factory=lambda: np.empty(0, np.int64))
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
    masks: MaskSet | None = None  # segm: the objects' masks at their golden image's size


def _box_of(batch: Batch, rows: I64) -> F64:
    return np.asarray(batch.annotations.bbox[rows], np.float64).reshape(-1, 4)


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
        assert ds.masks is not None and gs.masks is not None
        v = pair_mask_iou(ds.masks, gs.masks, di, gi, crowd)
    else:
        v = _pair_oks(ds, gs, di, gi, settings.oks_sigmas)
    return np.where(np.isfinite(v), v, 0.0)


# ---------------------------------------------------------------------------
# pairing and the greedy match


#: Most candidate pairs (similarity at or above the threshold) kept for one match.
#: Greedy matching needs every candidate, so an image where thousands of objects all
#: overlap thousands of others (20,000 identical boxes) cannot be matched in bounded
#: memory: it is refused with :class:`TooManyCandidates` (a failed gate result) instead.
MAX_CANDIDATES = 1 << 22
#: Pairs examined per step: bounds the temporaries whatever the image.
_PAIR_CHUNK = 1 << 18
#: Below this many group pairs per object, all pairs of a group are scored directly
#: (linear anyway); above it the x-sweep prunes them.
_DIRECT_PER_OBJECT = 8


class TooManyCandidates(ValueError):
    """More candidate pairs than :data:`MAX_CANDIDATES`: the match is refused, not attempted."""


class MissingSigmas(ValueError):
    """Keypoint objects whose keypoint count has no OKS sigmas (``oks_sigmas`` in the rules).

    ``counts``: the keypoint counts lacking sigmas. Raised before any matching work.
    """

    def __init__(self, counts: Sequence[int]) -> None:
        self.counts = tuple(sorted({int(k) for k in counts}))
        super().__init__(
            "objects with " + " / ".join(str(k) for k in self.counts) + " keypoints need oks_sigmas of that length"
        )


def sigma_problem(batch: Batch, settings: MatchSettings, rows: npt.NDArray[Any] | None = None) -> dict[str, int]:
    """Classes of ``batch`` (name -> keypoint count) whose objects OKS cannot score under ``settings``.

    OKS needs one sigma per keypoint: ``oks_sigmas`` of that length, or COCO's 17 for
    17-keypoint objects. Empty when every keypoint object is covered (or ``iou_type`` is
    not keypoints), so a gate can name the class and the rule key instead of raising.
    """
    if settings.iou_type != "keypoints":
        return {}
    ann = batch.annotations
    k = np.diff(ann.kp_offsets).astype(np.int64)
    sel = np.ones(len(ann), np.bool_) if rows is None else _as_rows(rows, len(ann))
    ok = {len(COCO_KEYPOINT_SIGMAS)} if settings.oks_sigmas is None else {len(settings.oks_sigmas)}
    if settings.oks_sigmas is not None and len(settings.oks_sigmas) != len(COCO_KEYPOINT_SIGMAS):
        ok.add(len(COCO_KEYPOINT_SIGMAS))
    bad = sel & (k > 0) & ~np.isin(k, sorted(ok))
    out: dict[str, int] = {}
    for r in np.flatnonzero(bad).tolist():
        out.setdefault(batch.category_name(r) or "<unknown>", int(k[r]))
    return out


def _extents(side: _Side, settings: MatchSettings) -> F64 | None:
    """``(x0, y0, x1, y1)`` per object outside which it has no overlap with anything, or None (no pruning).

    Boxes: the box (IoU > 0 needs overlapping boxes; nan or empty boxes overlap
    nothing, exactly as their IoU is 0). Masks: the mask's extent (see
    :class:`~annogate.masks.MaskSet`). Keypoints: OKS is positive at any distance, so
    no pruning.
    """
    if settings.iou_type == "bbox":
        b = _box_of(side.batch, side.rows)
        return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])
    if settings.iou_type == "segm":
        assert side.masks is not None
        return side.masks.extent
    return None


def _overlap_ranges(dkey: I64, de: F64, gkey: I64, ge: F64) -> tuple[I64, I64, I64, I64, I64, I64]:
    """Ranges of x-overlapping candidates with equal keys, in O(n log n + output).

    Intervals ``[a0, a1)`` and ``[b0, b1)`` overlap iff ``b0`` lies in ``[a0, a1)`` or
    ``a0`` lies in ``(b0, b1)``: two disjoint cases, each a contiguous run of the other
    side sorted by (key, x0). Returns, per batch object, the run of golden positions
    (case 1) and, per golden object, the run of batch positions (case 2), with the sort
    orders: ``(d_lo, d_hi, g_order, g_lo, g_hi, d_order)``.
    """
    allx = np.concatenate([de[:, 0], de[:, 2], ge[:, 0], ge[:, 2]])
    ux, inv = np.unique(allx, return_inverse=True)
    inv = inv.ravel().astype(np.int64)
    nd, ng = de.shape[0], ge.shape[0]
    r_d0, r_d1 = inv[:nd], inv[nd : 2 * nd]
    r_g0, r_g1 = inv[2 * nd : 2 * nd + ng], inv[2 * nd + ng :]
    span = int(ux.shape[0]) + 1
    gk = gkey * span + r_g0
    g_order = np.argsort(gk, kind="stable")
    gs = gk[g_order]
    d_lo = np.searchsorted(gs, dkey * span + r_d0, "left")
    d_hi = np.searchsorted(gs, dkey * span + r_d1, "left")
    dk = dkey * span + r_d0
    d_order = np.argsort(dk, kind="stable")
    ds = dk[d_order]
    g_lo = np.searchsorted(ds, gkey * span + r_g0, "right")
    g_hi = np.searchsorted(ds, gkey * span + r_g1, "left")
    return d_lo, np.maximum(d_hi, d_lo), g_order, g_lo, np.maximum(g_hi, g_lo), d_order


def _chunks(lengths: I64) -> list[tuple[int, int]]:
    """Split owners into consecutive runs whose summed ``lengths`` stay near :data:`_PAIR_CHUNK`."""
    if lengths.size == 0:
        return []
    c = np.cumsum(lengths)
    out: list[tuple[int, int]] = []
    start = 0
    n = int(lengths.shape[0])
    while start < n:
        base = int(c[start - 1]) if start else 0
        end = int(np.searchsorted(c, base + _PAIR_CHUNK, "right"))
        end = max(end, start + 1)
        out.append((start, min(end, n)))
        start = end
    return out


def _candidates(
    ds: _Side,
    gs: _Side,
    dsel: I64,
    gsel: I64,
    dkey: I64,
    gkey: I64,
    settings: MatchSettings,
    *,
    use_crowd: bool,
    thr: float,
    other_class: bool = False,
) -> tuple[I64, I64, F64]:
    """Pairs ``(ds[dsel[i]], gs[gsel[j]])`` with ``dkey[i] == gkey[j]`` and similarity ``>= thr``.

    Why not all pairs of a group: two annotators with 8,000 boxes each on one image
    are 64 million pairs (9 GB). With a positive threshold only overlapping objects
    can qualify, so pairs are enumerated from a sweep over x (see
    :func:`_overlap_ranges`), filtered on y, and scored chunk by chunk; memory is
    O(objects + candidates), and more than :data:`MAX_CANDIDATES` candidates raise
    :class:`TooManyCandidates`. Without pruning (threshold 0, keypoints) the group
    pairs are scored in chunks under the same cap. ``other_class`` keeps only pairs
    of different classes (the class-agnostic pass).
    """
    keep_i: list[I64] = []
    keep_j: list[I64] = []
    keep_v: list[F64] = []
    kept = 0

    def score(ci: I64, cj: I64) -> None:
        nonlocal kept
        di, gi = dsel[ci], gsel[cj]
        if other_class:
            diff = ds.cls[di] != gs.cls[gi]
            di, gi = di[diff], gi[diff]
        v = _similarity(ds, gs, di, gi, settings, use_crowd=use_crowd)
        ok = v >= thr
        kept += int(np.count_nonzero(ok))
        if kept > MAX_CANDIDATES:
            raise TooManyCandidates(
                f"more than {MAX_CANDIDATES} candidate pairs (objects overlapping at IoU >= {settings.iou}): "
                "an image holds thousands of mutually overlapping objects; see the geometry gate's duplicates"
            )
        keep_i.append(di[ok])
        keep_j.append(gi[ok])
        keep_v.append(v[ok])

    if dsel.size == 0 or gsel.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    # all pairs of each group: cheap when groups are small (a golden subset: a few objects
    # per image and class), and the only way without a positive threshold or extents
    keys, g_inv = np.unique(gkey, return_inverse=True)
    g_inv = g_inv.ravel()
    g_cnt = np.bincount(g_inv, minlength=len(keys))
    pos = np.clip(np.searchsorted(keys, dkey), 0, max(len(keys) - 1, 0))
    per = np.where(keys[pos] == dkey, g_cnt[pos], 0).astype(np.int64) if len(keys) else np.zeros(len(dkey), np.int64)
    total = int(per.sum())
    de = _extents(ds, settings)
    ge = _extents(gs, settings)
    if thr > 0 and de is not None and ge is not None and total > _DIRECT_PER_OBJECT * (len(dsel) + len(gsel)):
        de, ge = de[dsel], ge[gsel]
        with np.errstate(invalid="ignore"):
            d_ok = (de[:, 2] > de[:, 0]) & (de[:, 3] > de[:, 1])  # nan and empty extents overlap nothing
            g_ok = (ge[:, 2] > ge[:, 0]) & (ge[:, 3] > ge[:, 1])
        de = np.where(d_ok[:, None], de, 0.0)
        ge = np.where(g_ok[:, None], ge, 0.0)
        d_lo, d_hi, g_order, g_lo, g_hi, d_order = _overlap_ranges(
            np.where(d_ok, dkey, -1), de, np.where(g_ok, gkey, -2), ge
        )
        d_len = np.where(d_ok, d_hi - d_lo, 0)
        g_len = np.where(g_ok, g_hi - g_lo, 0)
        for a, b in _chunks(d_len):  # case 1: golden x0 within the batch object's x-range
            ci = np.repeat(np.arange(a, b, dtype=np.int64), d_len[a:b])
            cj = g_order[ranges(d_lo[a:b], d_lo[a:b] + d_len[a:b])]
            y = (ge[cj, 1] < de[ci, 3]) & (de[ci, 1] < ge[cj, 3])
            score(ci[y], cj[y])
        for a, b in _chunks(g_len):  # case 2: batch x0 strictly within the golden object's x-range
            cj = np.repeat(np.arange(a, b, dtype=np.int64), g_len[a:b])
            ci = d_order[ranges(g_lo[a:b], g_lo[a:b] + g_len[a:b])]
            y = (ge[cj, 1] < de[ci, 3]) & (de[ci, 1] < ge[cj, 3])
            score(ci[y], cj[y])
    else:
        if total > 16 * MAX_CANDIDATES:
            raise TooManyCandidates(
                f"{total} object pairs to score without pruning (iou 0 or keypoints): more than {16 * MAX_CANDIDATES}"
            )
        g_order = np.argsort(g_inv, kind="stable")
        g_start = np.cumsum(g_cnt) - g_cnt
        for a, b in _chunks(per):
            ci = np.repeat(np.arange(a, b, dtype=np.int64), per[a:b])
            st = g_start[pos[a:b]]
            cj = g_order[ranges(st, st + per[a:b])]
            score(ci, cj)
    if not keep_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    i, j, v = np.concatenate(keep_i), np.concatenate(keep_j), np.concatenate(keep_v)
    o = np.lexsort((j, i))  # deterministic order whatever the enumeration
    return i[o], j[o], v[o]


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
        ds.masks = MaskSet.build(batch, ds.rows, ds.img, golden)
        gs.masks = MaskSet.build(golden, gs.rows, gs.img, golden)

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
    pi, pj, v = _candidates(
        ds, gs, live_d, np.arange(len(gro), dtype=np.int64), dkey, gkey, st, use_crowd=True, thr=thr
    )
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
        qi, qj, w = _candidates(ds, gs, ld, lg, ds.img[ld], gs.img[lg], st, use_crowd=False, thr=thr, other_class=True)
        rank2, _ = _rank_within([ds.img], ds.order)  # score order within image, class-agnostic
        _, k2 = _greedy(rank2[qi], qj, (g_pos[qj], w), np.zeros(len(qj), np.bool_), len(gro))
        b_status[bro[qi[k2]]] = Status.MISLABELLED
        b_match[bro[qi[k2]]] = gro[qj[k2]]
        b_iou[bro[qi[k2]]] = w[k2]
        g_status[gro[qj[k2]]] = Status.MISLABELLED
        g_match[gro[qj[k2]]] = bro[qi[k2]]

    bad_b = np.empty(0, np.int64)
    bad_g = np.empty(0, np.int64)
    why: dict[str, int] = {}
    if ds.masks is not None and gs.masks is not None:
        bad_b, bad_g = bro[ds.masks.invalid], gro[gs.masks.invalid]
        for ms in (ds.masks, gs.masks):
            for reason, cnt in ms.reason_counts().items():
                why[reason] = why.get(reason, 0) + cnt
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
        unmatchable_batch=bad_b,
        unmatchable_gold=bad_g,
        meta={"candidate_pairs": len(pi), "unmatchable": {"batch": len(bad_b), "golden": len(bad_g)}, "reasons": why},
    )
