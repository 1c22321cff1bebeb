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

__all__ = [
    "NOTHING",
    "AgreementAnalysis",
    "ConsensusReference",
    "alpha",
    "analyse",
    "consensus",
    "leave_one_out",
    "min_others",
    "pair_alphas",
    "pairs_within",
]

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


# ------------------------------------------------------- leave-one-out reference


@dataclass(frozen=True, kw_only=True, eq=False)
class ConsensusReference:
    """Each annotator's leave-one-out reference: the consensus of the *other* annotators.

    Why a view and not one consensus: an annotator judged against a consensus they
    voted in is partly judged against themselves (with three annotators, their own
    vote is a third of every decision, and with two it is half). So every annotator
    ``X`` gets the consensus of everyone but ``X``, on the images ``X`` labelled
    that enough others labelled too. Each such (image, ``X``) pair is one *judged
    image*; ``view`` is the batch with every row of ``X`` moved onto its judged
    image (same rows, so match results index the real batch; rows of images
    nobody else judged stay off every image), and ``reference`` holds every
    annotator's reference objects on the same judged images, so that one
    :func:`annogate.matching.match` of ``view`` with ``reference`` judges everyone
    at once.

    * ``reference`` rows: one per decided unit of the others' consensus (the
      winning member's geometry, the winning class, ``score`` = vote fraction),
      plus, as crowd regions (``iscrowd``), every member of a unit the others did
      not decide, so that ``X``'s object there is neither right nor wrong. Its
      ``annotator`` column is the judged annotator ``X`` (who missed an unmatched
      reference object); its ids, lines and pointers are the representative's in
      the source file. Its images are the judged images under their real file
      names (display); ``match_reference`` is the same with unique names (join).
    * ``image_voters``: per judged image, the other annotators who voted there.
    * ``ref_voters``: per reference row, the annotators whose objects formed it.
    """

    quorum: float
    view: Batch
    reference: Batch
    match_reference: Batch
    image_owner: I64  # judged image -> judged annotator
    image_real: I64  # judged image -> batch image row
    image_voters: tuple[str, ...]
    ref_rows: I64  # reference row -> the batch row whose geometry it is
    ref_voters: tuple[str, ...]

    @property
    def judged_images(self) -> int:
        return int(self.image_owner.shape[0])


def min_others(quorum: float) -> int:
    """Other annotators a judged image needs: the quorum count, or 2 for a fraction (a consensus of one is not one)."""
    return max(2, int(quorum)) if isinstance(quorum, int) and not isinstance(quorum, bool) else 2


