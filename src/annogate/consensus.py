"""The pure analysis behind the agreement gate: pair annotators, cluster objects, vote.

Why apart from the gate (:mod:`annogate.checks.agreement`): the analysis is a
function of the batch alone (no rules file, no findings, no thresholds), and more
than one consumer needs it: the gate's alpha and defect rates, and
:func:`consensus`, the majority vote that can stand in for a golden file. What it
computes is described step by step in the gate's module docstring (images, pairing,
units, alpha, consensus).

Memory stays linear in objects plus matched pairs: pairing goes through
:func:`annogate.matching.match`, whose candidate pairs are pruned and capped, and
everything after it is arrays over objects, units and (unit, annotator) entries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import numpy.typing as npt

from annogate.matching import IouType, MatchSettings, match
from annogate.model import Annotations, Batch, Images
from annogate.ragged import ranges
from annogate.stats import krippendorff_alpha_nominal_sparse

__all__ = ["NOTHING", "AgreementAnalysis", "alpha", "analyse", "consensus", "pair_alphas", "pairs_within"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

#: The code of the vote "no object here" (class indices are >= 0).
NOTHING = -1


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
    pa, pb = pairs_within(cover_img)
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
        s_virtual = order[ranges(lo, hi)]
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
    all_coder = cover_coder[ranges(first, last)].astype(np.int64)
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


# ---------------------------------------------------------------- consensus


def _take(ann: Annotations, rows: I64) -> Annotations:
    """The rows of ``ann`` (with their polygon rings and keypoints), in that order."""
    r0, r1 = ann.ann_ring_offsets[rows], ann.ann_ring_offsets[rows + 1]
    rings = ranges(r0, r1)
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
        poly_xy=ann.poly_xy[ranges(c0, c1)],
        ring_offsets=np.r_[0, np.cumsum(c1 - c0)].astype(np.int64),
        ann_ring_offsets=np.r_[0, np.cumsum(r1 - r0)].astype(np.int64),
        rle=ann.rle[rows],
        keypoints=ann.keypoints[ranges(3 * k0, 3 * k1)],
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


def alpha(a: AgreementAnalysis, unmatched: str) -> float:
    sel = a.entry_row >= 0 if unmatched == "missing" else np.ones(a.entry_unit.shape, np.bool_)
    return krippendorff_alpha_nominal_sparse(a.entry_unit[sel], a.entry_vote[sel].astype(np.float64))


def pairs_within(group: I64) -> tuple[I64, I64]:
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


def pair_alphas(a: AgreementAnalysis, unmatched: str, span: int) -> dict[tuple[int, int], float]:
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
    i, j = pairs_within(unit)  # entries are sorted by unit, then coder: coder[i] < coder[j]
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
