"""Gate 5, agreement: do several annotators who labelled the same images agree?

Why this gate: a golden set is expensive and often missing; where a batch has
images labelled independently by two or more annotators (its ``annotator``
column), their agreement measures label quality without one, and their majority
vote (the *consensus*) can stand in for the golden set.

How it works
------------
1. **Images.** An image (keyed by file name, as everywhere in annogate) takes part
   when objects of at least two annotators lie on it. An annotator *covers* an
   image when at least one of their objects lies on it: the batch does not record
   who was shown an image and drew nothing, so such an image counts as
   single-annotated. Crowd regions, rows without an annotator and rows whose
   class dangles are left out.
2. **Pairing.** For every pair of annotators on an image, objects are matched
   one-to-one with :func:`annogate.matching.match` (COCOeval semantics) at the
   ``iou`` threshold (box IoU, mask IoU or OKS by ``iou_type``): same-class
   pairs first, then the class-agnostic pass pairs the leftovers, so that a
   right box with another class is still one object. No ``max_dets`` cut.
3. **Units.** Matches link objects into clusters across annotators (connected
   components); a cluster is one *unit* of the reliability data. If a chain of
   matches puts two objects of one annotator into one cluster, that annotator
   keeps the one with the highest summed IoU to the cluster and the others
   become units of their own. An object nobody matched is a unit on its own.
4. **Alpha.** Krippendorff's alpha (nominal) on the units' classes. Coders are
   annotators; an annotator who covers the image but has no object in a unit
   gives, by the ``unmatched`` rule, either *no value* (``"missing"``, the
   default: alpha then measures agreement on the class of objects both saw, and
   localisation disagreement shows in the match rate and the consensus
   findings) or the value *nothing* (``"nothing"``: alpha then also penalises
   objects one annotator drew and another did not).
5. **Consensus.** Per unit, every covering annotator votes: the class of their
   object in the unit, or *nothing*. The top vote wins if it is unique (no tie)
   and reaches the ``quorum``: a count (integer), or a fraction of the covering
   annotators (float; ``votes >= quorum * voters``). Default 0.5 plus the
   no-tie rule: with two annotators both must agree, with three two must.
   Absence is always a vote here, whatever ``unmatched`` says: a consensus must
   decide whether an object exists. :func:`consensus` returns the winning
   objects as a :class:`~annogate.model.Batch` usable as a golden reference.
6. **Defects.** Per annotator, every decided unit on an image they cover is one
   trial; a defect is a vote that differs from the consensus: a wrong class
   (``disagreement_class``), an object the consensus rejects (``extra_object``)
   or a consensus object they did not draw (``missed_object``). Undecided units
   are reported as ``no_consensus`` (a warning) and are not trials. The defect
   rate has a 95% Wilson interval.

Rules, ``[tool.annogate.agreement]`` (``additionalProperties: false``)::

    iou = 0.5                        # pairing threshold (IoU, or OKS)
    iou_type = "bbox"                # bbox | segm | keypoints
    oks_sigmas = [...]               # keypoints: per-keypoint sigmas (COCO's 17 by default)
    quorum = 0.5                     # fraction of the voters (float) or a count (integer)
    unmatched = "missing"            # for alpha: missing | nothing
    min_alpha = 0.8                  # checks; the others are off unless set
    min_mean_iou = 0.7
    max_annotator_defect_rate = 0.05
    defect_rate_bound = "rate"       # rate | low | high (Wilson 95% bounds)
    min_pair_alpha = 0.667
    min_pair_mean_iou = 0.7
    thresholds = { missed_object = { max_rate = 0.02 } }   # per finding type, as other gates
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.findings import Finding, GateResult, ThresholdCheck, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.matching import IouType, MatchSettings, match
from annogate.model import Annotations, Batch, Images
from annogate.stats import krippendorff_alpha_nominal_sparse, wilson_interval
from annogate.thresholds import THRESHOLDS_SCHEMA, apply_severity, error_type_checks

__all__ = [
    "DEFAULTS",
    "GATE",
    "RULES_SCHEMA",
    "AgreementAnalysis",
    "analyse",
    "consensus",
    "consensus_for",
    "run",
]

NAME = "agreement"
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

#: The code of the vote "no object here" (class indices are >= 0).
NOTHING = -1

DEFAULTS: dict[str, Any] = {
    "iou": 0.5,
    "iou_type": "bbox",
    "quorum": 0.5,
    "unmatched": "missing",
    "min_alpha": 0.8,  # Krippendorff's own bar for relying on a variable
    "min_mean_iou": None,
    "max_annotator_defect_rate": None,
    "defect_rate_bound": "rate",
    "min_pair_alpha": None,
    "min_pair_mean_iou": None,
}

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Agreement between annotators who labelled the same images (gate 5).",
    "additionalProperties": False,
    "properties": {
        "iou": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "IoU (or OKS) at which two annotators' objects are the same object. Default 0.5.",
        },
        "iou_type": {
            "enum": ["bbox", "segm", "keypoints"],
            "description": "Geometry compared when pairing objects: box IoU (default), mask IoU, OKS.",
        },
        "oks_sigmas": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0},
            "minItems": 1,
            "description": "Per-keypoint OKS sigmas (iou_type keypoints); COCO's 17 person sigmas by default.",
        },
        "quorum": {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            ],
            "description": "Votes the consensus class needs: a count (integer) or a fraction of the "
            "annotators who covered the image (float). Ties never win. Default 0.5.",
        },
        "unmatched": {
            "enum": ["missing", "nothing"],
            "description": "For alpha: an annotator without an object in a unit gives no value (missing, default) or the value 'nothing'.",
        },
        "min_alpha": {
            **_FRACTION,
            "minimum": -1,
            "description": "Lowest acceptable Krippendorff's alpha. Default 0.8.",
        },
        "min_mean_iou": {**_FRACTION, "description": "Lowest acceptable mean IoU of matched pairs."},
        "max_annotator_defect_rate": {
            **_FRACTION,
            "description": "Highest acceptable defect rate of any annotator vs consensus.",
        },
        "defect_rate_bound": {
            "enum": ["rate", "low", "high"],
            "description": "Which figure max_annotator_defect_rate limits: the rate, or its Wilson 95% low/high bound. "
            "'low' fails only annotators confidently worse than the limit.",
        },
        "min_pair_alpha": {**_FRACTION, "minimum": -1, "description": "Lowest acceptable alpha of any annotator pair."},
        "min_pair_mean_iou": {**_FRACTION, "description": "Lowest acceptable mean IoU of any annotator pair."},
        "thresholds": {
            **THRESHOLDS_SCHEMA,
            "description": "Optional limits per finding type (disagreement_class, extra_object, missed_object, no_consensus): max_count / max_rate / severity.",
        },
    },
}

PAIR_COLUMNS = [
    "annotator_a",
    "annotator_b",
    "images",
    "objects_a",
    "objects_b",
    "matched",
    "match_rate",
    "class_agreement",
    "mean_iou",
    "alpha",
]
ANNOTATOR_COLUMNS = [
    "annotator",
    "images",
    "objects",
    "trials",
    "defects",
    "defect_rate",
    "wilson_low",
    "wilson_high",
    "disagreement_class",
    "extra_object",
    "missed_object",
    "no_consensus",
]


# ----------------------------------------------------------------- pairing


#: No cut per image and class: COCOeval's ``maxDets`` is for ranked detections,
#: while every object an annotator drew is a label to compare.
_NO_MAX_DETS = 2**31 - 1


@dataclass(frozen=True, kw_only=True, eq=False)
class _Pairing:
    """All pairwise matches of a batch: edges (batch rows) and per annotator-pair sums."""

    edge_a: I64
    edge_b: I64
    edge_iou: F64
    pairs: dict[tuple[int, int], dict[str, float]]


def _match_all(
    batch: Batch,
    rows: I64,
    row_key: I64,
    cover_img: I64,
    cover_coder: I64,
    image_key: I64,
    span: int,
    settings: MatchSettings,
) -> _Pairing:
    """One-to-one matches for every annotator pair on every image both covered, in one call.

    Why one call: :func:`annogate.matching.match` is vectorised over images, but a
    call per annotator pair would cost a pass over the whole batch per pair, and a
    crowd-sourced batch can have thousands of pairs. So each (image, annotator
    pair) becomes one *virtual image*: side ``a`` holds the first annotator's
    objects there, side ``b`` the second's (an object appears once per other
    annotator on its image), and a single ``match`` pairs them all. ``a`` plays
    the detections (file order, no score cut), ``b`` the reference; the
    same-class pass comes first, then the class-agnostic pass, since a right box
    with another class is still the same object, which alpha on classes needs.
    """
    ann = batch.annotations
    # (image, annotator pair) combinations from the coverage, sorted by image then annotator.
    pa, pb = _pairs_within(cover_img)
    v_img, v_ca, v_cb = cover_img[pa], cover_coder[pa], cover_coder[pb]
    pair_keys, v_pair = np.unique(v_ca * span + v_cb, return_inverse=True)
    v_pair = v_pair.ravel()
    n_virtual = int(v_img.shape[0])

    r_coder = ann.annotator[rows].astype(np.int64)
    r_key = row_key[rows] * span + r_coder

    def side(v_coder: I64) -> tuple[I64, I64]:
        """Rows of each virtual image's annotator on its image, sorted by (virtual image, row)."""
        vkey = v_img * span + v_coder
        order = np.argsort(vkey, kind="stable")
        sk = vkey[order]
        lo, hi = np.searchsorted(sk, r_key, "left"), np.searchsorted(sk, r_key, "right")
        s_rows = np.repeat(rows, hi - lo)
        s_virtual = order[_ranges(lo, hi)]
        o = np.lexsort((s_rows, s_virtual))
        return s_rows[o], s_virtual[o].astype(np.int64)

    a_rows, a_virtual = side(v_ca)
    b_rows, b_virtual = side(v_cb)

    first_row = np.zeros(int(image_key.max(initial=-1)) + 1, np.int64)
    first_row[image_key[::-1]] = np.arange(image_key.shape[0])[::-1]
    real = first_row[v_img]
    images = Images(
        id=np.arange(n_virtual, dtype=np.int64),
        file_name=np.array([str(i) for i in range(n_virtual)], dtype=object),
        width=batch.images.width[real],
        height=batch.images.height[real],
        line=batch.images.line[real],
    )

    def virtual_batch(s_rows: I64, s_virtual: I64) -> Batch:
        sub = replace(_take(ann, s_rows), image=s_virtual.astype(np.int32), image_id=s_virtual)
        return Batch(
            path=batch.path,
            format=batch.format,
            images=images,
            categories=batch.categories,
            annotations=sub,
            files=batch.files,
            annotators=batch.annotators,
        )

    result = match(virtual_batch(a_rows, a_virtual), virtual_batch(b_rows, b_virtual), settings)
    ia, ib, ious = result.pairs(mislabelled=True)
    edge_a, edge_b = a_rows[ia], b_rows[ib]
    edge_iou = ious.astype(np.float64)
    e_pair = v_pair[a_virtual[ia]]
    n_pairs = int(pair_keys.shape[0])
    same = (ann.category[edge_a] == ann.category[edge_b]).astype(np.float64)
    sums = {
        "images": np.bincount(v_pair, minlength=n_pairs),
        "objects_a": np.bincount(v_pair[a_virtual], minlength=n_pairs),
        "objects_b": np.bincount(v_pair[b_virtual], minlength=n_pairs),
        "matched": np.bincount(e_pair, minlength=n_pairs),
        "iou_sum": np.bincount(e_pair, weights=edge_iou, minlength=n_pairs),
        "class_agree": np.bincount(e_pair, weights=same, minlength=n_pairs),
    }
    pairs = {
        (int(k // span), int(k % span)): {name: float(col[i]) for name, col in sums.items()}
        for i, k in enumerate(pair_keys.tolist())
    }
    return _Pairing(edge_a=edge_a.astype(np.int64), edge_b=edge_b.astype(np.int64), edge_iou=edge_iou, pairs=pairs)


# ---------------------------------------------------------------- analysis


@dataclass(frozen=True, kw_only=True, eq=False)
class AgreementAnalysis:
    """Everything the gate and :func:`consensus` derive from one batch.

    Entries are one per (unit, covering annotator): ``entry_row`` is the
    annotator's object in the unit, or -1 when they have none there (a vote
    for *nothing*). Arrays, so the gate's cost stays linear in objects.
    """

    batch: Batch
    iou: float
    quorum: float  # an int is a count of votes, a float a fraction of the voters
    image_key: I64  # per image row: the index of its file name
    multi_images: I64  # image keys with >= 2 annotators
    rows: I64  # annotation rows on multi-annotator images that took part
    unit_of_row: I64  # per batch row: its unit, -1 when it took no part
    unit_image: I64  # per unit: image key
    entry_unit: I64  # sorted by unit, then annotator
    entry_coder: I64
    entry_row: I64
    entry_vote: I64  # class index, or NOTHING
    unit_voters: I64
    unit_top: I64  # winning vote (class or NOTHING), meaningful where decided
    unit_top_votes: I64
    unit_decided: B
    unit_rep: I64  # representative row of decided object units, else -1
    edge_a: I64  # matched pairs (batch rows), all annotator pairs
    edge_b: I64
    edge_iou: F64
    pairs: dict[tuple[int, int], dict[str, float]]
    coverage: dict[int, set[int]]  # annotator -> image keys covered

    @property
    def n_units(self) -> int:
        return int(self.unit_image.shape[0])


def _eligible(batch: Batch) -> B:
    ann = batch.annotations
    ok: B = (ann.image >= 0) & (ann.annotator >= 0) & (ann.category >= 0) & ~ann.iscrowd.astype(np.bool_)
    return ok


def _image_keys(images: Images) -> I64:
    if len(images) == 0:
        return np.empty(0, np.int64)
    _, key = np.unique(np.array([str(n) for n in images.file_name], dtype=object), return_inverse=True)
    return key.astype(np.int64).ravel()


def _required(quorum: float, voters: I64) -> I64:
    """Votes needed per unit: a count, or ``ceil(quorum * voters)`` for a fraction."""
    if isinstance(quorum, bool):
        raise TypeError("quorum must be a number")
    if isinstance(quorum, int):
        return np.full(voters.shape, max(quorum, 1), np.int64)
    need: I64 = np.maximum(np.ceil(quorum * voters - 1e-9), 1).astype(np.int64)
    return need


def _components(n: int, a: I64, b: I64) -> I64:
    """Connected-component label (the smallest member) of every node, vectorised.

    Min-label propagation with pointer jumping: clusters hold at most one object
    per annotator, so a few rounds suffice.
    """
    label = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return label
    while True:
        m = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def analyse(
    batch: Batch,
    *,
    iou: float = 0.5,
    quorum: float = 0.5,
    iou_type: IouType = "bbox",
    oks_sigmas: tuple[float, ...] | None = None,
) -> AgreementAnalysis:
    """Pair, cluster and vote: the common ground of the gate and :func:`consensus`."""
    ann = batch.annotations
    n = len(ann)
    settings = MatchSettings(
        iou_type=iou_type, iou=iou, max_dets=_NO_MAX_DETS, oks_sigmas=oks_sigmas, class_agnostic=True
    )
    image_key = _image_keys(batch.images)
    elig = np.flatnonzero(_eligible(batch)).astype(np.int64)
    row_key = np.full(n, -1, np.int64)
    row_key[elig] = image_key[ann.image[elig]]
    coder_all = ann.annotator.astype(np.int64)

    # Which annotators cover which image; keep images with two or more.
    span = max(len(batch.annotators), int(coder_all.max(initial=-1)) + 1, 1)
    cover = np.unique(row_key[elig] * span + coder_all[elig])
    cover_img, cover_coder = cover // span, cover % span
    img_ids, img_counts = np.unique(cover_img, return_counts=True)
    multi = img_ids[img_counts >= 2].astype(np.int64)
    keep = np.isin(cover_img, multi)
    cover_img, cover_coder = cover_img[keep], cover_coder[keep]
    rows = elig[np.isin(row_key[elig], multi)]
    coverage: dict[int, set[int]] = defaultdict(set)
    for g, c in zip(cover_img.tolist(), cover_coder.tolist(), strict=True):
        coverage[c].add(g)

    # Pair every two annotators on the images they share.
    pairing = _match_all(batch, rows, row_key, cover_img, cover_coder, image_key, span, settings)
    edge_a, edge_b, edge_iou, pairs = pairing.edge_a, pairing.edge_b, pairing.edge_iou, pairing.pairs
    r_coder, r_key = coder_all[rows], row_key[rows]

    # Units: connected components, at most one object per annotator each.
    comp = _components(n, edge_a, edge_b)[rows]
    strength = np.bincount(edge_a, weights=edge_iou, minlength=n) + np.bincount(edge_b, weights=edge_iou, minlength=n)
    so = np.lexsort((rows, -strength[rows], r_coder, comp))
    s_comp, s_coder = comp[so], r_coder[so]
    dup = np.r_[False, (s_comp[1:] == s_comp[:-1]) & (s_coder[1:] == s_coder[:-1])]
    # A displaced duplicate becomes a unit of its own (label beyond every row index).
    s_label = np.where(dup, n + np.arange(so.shape[0]), s_comp)
    labels = np.empty(rows.shape[0], np.int64)
    labels[so] = s_label
    uniq, unit_local = np.unique(labels, return_inverse=True)
    unit_of_row = np.full(n, -1, np.int64)
    unit_of_row[rows] = unit_local.ravel()
    n_units = int(uniq.shape[0])
    u_img = np.zeros(n_units, np.int64)
    u_img[unit_local.ravel()] = r_key

    # Entries: one per (unit, covering annotator): their object or a vote for nothing.
    m_unit = unit_of_row[rows]
    co = np.argsort(cover_img, kind="stable")
    cover_img, cover_coder = cover_img[co], cover_coder[co]
    first = np.searchsorted(cover_img, u_img, side="left")
    last = np.searchsorted(cover_img, u_img, side="right")
    voters = (last - first).astype(np.int64)
    all_unit = np.repeat(np.arange(n_units, dtype=np.int64), voters)
    all_coder = cover_coder[_ranges(first, last)].astype(np.int64)
    present = np.isin(all_unit * span + all_coder, m_unit * span + r_coder)
    a_unit, a_coder = all_unit[~present], all_coder[~present]
    entry_unit = np.concatenate([m_unit, a_unit])
    entry_coder = np.concatenate([r_coder, a_coder])
    entry_row = np.concatenate([rows, np.full(a_unit.shape, -1, np.int64)])
    entry_vote = np.concatenate([ann.category[rows].astype(np.int64), np.full(a_unit.shape, NOTHING, np.int64)])
    eo = np.lexsort((entry_coder, entry_unit))
    entry_unit, entry_coder, entry_row, entry_vote = entry_unit[eo], entry_coder[eo], entry_row[eo], entry_vote[eo]

    # Votes: the unique top vote that reaches the quorum wins.
    top = np.full(n_units, NOTHING, np.int64)
    top_votes = np.zeros(n_units, np.int64)
    decided = np.zeros(n_units, np.bool_)
    if n_units:
        span_v = int(max(len(batch.categories), int(entry_vote.max()) + 1, 1)) + 1
        cells, counts = np.unique(entry_unit * span_v + (entry_vote + 1), return_counts=True)
        c_unit, c_vote = cells // span_v, cells % span_v - 1
        co = np.lexsort((c_vote, -counts, c_unit))
        c_unit, c_vote, counts = c_unit[co], c_vote[co], counts[co]
        head = np.flatnonzero(np.r_[True, c_unit[1:] != c_unit[:-1]])
        top[c_unit[head]] = c_vote[head]
        top_votes[c_unit[head]] = counts[head]
        nxt = np.minimum(head + 1, c_unit.shape[0] - 1)
        tie = (nxt != head) & (c_unit[nxt] == c_unit[head]) & (counts[nxt] == counts[head])
        decided[c_unit[head]] = ~tie & (counts[head] >= _required(quorum, voters[c_unit[head]]))

    # Representative of each decided object unit: the winning member closest to the others.
    rep = np.full(n_units, -1, np.int64)
    win = (entry_row >= 0) & decided[entry_unit] & (top[entry_unit] != NOTHING)
    win &= entry_vote == top[entry_unit]
    if win.any():
        is_win = np.zeros(n, np.bool_)
        is_win[entry_row[win]] = True
        both = is_win[edge_a] & is_win[edge_b] & (unit_of_row[edge_a] == unit_of_row[edge_b])
        score = np.bincount(edge_a[both], weights=edge_iou[both], minlength=n) + np.bincount(
            edge_b[both], weights=edge_iou[both], minlength=n
        )
        w_rows, w_unit = entry_row[win], entry_unit[win]
        wo = np.lexsort((w_rows, -score[w_rows], w_unit))
        w_rows, w_unit = w_rows[wo], w_unit[wo]
        h = np.flatnonzero(np.r_[True, w_unit[1:] != w_unit[:-1]])
        rep[w_unit[h]] = w_rows[h]

    return AgreementAnalysis(
        batch=batch,
        iou=iou,
        quorum=quorum,
        image_key=image_key,
        multi_images=multi,
        rows=np.sort(rows),
        unit_of_row=unit_of_row,
        unit_image=u_img,
        entry_unit=entry_unit,
        entry_coder=entry_coder,
        entry_row=entry_row,
        entry_vote=entry_vote,
        unit_voters=voters,
        unit_top=top,
        unit_top_votes=top_votes,
        unit_decided=decided,
        unit_rep=rep,
        edge_a=edge_a,
        edge_b=edge_b,
        edge_iou=edge_iou,
        pairs=pairs,
        coverage=dict(coverage),
    )


def _ranges(starts: I64, ends: I64) -> I64:
    """Concatenated ``arange(s, e)`` for every pair, without a Python loop."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return (np.repeat(starts.astype(np.int64) - offsets, lengths) + np.arange(total, dtype=np.int64)).astype(np.int64)


# ---------------------------------------------------------------- consensus


def _take(ann: Annotations, rows: I64) -> Annotations:
    """The rows of ``ann`` (with their polygon rings and keypoints), in that order."""
    r0, r1 = ann.ann_ring_offsets[rows], ann.ann_ring_offsets[rows + 1]
    rings = _ranges(r0, r1)
    c0, c1 = ann.ring_offsets[rings], ann.ring_offsets[rings + 1]
    k0, k1 = ann.kp_offsets[rows], ann.kp_offsets[rows + 1]
    return Annotations(
        id=ann.id[rows],
        image=ann.image[rows],
        category=ann.category[rows],
        image_id=ann.image_id[rows],
        category_id=ann.category_id[rows],
        bbox=ann.bbox[rows].reshape(-1, 4),
        area=ann.area[rows],
        iscrowd=ann.iscrowd[rows],
        score=ann.score[rows],
        annotator=ann.annotator[rows],
        line=ann.line[rows],
        file=ann.file[rows],
        seg_kind=ann.seg_kind[rows],
        poly_xy=ann.poly_xy[_ranges(c0, c1)],
        ring_offsets=np.r_[0, np.cumsum(c1 - c0)].astype(np.int64),
        ann_ring_offsets=np.r_[0, np.cumsum(r1 - r0)].astype(np.int64),
        rle=ann.rle[rows],
        keypoints=ann.keypoints[_ranges(3 * k0, 3 * k1)],
        kp_offsets=np.r_[0, np.cumsum(k1 - k0)].astype(np.int64),
        num_keypoints=ann.num_keypoints[rows],
    )


def consensus(
    batch: Batch,
    *,
    iou: float = 0.5,
    quorum: float = 0.5,
    iou_type: IouType = "bbox",
    all_images: bool = False,
    analysis: AgreementAnalysis | None = None,
) -> Batch:
    """The majority-vote consensus of a multi-annotator batch, as a golden reference.

    One object per decided unit whose winning vote is a class (see the module
    docstring): the geometry of the winning member with the highest summed IoU to
    the other winners (a real drawn object, so polygons, masks and keypoints stay
    valid, and its id and line still point into the source file), with the
    winning class, ``annotator = -1`` and ``score`` = the winning vote fraction.

    Images: by default only those at least two annotators labelled, with their
    rows, ids and file names unchanged, because a golden reference must not claim
    that the other images are empty; ``all_images=True`` keeps every image.
    ``meta["consensus"]`` records the parameters and per-object votes/voters.
    """
    a = analysis if analysis is not None else analyse(batch, iou=iou, quorum=quorum, iou_type=iou_type)
    units = np.flatnonzero(a.unit_rep >= 0)
    rows = a.unit_rep[units]
    order = np.argsort(rows, kind="stable")
    units, rows = units[order], rows[order]
    ann = _take(batch.annotations, rows)
    cat = a.unit_top[units].astype(np.int32)
    votes, voters = a.unit_top_votes[units], a.unit_voters[units]
    images = batch.images
    img_map = np.arange(len(images), dtype=np.int32)
    if not all_images:
        keep = np.flatnonzero(np.isin(a.image_key, a.multi_images))
        img_map = np.full(len(images), -1, np.int32)
        img_map[keep] = np.arange(keep.shape[0], dtype=np.int32)
        images = Images(
            id=images.id[keep],
            file_name=images.file_name[keep],
            width=images.width[keep],
            height=images.height[keep],
            line=images.line[keep],
        )
    ann = replace(
        ann,
        image=img_map[ann.image],
        category=cat,
        category_id=batch.categories.id[cat] if len(batch.categories) else ann.category_id,
        annotator=np.full(rows.shape, -1, np.int32),
        score=(votes / np.maximum(voters, 1)).astype(np.float64),
    )
    meta = dict(batch.meta)
    meta["consensus"] = {
        "source": str(batch.path),
        "iou": a.iou,
        "quorum": a.quorum,
        "votes": votes.tolist(),
        "voters": voters.tolist(),
    }
    return Batch(
        path=batch.path,
        format=batch.format,
        images=images,
        categories=batch.categories,
        annotations=ann,
        files=batch.files,
        annotators=batch.annotators,
        sha256=batch.sha256,
        problems=[],
        meta=meta,
    )


# --------------------------------------------------------------------- gate


def _name(batch: Batch, coder: int) -> str:
    return batch.annotators[coder] if 0 <= coder < len(batch.annotators) else f"#{coder}"


def _class(batch: Batch, k: int) -> str:
    if k == NOTHING:
        return "nothing"
    return str(batch.categories.name[k]) if 0 <= k < len(batch.categories) else f"#{k}"


def _alpha(a: AgreementAnalysis, unmatched: str) -> float:
    sel = a.entry_row >= 0 if unmatched == "missing" else np.ones(a.entry_unit.shape, np.bool_)
    return krippendorff_alpha_nominal_sparse(a.entry_unit[sel], a.entry_vote[sel].astype(np.float64))


def _pairs_within(group: I64) -> tuple[I64, I64]:
    """Positions ``(i, j)``, ``i < j``, of every two elements of the same group (``group`` sorted)."""
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True]) if group.size else np.zeros(1, np.int64)
    starts, sizes = bounds[:-1], np.diff(bounds)
    pos_i: list[I64] = []
    pos_j: list[I64] = []
    for k in np.unique(sizes).tolist():
        st = starts[sizes == k]
        for i, j in combinations(range(k), 2):
            pos_i.append(st + i)
            pos_j.append(st + j)
    if not pos_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(pos_i).astype(np.int64), np.concatenate(pos_j).astype(np.int64)


def _pair_alphas(a: AgreementAnalysis, unmatched: str, span: int) -> dict[tuple[int, int], float]:
    """Alpha of every annotator pair, all at once.

    Restricted to two coders, the pairable units are those where both gave a
    value, each with exactly two values, so alpha reduces to counts:
    ``n = 2 U``, ``sum o_cc = 2 * agreements``, and
    ``alpha = 1 - (n - 1)(n - 2 agreements) / (n**2 - sum_c n_c**2)``. Computing it
    from the within-unit entry pairs costs one pass, however many pairs there
    are (a per-pair pass over all entries would not).
    """
    sel = a.entry_row >= 0 if unmatched == "missing" else np.ones(a.entry_unit.shape, np.bool_)
    unit, coder, vote = a.entry_unit[sel], a.entry_coder[sel], a.entry_vote[sel]
    i, j = _pairs_within(unit)  # entries are sorted by unit, then coder: coder[i] < coder[j]
    keys, pair = np.unique(coder[i] * span + coder[j], return_inverse=True)
    pair = pair.ravel()
    n_pairs = int(keys.shape[0])
    units = np.bincount(pair, minlength=n_pairs).astype(np.float64)
    agree = np.bincount(pair, weights=(vote[i] == vote[j]).astype(np.float64), minlength=n_pairs)
    v_span = int(vote.max(initial=0)) + 2
    cells, n_c = np.unique(np.r_[pair * v_span + vote[i] + 1, pair * v_span + vote[j] + 1], return_counts=True)
    sq = np.bincount(cells // v_span, weights=n_c.astype(np.float64) ** 2, minlength=n_pairs)
    n = 2.0 * units
    expected = n * n - sq
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(expected > 0, 1.0 - (n - 1.0) * (n - 2.0 * agree) / expected, np.nan)
    return {(int(k // span), int(k % span)): float(alpha[x]) for x, k in enumerate(keys.tolist())}


def _findings(a: AgreementAnalysis) -> tuple[list[Finding], dict[int, dict[str, int]]]:
    """Findings per entry that disagrees with the consensus, and counts per annotator."""
    batch = a.batch
    eu, er, ev, ec = a.entry_unit, a.entry_row, a.entry_vote, a.entry_coder
    dec = a.unit_decided[eu]
    top = a.unit_top[eu]
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    out: list[Finding] = []

    def tally(rule: str, sel: B) -> None:
        for c, k in zip(*np.unique(ec[sel], return_counts=True), strict=True):
            counts[int(c)][rule] += int(k)

    def votes_text(u: int) -> str:
        return f"{int(a.unit_top_votes[u])} of {int(a.unit_voters[u])} annotators"

    sel = (er >= 0) & ~dec
    tally("no_consensus", sel)
    msgs = []
    starts = np.searchsorted(eu, np.arange(a.n_units + 1))
    for u in eu[sel].tolist():
        span = er[starts[u] : starts[u + 1]]
        members = span[span >= 0]
        votes = ", ".join(
            f"{_name(batch, int(batch.annotations.annotator[r]))}: {batch.category_name(int(r))}" for r in members
        )
        msgs.append(
            f"no consensus on this object (votes {votes}; {int(a.unit_voters[u])} annotators covered the image)"
        )
    out += findings_for_rows(batch, er[sel], gate=NAME, rule="no_consensus", messages=msgs, severity="warning")

    sel = (er >= 0) & dec & (top == NOTHING)
    tally("extra_object", sel)
    msgs = [f"object not confirmed: {votes_text(u)} drew nothing here" for u in eu[sel].tolist()]
    out += findings_for_rows(batch, er[sel], gate=NAME, rule="extra_object", messages=msgs)

    sel = (er >= 0) & dec & (top != NOTHING) & (ev != top)
    tally("disagreement_class", sel)
    msgs = [
        f"class {_class(batch, v)!r} but the consensus is {_class(batch, t)!r} ({votes_text(u)})"
        for u, v, t in zip(eu[sel].tolist(), ev[sel].tolist(), top[sel].tolist(), strict=True)
    ]
    values = a.unit_top_votes[eu[sel]] / np.maximum(a.unit_voters[eu[sel]], 1)
    out += findings_for_rows(batch, er[sel], gate=NAME, rule="disagreement_class", messages=msgs, values=values)

    sel = (er < 0) & dec & (top != NOTHING)
    tally("missed_object", sel)
    for u, c in zip(eu[sel].tolist(), ec[sel].tolist(), strict=True):
        rep = int(a.unit_rep[u])
        ref = findings_for_rows(
            batch,
            [rep],
            gate=NAME,
            rule="missed_object",
            messages=f"{_name(batch, c)} did not label this {_class(batch, int(a.unit_top[u]))!r} "
            f"({votes_text(u)} did; annotation {int(batch.annotations.id[rep])} by "
            f"{_name(batch, int(batch.annotations.annotator[rep]))})",
        )[0]
        out.append(replace(ref, annotator=_name(batch, c), category=_class(batch, int(a.unit_top[u]))))

    trials = (
        np.bincount(ec[dec], minlength=len(batch.annotators)) if ec.size else np.zeros(len(batch.annotators), np.int64)
    )
    for c in range(trials.shape[0]):
        counts[c]["trials"] = int(trials[c])
    out.sort(key=lambda f: (f.line or 0, f.annotation_id or 0, f.rule, f.annotator or ""))
    return out, counts


def _settings(section: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(section) - set(RULES_SCHEMA["properties"])
    if unknown:
        raise ValueError(f"unknown key(s) in [tool.annogate.agreement]: {', '.join(sorted(unknown))}")
    return {**DEFAULTS, **dict(section)}


_CACHE_SLOT = "agreement.analysis"


def _cached_analysis(batch: Batch, ctx: GateContext, cfg: Mapping[str, Any]) -> AgreementAnalysis:
    """The analysis of ``batch`` under ``cfg``, kept in ``ctx.cache`` for the latest batch only.

    So the gate and a golden gate falling back to :func:`consensus_for` pair the
    objects once; one slot bounds the memory a session holds.
    """
    sigmas = tuple(float(x) for x in cfg["oks_sigmas"]) if cfg.get("oks_sigmas") else None
    key = (id(batch), batch.sha256, float(cfg["iou"]), cfg["quorum"], cfg["iou_type"], sigmas)
    slot = ctx.cache.setdefault(_CACHE_SLOT, {})
    if slot.get("key") != key:
        slot.clear()
        slot["analysis"] = analyse(
            batch, iou=float(cfg["iou"]), quorum=cfg["quorum"], iou_type=cfg["iou_type"], oks_sigmas=sigmas
        )
        slot["key"] = key
    analysis: AgreementAnalysis = slot["analysis"]
    return analysis


def consensus_for(batch: Batch, ctx: GateContext, *, all_images: bool = False) -> Batch | None:
    """The consensus under the repository's ``[tool.annogate.agreement]`` rules, or None.

    For gates that need a golden reference when no golden file exists: None when
    no image was labelled by two annotators (there is nothing to stand in with).
    """
    section = ctx.rules.get(NAME, {})
    cfg = _settings(section if isinstance(section, Mapping) else {})
    a = _cached_analysis(batch, ctx, cfg)
    if a.multi_images.size == 0:
        return None
    return consensus(batch, all_images=all_images, analysis=a)


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """The agreement gate: alpha, IoU and per-annotator defect rates, with findings."""
    cfg = _settings(ctx.section)
    if not batch.annotators or not (batch.annotations.annotator >= 0).any():
        return GateResult(gate=NAME, verdict="skipped", reason="no annotator recorded for any object")
    a = _cached_analysis(batch, ctx, cfg)
    if a.multi_images.size == 0:
        return GateResult(
            gate=NAME,
            verdict="skipped",
            reason=f"no image was labelled by two or more annotators ({len(batch.annotators)} annotator(s) in the batch)",
        )
    unmatched = str(cfg["unmatched"])
    findings, counts = _findings(a)
    if "thresholds" in cfg:
        findings = apply_severity(findings, cfg["thresholds"])

    alpha = _alpha(a, unmatched)
    mean_iou = float(a.edge_iou.mean()) if a.edge_iou.size else math.nan
    checks: list[ThresholdCheck] = []
    if cfg["min_alpha"] is not None:
        checks.append(
            ThresholdCheck(metric="alpha", scope="overall", value=alpha, limit=float(cfg["min_alpha"]), op=">=")
        )
    if cfg["min_mean_iou"] is not None:
        checks.append(
            ThresholdCheck(
                metric="mean_iou", scope="overall", value=mean_iou, limit=float(cfg["min_mean_iou"]), op=">="
            )
        )

    # Per annotator pair.
    pair_rows: list[list[Any]] = [list(PAIR_COLUMNS)]
    pair_metrics: dict[str, dict[str, Any]] = {}
    span = max(len(batch.annotators), max((max(k) for k in a.pairs), default=0) + 1)
    pair_alpha = _pair_alphas(a, unmatched, span)
    for (ca, cb), st in sorted(a.pairs.items()):
        p_alpha = pair_alpha.get((ca, cb), math.nan)
        matched = st["matched"]
        denom = st["objects_a"] + st["objects_b"]
        rec = {
            "images": int(st["images"]),
            "objects_a": int(st["objects_a"]),
            "objects_b": int(st["objects_b"]),
            "matched": int(matched),
            "match_rate": 2 * matched / denom if denom else math.nan,
            "class_agreement": st["class_agree"] / matched if matched else math.nan,
            "mean_iou": st["iou_sum"] / matched if matched else math.nan,
            "alpha": p_alpha,
        }
        na, nb = _name(batch, ca), _name(batch, cb)
        pair_metrics[f"{na}/{nb}"] = rec
        pair_rows.append([na, nb, *rec.values()])
        if cfg["min_pair_alpha"] is not None:
            checks.append(
                ThresholdCheck(
                    metric="pair_alpha",
                    scope=f"pair:{na}/{nb}",
                    value=p_alpha,
                    limit=float(cfg["min_pair_alpha"]),
                    op=">=",
                )
            )
        if cfg["min_pair_mean_iou"] is not None:
            checks.append(
                ThresholdCheck(
                    metric="pair_mean_iou",
                    scope=f"pair:{na}/{nb}",
                    value=rec["mean_iou"],
                    limit=float(cfg["min_pair_mean_iou"]),
                    op=">=",
                )
            )

    # Per annotator, against the consensus.
    ann_rows: list[list[Any]] = [list(ANNOTATOR_COLUMNS)]
    ann_metrics: dict[str, dict[str, Any]] = {}
    objects = np.bincount(batch.annotations.annotator[a.rows], minlength=len(batch.annotators))
    coders = sorted(a.coverage)
    rules = ("disagreement_class", "extra_object", "missed_object", "no_consensus")
    trials = np.array([counts[c]["trials"] for c in coders], np.int64)
    defects = np.array([sum(counts[c][r] for r in rules[:3]) for c in coders], np.int64)
    low, high = wilson_interval(defects, trials)
    for i, c in enumerate(coders):
        rate = defects[i] / trials[i] if trials[i] else math.nan
        rec = {
            "images": len(a.coverage[c]),
            "objects": int(objects[c]),
            "trials": int(trials[i]),
            "defects": int(defects[i]),
            "defect_rate": rate,
            "wilson_low": float(low[i]),
            "wilson_high": float(high[i]),
            **{r: int(counts[c][r]) for r in rules},
        }
        name = _name(batch, c)
        ann_metrics[name] = rec
        ann_rows.append([name, *rec.values()])
        if cfg["max_annotator_defect_rate"] is not None:
            bound = {"rate": rate, "low": rec["wilson_low"], "high": rec["wilson_high"]}[str(cfg["defect_rate_bound"])]
            metric = (
                "defect_rate"
                if cfg["defect_rate_bound"] == "rate"
                else f"defect_rate.wilson_{cfg['defect_rate_bound']}"
            )
            checks.append(
                ThresholdCheck(
                    metric=metric,
                    scope=f"annotator:{name}",
                    value=float(bound),
                    limit=float(cfg["max_annotator_defect_rate"]),
                    op="<=",
                )
            )

    population = int(a.rows.shape[0])
    if "thresholds" in cfg:
        checks += error_type_checks(findings=findings, population=population, cfg=cfg["thresholds"])

    decided = int(a.unit_decided.sum())
    metrics: dict[str, Any] = {
        "alpha": alpha,
        "mean_iou": mean_iou,
        "matched_pairs": int(a.edge_iou.shape[0]),
        "images_multi_annotated": int(a.multi_images.shape[0]),
        "images": int(np.unique(a.image_key).shape[0]),
        "annotators": len(coders),
        "units": a.n_units,
        "units_decided": decided,
        "consensus_objects": int((a.unit_rep >= 0).sum()),
        "iou": float(cfg["iou"]),
        "quorum": cfg["quorum"],
        "unmatched": unmatched,
        "objects_without_annotator": int((batch.annotations.annotator < 0).sum()),
        "pairs": pair_metrics,
        "per_annotator": ann_metrics,
    }
    return GateResult.from_checks(
        gate=NAME,
        population=population,
        checks=checks,
        findings=findings,
        metrics=metrics,
        tables={"pairs": pair_rows, "annotators": ann_rows},
    )


def _run(batch: Batch, ctx: GateContext) -> GateResult:
    return run(batch, ctx)


GATE = Gate(
    name=NAME,
    run=_run,
    rules_schema=RULES_SCHEMA,
    description="Agreement between annotators on the same images: Krippendorff's alpha, "
    "mean IoU, per-annotator defect rates against a majority-vote consensus.",
    order=50,
)