def leave_one_out(
    batch: Batch,
    *,
    iou: float = 0.5,
    quorum: float = 2,
    iou_type: IouType = "bbox",
    oks_sigmas: tuple[float, ...] | None = None,
) -> ConsensusReference:
    """The leave-one-out consensus reference of every annotator (see :class:`ConsensusReference`).

    ``quorum``: votes a reference object needs among the others, a count (integer,
    at least 2) or a fraction of the others who covered the image (float); an image
    is judged for ``X`` when at least :func:`min_others` other annotators covered it.
    Cost: one :func:`analyse` per annotator over the others' objects on that
    annotator's judged images, so each object is paired once per annotator who
    shares its image: linear in objects for a fixed number of annotators per image.
    """
    ann = batch.annotations
    n = len(ann)
    names = batch.annotators
    image_key = _image_keys(batch.images)
    elig = np.flatnonzero(_eligible(batch)).astype(np.int64)
    coder_all = ann.annotator.astype(np.int64)
    span = max(len(names), int(coder_all.max(initial=-1)) + 1, 1)
    row_key = np.full(n, -1, np.int64)
    row_key[elig] = image_key[ann.image[elig]]
    cover = np.unique(row_key[elig] * span + coder_all[elig])
    cover_img, cover_coder = cover // span, cover % span
    img_ids, img_counts = np.unique(cover_img, return_counts=True)
    n_cover = dict(zip(img_ids.tolist(), img_counts.tolist(), strict=True))
    need = min_others(quorum)
    # a representative image row per key (for sizes and display names)
    first_row = np.zeros(int(image_key.max(initial=-1)) + 1, np.int64)
    first_row[image_key[::-1]] = np.arange(image_key.shape[0])[::-1]

    owner: list[int] = []
    real: list[int] = []
    voters_txt: list[str] = []
    ref_rows: list[I64] = []
    ref_cat: list[I64] = []
    ref_crowd: list[B] = []
    ref_virtual: list[I64] = []
    ref_score: list[F64] = []
    ref_who: list[str] = []
    row_virtual = np.full(n, -1, np.int64)
    # judged (key, coder) pairs: the coder covers the key and enough others do too
    judged = np.array([n_cover[k] - 1 >= need for k in cover_img.tolist()], np.bool_)
    j_img, j_coder = cover_img[judged], cover_coder[judged]
    by_coder = np.argsort(j_coder, kind="stable")
    j_img, j_coder = j_img[by_coder], j_coder[by_coder]
    bounds = np.flatnonzero(np.r_[True, j_coder[1:] != j_coder[:-1], True]) if j_coder.size else np.zeros(1, np.int64)
    key_of_row = np.where(ann.image >= 0, image_key[np.clip(ann.image, 0, None)] if image_key.size else -1, -1)
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        x = int(j_coder[s])
        keys = j_img[s:e]
        base = len(owner)
        virtual_of_key = dict(zip(keys.tolist(), range(base, base + keys.shape[0]), strict=True))
        owner += [x] * keys.shape[0]
        real += first_row[keys].tolist()
        # X's rows (every row of X on a judged image, eligible or not) move onto X's judged images
        mine = np.flatnonzero((coder_all == x) & np.isin(key_of_row, keys))
        row_virtual[mine] = [virtual_of_key[k] for k in key_of_row[mine].tolist()]
        others = elig[(coder_all[elig] != x) & np.isin(row_key[elig], keys)]
        sub = Batch(
            path=batch.path,
            format=batch.format,
            images=batch.images,
            categories=batch.categories,
            annotations=_take(ann, others),
            files=batch.files,
            annotators=names,
        )
        a = analyse(sub, iou=iou, quorum=quorum, iou_type=iou_type, oks_sigmas=oks_sigmas)
        sub_key = image_key[sub.annotations.image]
        # who voted on each judged image
        vk = cover_img[(cover_coder != x) & np.isin(cover_img, keys)]
        vc = cover_coder[(cover_coder != x) & np.isin(cover_img, keys)]
        who_at: dict[int, list[str]] = defaultdict(list)
        for k, c in zip(vk.tolist(), vc.tolist(), strict=True):
            who_at[k].append(_coder_name(names, c))
        voters_txt += [", ".join(who_at[k]) for k in keys.tolist()]
        # unit members, for the voters of each reference object
        members: dict[int, list[str]] = defaultdict(list)
        m = a.entry_row >= 0
        for u, r in zip(a.entry_unit[m].tolist(), a.entry_row[m].tolist(), strict=True):
            members[u].append(_coder_name(names, int(sub.annotations.annotator[r])))
        won = np.flatnonzero(a.unit_rep >= 0)
        open_ = (a.entry_row >= 0) & ~a.unit_decided[a.entry_unit]
        und_rows, und_units = a.entry_row[open_], a.entry_unit[open_]
        rows_sub = np.r_[a.unit_rep[won], und_rows].astype(np.int64)
        units = np.r_[won, und_units].astype(np.int64)
        ref_rows.append(others[rows_sub])
        ref_cat.append(np.r_[a.unit_top[won], sub.annotations.category[und_rows]].astype(np.int64))
        ref_crowd.append(np.r_[np.zeros(won.shape, np.bool_), np.ones(und_rows.shape, np.bool_)])
        ref_virtual.append(np.array([virtual_of_key[k] for k in sub_key[rows_sub].tolist()], np.int64))
        ref_score.append(
            np.r_[
                a.unit_top_votes[won] / np.maximum(a.unit_voters[won], 1), np.zeros(und_rows.shape, np.float64)
            ].astype(np.float64)
        )
        ref_who += [", ".join(members[u]) for u in units.tolist()]

    owner_a = np.asarray(owner, np.int64)
    real_a = np.asarray(real, np.int64)
    rows_a = np.concatenate(ref_rows) if ref_rows else np.empty(0, np.int64)
    cat_a = np.concatenate(ref_cat) if ref_cat else np.empty(0, np.int64)
    crowd_a = np.concatenate(ref_crowd) if ref_crowd else np.empty(0, np.bool_)
    virt_a = np.concatenate(ref_virtual) if ref_virtual else np.empty(0, np.int64)
    score_a = np.concatenate(ref_score) if ref_score else np.empty(0, np.float64)
    src = batch.images

    def images(unique: bool) -> Images:
        return Images(
            id=np.arange(owner_a.shape[0], dtype=np.int64),
            file_name=np.array(
                [
                    f"{k}\x00{src.file_name[r]}" if unique else str(src.file_name[r])
                    for k, r in enumerate(real_a.tolist())
                ],
                dtype=object,
            ),
            width=src.width[real_a],
            height=src.height[real_a],
            line=src.line[real_a],
        )

    ref_ann = replace(
        _take(ann, rows_a),
        image=virt_a.astype(np.int32),
        image_id=virt_a,
        category=cat_a.astype(np.int32),
        category_id=batch.categories.id[cat_a] if len(batch.categories) else ann.category_id[rows_a],
        iscrowd=crowd_a.astype(ann.iscrowd.dtype),
        annotator=owner_a[virt_a].astype(np.int32) if virt_a.size else np.empty(0, np.int32),
        score=score_a,
    )
    if batch.row_pointers is not None:
        pointers = np.asarray(batch.row_pointers, dtype=object)[rows_a]
    else:
        pointers = np.array([batch.pointer(int(r)) for r in rows_a.tolist()], dtype=object)
    meta = {"consensus": {"source": str(batch.path), "iou": iou, "quorum": quorum, "leave_one_out": True}}

    def reference(unique: bool) -> Batch:
        return Batch(
            path=batch.path,
            format=batch.format,
            images=images(unique),
            categories=batch.categories,
            annotations=ref_ann,
            files=batch.files,
            annotators=names,
            sha256=batch.sha256,
            meta=dict(meta),
            pointer_base=None,
            row_pointers=pointers,
        )

    view_images = images(True)
    view = replace(
        batch,
        images=view_images,
        annotations=replace(ann, image=row_virtual.astype(np.int32), image_id=row_virtual),
    )
    return ConsensusReference(
        quorum=quorum,
        view=view,
        reference=reference(False),
        match_reference=reference(True),
        image_owner=owner_a,
        image_real=real_a,
        image_voters=tuple(voters_txt),
        ref_rows=rows_a,
        ref_voters=tuple(ref_who),
    )


def _coder_name(names: tuple[str, ...], c: int) -> str:
    return str(names[c]) if 0 <= c < len(names) else f"#{c}"
