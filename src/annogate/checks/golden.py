"""The golden-set gate: compare a batch's honeypot images with their known truth.

Why: a batch can look valid (schema, geometry) and still be wrong. Honeypot images
whose truth is known (a *golden file*) measure how wrong, per class and overall,
with the same one-to-one matching COCOeval uses (:mod:`annogate.matching`).

Rules, ``[tool.annogate.golden]`` (``additionalProperties: false``)::

    file = "golden/honeypots.json"   # relative to the rules file; or top-level `golden = "..."`
    iou_type = "bbox"                # bbox | segm | keypoints
    iou = 0.5                        # match threshold (IoU, or OKS for keypoints)
    max_dets = 100                   # per image and class, as COCOeval
    oks_sigmas = [...]               # keypoints; COCO's 17 sigmas by default
    min_object_iou = 0.75            # optional: matched pairs below -> `low_iou` warnings
    min_precision = 0.9              # thresholds, all optional, overall ...
    min_recall = 0.9
    min_accuracy = 0.85
    min_mean_iou = 0.7
    max_drift = 0.03                 # signed edge offset / golden box size, per edge (95% interval)
    max_extra = 10                   # counts
    max_missing = 10
    max_mislabelled = 10
    per_class = { person = { min_recall = 0.95, max_drift = 0.02 } }   # ... and per class

Definitions (``tp`` = same-class matches; a *mislabelled* pair is a class-agnostic
match: right place, wrong class; ignored crowd regions and what they absorb count
nowhere):

* precision = tp / batch objects (tp + extra + mislabelled); recall = tp / golden
  objects (tp + missing + mislabelled); accuracy = tp / (tp + mislabelled + missing
  + extra). Per class, an object counts for its golden class (recall, missing) or
  its batch class (precision, extra); a mislabelled pair counts against both.
* mean IoU: over all matched pairs (mislabelled included: their geometry is judged
  too). Per class by golden class.
* boundary drift: for each matched pair and each box edge, the signed offset of the
  batch edge from the golden edge, divided by the golden box width (left, right) or
  height (top, bottom); positive = right / down. Its mean and 95% t-interval show a
  systematic shift (boxes drawn 3% too wide) that per-object IoU hides. A check
  ``drift.<edge>`` compares with ``max_drift`` the drift the sample is sure of: the
  interval's bound nearest zero (0 when the interval spans zero), so placement
  noise on a small golden set is not mistaken for a systematic shift.

* precision, recall and accuracy are rates on the golden *sample*: a ``min_*``
  check compares the 95% Wilson interval's high end with the limit, so it fails
  only when the whole interval is below it (as drift); ``metrics[...]["intervals"]``
  holds each interval, the decision (fails / passes / undecided) and, when
  undecided, about how many more golden objects would decide it.

Consensus as the reference (no golden file, several annotators per image)::

    [tool.annogate.golden]           # or top-level `golden = "consensus"`
    reference = "consensus"          # file (default) | consensus
    quorum = 2                       # votes among the OTHER annotators: a count >= 2, or a fraction in (0, 1)

Each annotator ``X`` is judged against the quorum consensus of the *other*
annotators (leave-one-out, :func:`annogate.consensus.leave_one_out`), on the images
``X`` labelled that at least ``quorum`` others (two, for a fraction) labelled too.
Why leave-one-out: an annotator must not vote for their own labels. With three
annotators a plain majority that includes ``X`` confirms any label of ``X`` that one
other shares, and with two it confirms everything ``X`` drew, so the worst
annotator would look as good as the rest; against the others' consensus alone, a
shifted or flipped label is judged by people who did not draw it. The others'
consensus is the agreement gate's vote (pair at ``iou``, cluster, top vote with no
tie reaching the quorum); objects the others did not decide become ignore regions
(crowd), so ``X`` is neither right nor wrong there. Every metric, check, table and
cost fact below is computed the same way, pooled over annotators for ``overall``
and per class; findings name the reference ("consensus of bob, carol" instead of
"golden") and point at the reference object the consensus kept. Because each
reference object judges one annotator, missing objects, recall and accuracy are
per annotator too, and ``min_precision`` / ``min_recall`` / ``min_accuracy`` are
also checked per annotator (scope ``annotator:<name>``, on the Wilson interval).
An annotator *covers* an image when they drew an object on it (the batch does not
record who saw an image and drew nothing). ``file`` is not read in this mode.

Findings: ``extra`` (batch object with no golden counterpart), ``mislabelled``
(batch object, message names the golden class), ``missing`` (points at the golden
file's annotation), and ``low_iou`` warnings. The match is cached in
``ctx.cache`` (see :func:`golden_match`) so the confusion gate reuses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.consensus import ConsensusReference, leave_one_out, min_others
from annogate.defects import CostFacts, Pattern, SampledDefects
from annogate.findings import Finding, GateResult, ThresholdCheck, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.matching import MatchResult, MatchSettings, Status, match, sigma_problem
from annogate.model import Batch
from annogate.stats import rate_decision

__all__ = [
    "EDGES",
    "GATE",
    "MATCH_SCHEMA",
    "RULES_SCHEMA",
    "GoldenMatch",
    "Unavailable",
    "drift_stats",
    "golden_match",
    "match_or_result",
    "match_settings",
]

EDGES = ("left", "top", "right", "bottom")
_CACHE_SLOT = "annogate.golden.match"

#: Keys that choose the golden file and how to match; the confusion gate accepts them too.
MATCH_SCHEMA: dict[str, Any] = {
    "file": {"type": "string", "minLength": 1, "description": "Golden file, relative to the rules file."},
    "iou_type": {"enum": ["bbox", "segm", "keypoints"], "default": "bbox"},
    "iou": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
    "max_dets": {"type": "integer", "minimum": 1, "default": 100},
    "oks_sigmas": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
    "reference": {
        "enum": ["file", "consensus"],
        "default": "file",
        "description": "What the batch is judged against: the golden `file`, or (several annotators per image, "
        "no golden file) each annotator against the quorum consensus of the OTHER annotators.",
    },
    "quorum": {
        "anyOf": [
            {"type": "integer", "minimum": 2},
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        ],
        "default": 2,
        "description": "reference = consensus: votes a reference object needs among the other annotators, a count "
        "(integer >= 2; an image is judged when that many others labelled it) or a fraction below 1 of the others "
        "who labelled the image (needs two others). Ties never win. 1 is refused: a consensus of one is not one.",
    },
}

_RATE = {"type": "number", "minimum": 0, "maximum": 1}
_COUNT = {"type": "integer", "minimum": 0}
_LIMITS: dict[str, Any] = {
    "min_precision": _RATE,
    "min_recall": _RATE,
    "min_accuracy": _RATE,
    "min_mean_iou": _RATE,
    "max_drift": {"type": "number", "minimum": 0},
    "max_extra": _COUNT,
    "max_missing": _COUNT,
    "max_mislabelled": _COUNT,
}

RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Golden-set (honeypot) comparison: matching settings and thresholds, overall and per class.",
    "additionalProperties": False,
    "properties": {
        **MATCH_SCHEMA,
        "min_object_iou": {**_RATE, "description": "Matched pairs below this IoU become `low_iou` warnings."},
        **_LIMITS,
        "per_class": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": False, "properties": _LIMITS},
        },
    },
}


@dataclass(frozen=True, kw_only=True, eq=False)
class GoldenMatch:
    """A batch matched with its golden file (what both gates read from the cache)."""

    golden: Batch
    golden_path: Path
    result: MatchResult
    consensus: ConsensusReference | None = None

    def ref_name(self, gold_row: int) -> str:
        """Who the reference object comes from, for messages: "golden" or "consensus of bob, carol"."""
        if self.consensus is None:
            return "golden"
        return f"consensus of {self.consensus.ref_voters[gold_row]}"

    def ref_object(self, gold_row: int) -> str:
        """The reference object, for messages: its golden id, or the id and drawer of the consensus object."""
        ga = self.golden.annotations
        if self.consensus is None:
            return f"golden annotation {int(ga.id[gold_row])}"
        drawn = int(self.consensus.ref_rows[gold_row])
        names = self.golden.annotators
        who = self.consensus.view.annotations.annotator[drawn]
        by = names[who] if 0 <= who < len(names) else "?"
        return f"annotation {int(ga.id[gold_row])} by {by}"

    def voters_at(self, batch_row: int) -> str:
        """Reference for a batch object without a counterpart: "golden" or "consensus of bob, carol"."""
        if self.consensus is None:
            return "golden"
        v = int(self.consensus.view.annotations.image[batch_row])
        return f"consensus of {self.consensus.image_voters[v]}" if v >= 0 else "consensus"

    def owner(self) -> npt.NDArray[np.int64] | None:
        """Per reference row, the annotator it judges (consensus); None for a golden file (nobody's)."""
        return None if self.consensus is None else self.golden.annotations.annotator.astype(np.int64)


def _match_cfg(ctx: GateContext, section: Mapping[str, Any] | None) -> dict[str, Any]:
    own = dict(ctx.section if section is None else section)
    top = ctx.rules.get("golden")
    base: dict[str, Any] = dict(top) if isinstance(top, Mapping) else {}
    if top == "consensus":
        base["reference"] = "consensus"
    elif isinstance(top, str):
        base["file"] = top
    return {
        **{k: v for k, v in base.items() if k in MATCH_SCHEMA},
        **{k: v for k, v in own.items() if k in MATCH_SCHEMA},
    }


def reference_settings(ctx: GateContext, section: Mapping[str, Any] | None = None) -> tuple[str, float]:
    """``(reference, quorum)``: ``"file"`` or ``"consensus"``, from the gate's section, then ``[golden]``."""
    cfg = _match_cfg(ctx, section)
    q = cfg.get("quorum", 2)
    return str(cfg.get("reference", "file")), (q if isinstance(q, int) else float(q))


def match_settings(ctx: GateContext, section: Mapping[str, Any] | None = None) -> tuple[Path | None, MatchSettings]:
    """The golden file and matching settings for a gate.

    ``section`` (default ``ctx.section``) wins; missing keys come from the golden
    section of the rules, and the file also from a top-level ``golden = "path"``.
    """
    cfg = _match_cfg(ctx, section)
    sig = cfg.get("oks_sigmas")
    settings = MatchSettings(
        iou_type=cfg.get("iou_type", "bbox"),
        iou=float(cfg.get("iou", 0.5)),
        max_dets=int(cfg.get("max_dets", 100)),
        oks_sigmas=tuple(float(s) for s in sig) if sig else None,
    )
    f = cfg.get("file")
    if not f:
        return None, settings
    p = Path(str(f))
    return (p if p.is_absolute() else ctx.base_dir / p), settings


@dataclass(frozen=True, kw_only=True)
class Unavailable:
    """Why there is no golden match to judge, and whether that fails or skips the gate.

    ``failed``: the rules ask for a comparison that cannot be made (golden file
    missing or unreadable, keypoints without sigmas, an unmatchable image): the gate
    fails. Otherwise there is simply nothing to compare (no golden file configured,
    no golden image in the batch): the gate skips. A typed seam, so that gates
    sharing the match (golden, confusion) never parse message text to decide.
    """

    reason: str
    failed: bool

    def result(self, gate: str) -> GateResult:
        """The gate result this stands for."""
        return GateResult(gate=gate, verdict="failed" if self.failed else "skipped", reason=self.reason)


def golden_match(
    batch: Batch, ctx: GateContext, section: Mapping[str, Any] | None = None, *, gate: str = "golden"
) -> GoldenMatch | Unavailable:
    """Match ``batch`` with its golden file, once per batch, file and settings.

    The match is kept in ``ctx.cache`` (one slot, the latest batch only, so a
    session over many batches keeps memory flat) for the confusion gate.

    Returns the match, or :class:`Unavailable` saying why there is none. Raises
    nothing for bad input: the reasons are messages naming the file or rule key.
    """
    path, settings = match_settings(ctx, section)
    reference, quorum = reference_settings(ctx, section)
    if reference == "consensus":
        return _consensus_match(batch, ctx, settings, quorum, gate=gate)
    if path is None:
        return Unavailable(
            reason="no golden file configured (set `file` in [tool.annogate.golden] or top-level `golden`)",
            failed=False,
        )
    key = f"{path}|{settings.key()}|{batch.path}|{batch.sha256}|{id(batch)}|{len(batch.annotations)}"
    slot = ctx.cache.setdefault(_CACHE_SLOT, {})
    hit = slot.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    if not path.is_file():
        return Unavailable(reason=f"golden file not found: {path}", failed=True)
    try:
        golden = ctx.load(path)
    except Exception as e:  # an unreadable golden file is one failing item, never a crash
        return Unavailable(reason=f"cannot read golden file {path}: {e}", failed=True)
    lacking = sigma_problem(golden, settings)
    if lacking:
        classes = ", ".join(f"{c!r} ({k} keypoints)" for c, k in sorted(lacking.items()))
        return Unavailable(
            reason=f"OKS needs one sigma per keypoint: golden class {classes} has no sigmas; set `oks_sigmas` "
            f"(one number per keypoint) in [tool.annogate.{gate}] or [tool.annogate.golden]",
            failed=True,
        )
    try:
        result = match(batch, golden, settings)
    except Exception as e:  # e.g. too many overlapping objects: one failing item, never a crash
        return Unavailable(reason=f"cannot match with {path}: {type(e).__name__}: {e}", failed=True)
    gm = GoldenMatch(golden=golden, golden_path=path, result=result)
    slot.clear()  # one batch at a time: the session cache must not grow with every batch
    slot[key] = gm
    return gm


def _consensus_match(
    batch: Batch, ctx: GateContext, settings: MatchSettings, quorum: float, *, gate: str
) -> GoldenMatch | Unavailable:
    """Each annotator matched with the consensus of the others (:func:`annogate.consensus.leave_one_out`).

    One :func:`~annogate.matching.match` over all judged (image, annotator) pairs; the
    result's batch rows are the batch's own, so every metric, finding and table of the
    golden and confusion gates reads it as it reads a golden file's match.
    """
    key = f"consensus|{quorum!r}|{settings.key()}|{batch.path}|{batch.sha256}|{id(batch)}|{len(batch.annotations)}"
    slot = ctx.cache.setdefault(_CACHE_SLOT, {})
    hit = slot.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    if not batch.annotators or not (batch.annotations.annotator >= 0).any():
        return Unavailable(reason="reference = consensus, but no annotator is recorded for any object", failed=False)
    lacking = sigma_problem(batch, settings)
    if lacking:
        classes = ", ".join(f"{c!r} ({k} keypoints)" for c, k in sorted(lacking.items()))
        return Unavailable(
            reason=f"OKS needs one sigma per keypoint: class {classes} has no sigmas; set `oks_sigmas` "
            f"(one number per keypoint) in [tool.annogate.{gate}] or [tool.annogate.golden]",
            failed=True,
        )
    try:
        cref = leave_one_out(
            batch, iou=settings.iou, quorum=quorum, iou_type=settings.iou_type, oks_sigmas=settings.oks_sigmas
        )
        if cref.judged_images == 0:
            return Unavailable(
                reason=f"reference = consensus, but no image was labelled by an annotator and at least "
                f"{min_others(quorum)} others ({len(batch.annotators)} annotator(s) in the batch)",
                failed=False,
            )
        result = match(cref.view, cref.match_reference, settings)
    except Exception as e:  # e.g. too many overlapping objects: one failing item, never a crash
        return Unavailable(reason=f"cannot build the consensus reference: {type(e).__name__}: {e}", failed=True)
    gm = GoldenMatch(golden=cref.reference, golden_path=batch.path, result=result, consensus=cref)
    slot.clear()
    slot[key] = gm
    return gm


# ---------------------------------------------------------------------------
# metrics


def _t975(df: int) -> float:
    """The 97.5% Student t quantile (exact: ``annogate.planning.t_quantile``, tested against SciPy)."""
    from annogate.planning import t_quantile

    return t_quantile(0.975, df)


def drift_stats(batch_box: npt.NDArray[np.float64], gold_box: npt.NDArray[np.float64]) -> dict[str, dict[str, float]]:
    """Mean signed offset of each box edge relative to the golden box size, with a 95% t-interval.

    ``[x, y, w, h]`` boxes of matched pairs, aligned. Offsets are (batch - golden)
    edge positions / golden width (left, right) or height (top, bottom); pairs with
    a non-positive or non-finite golden size are left out.
    """
    b = np.asarray(batch_box, np.float64).reshape(-1, 4)
    g = np.asarray(gold_box, np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.stack(
            [
                (b[:, 0] - g[:, 0]) / g[:, 2],
                (b[:, 1] - g[:, 1]) / g[:, 3],
                ((b[:, 0] + b[:, 2]) - (g[:, 0] + g[:, 2])) / g[:, 2],
                ((b[:, 1] + b[:, 3]) - (g[:, 1] + g[:, 3])) / g[:, 3],
            ],
            1,
        )
    out: dict[str, dict[str, float]] = {}
    for k, edge in enumerate(EDGES):
        v = off[:, k]
        v = v[np.isfinite(v)]
        n = int(v.shape[0])
        mean = float(v.mean()) if n else math.nan
        if n >= 2:
            half = _t975(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
        else:
            half = math.nan
        out[edge] = {"mean": mean, "low": mean - half, "high": mean + half, "n": float(n)}
    return out


def _systematic(d: Mapping[str, float]) -> float:
    """The drift the sample is sure of: the 95% interval's bound nearest 0 (0 if it spans 0).

    Why not |mean|: on a small golden set random placement noise alone moves the
    mean by a few percent; only a shift whose whole interval lies beyond the limit
    is systematic. A single pair (no interval) uses its offset as it is.
    """
    mean, lo, hi = d["mean"], d["low"], d["high"]
    if mean != mean:
        return math.nan
    if lo != lo or hi != hi:
        return abs(mean)
    if lo <= 0.0 <= hi:
        return 0.0
    return min(abs(lo), abs(hi))


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _scope_metrics(
    tp: int,
    mis_gold: int,
    mis_batch: int,
    missing: int,
    extra: int,
    ious: npt.NDArray[np.float64],
    drift: dict[str, dict[str, float]],
    *,
    mislabelled: int,
) -> dict[str, Any]:
    return {
        "tp": tp,
        "mislabelled": mislabelled,
        "mislabelled_golden": mis_gold,
        "mislabelled_batch": mis_batch,
        "missing": missing,
        "extra": extra,
        "golden_objects": tp + mis_gold + missing,
        "batch_objects": tp + mis_batch + extra,
        "precision": _ratio(tp, tp + extra + mis_batch),
        "recall": _ratio(tp, tp + missing + mis_gold),
        "accuracy": _ratio(tp, tp + mislabelled + missing + extra),
        "mean_iou": float(ious.mean()) if ious.size else math.nan,
        "matched_pairs": int(ious.size),
        "drift": drift,
    }


def _metrics(batch: Batch, gm: GoldenMatch) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Overall and per-class metrics (plain Python) from a match."""
    res, golden = gm.result, gm.golden
    ba, ga = batch.annotations, golden.annotations
    gnames = [str(n) for n in golden.categories.name.tolist()]
    bnames = [str(n) for n in batch.categories.name.tolist()]

    def bcls(rows: npt.NDArray[np.int64]) -> list[str]:
        return [bnames[c] if c >= 0 else "<unknown>" for c in ba.category[rows].tolist()]

    def gcls(rows: npt.NDArray[np.int64]) -> list[str]:
        return [gnames[c] if c >= 0 else "<unknown>" for c in ga.category[rows].tolist()]

    prow, pgold, piou = res.pairs()
    tp_rows = res.batch_rows(Status.MATCHED)
    mis_rows = res.batch_rows(Status.MISLABELLED)
    extra_rows = res.batch_rows(Status.UNMATCHED)
    miss_rows = res.gold_rows(Status.UNMATCHED)
    pair_gcls = np.array(gcls(pgold), object)

    overall = _scope_metrics(
        len(tp_rows),
        len(mis_rows),
        len(mis_rows),
        len(miss_rows),
        len(extra_rows),
        piou,
        drift_stats(ba.bbox[prow], ga.bbox[pgold]),
        mislabelled=len(mis_rows),
    )
    overall["ignored"] = int(np.count_nonzero(res.batch_status == Status.IGNORED))
    overall["truncated"] = int(np.count_nonzero(res.batch_status == Status.TRUNCATED))
    overall["golden_images"] = int(res.images.shape[0])
    overall["unmatchable"] = {
        "batch": int(res.unmatchable_batch.shape[0]),
        "golden": int(res.unmatchable_gold.shape[0]),
        "reasons": dict(res.meta.get("reasons", {})),
    }

    from collections import Counter

    tp_c = Counter(gcls(res.batch_match[tp_rows]))
    misg_c = Counter(gcls(res.batch_match[mis_rows]))
    misb_c = Counter(bcls(mis_rows))
    miss_c = Counter(gcls(miss_rows))
    extra_c = Counter(bcls(extra_rows))
    classes = sorted(set(tp_c) | set(misg_c) | set(misb_c) | set(miss_c) | set(extra_c))
    per: dict[str, dict[str, Any]] = {}
    for c in classes:
        sel = pair_gcls == c
        per[c] = _scope_metrics(
            tp_c[c],
            misg_c[c],
            misb_c[c],
            miss_c[c],
            extra_c[c],
            piou[sel],
            drift_stats(ba.bbox[prow[sel]], ga.bbox[pgold[sel]]),
            mislabelled=misg_c[c] + misb_c[c],
        )
    return overall, per


#: (successes, trials) of each rate, from a scope's metrics.
_RATE_PARTS: dict[str, Any] = {
    "precision": lambda m: (m["tp"], m["tp"] + m["extra"] + m["mislabelled_batch"]),
    "recall": lambda m: (m["tp"], m["tp"] + m["missing"] + m["mislabelled_golden"]),
    "accuracy": lambda m: (m["tp"], m["tp"] + m["mislabelled"] + m["missing"] + m["extra"]),
}


def _rate_decisions(m: Mapping[str, Any], lim: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each rate's 95% Wilson interval and, where the rules set a limit, the decision.

    Why: precision, recall and accuracy are measured on the golden sample only; on a
    small golden set one object moves them by several percent. As drift, a minimum
    is broken only when the whole interval lies below it (the check's value is the
    interval's high end); between, the rate is *undecided* and passes, with how many
    more golden objects would decide it.
    """
    out: dict[str, dict[str, Any]] = {}
    for metric, parts in _RATE_PARTS.items():
        k, n = parts(m)
        limit = lim.get(f"min_{metric}")
        d = rate_decision(k, n, float(limit) if limit is not None else math.nan, ">=")
        out[metric] = {
            "ci95_low": d.low,
            "ci95_high": d.high,
            "n": n,
            "decision": None if limit is None else d.state,
            "more_to_decide": None if limit is None else d.more,
            "text": None if limit is None else d.text("golden objects"),
        }
    return out


def _rate_checks(scope: str, m: Mapping[str, Any], lim: Mapping[str, Any]) -> list[ThresholdCheck]:
    out: list[ThresholdCheck] = []
    for key, metric in (("min_precision", "precision"), ("min_recall", "recall"), ("min_accuracy", "accuracy")):
        if key in lim:
            # a rate on the golden sample: judged on its Wilson interval (see _rate_decisions)
            k, n = _RATE_PARTS[metric](m)
            d = rate_decision(k, n, float(lim[key]), ">=")
            out.append(ThresholdCheck(metric=metric, scope=scope, value=d.bound, limit=float(lim[key]), op=">="))
    return out


def _checks(scope: str, m: Mapping[str, Any], lim: Mapping[str, Any]) -> list[ThresholdCheck]:
    out = _rate_checks(scope, m, lim)
    if "min_mean_iou" in lim:
        out.append(
            ThresholdCheck(
                metric="mean_iou", scope=scope, value=float(m["mean_iou"]), limit=float(lim["min_mean_iou"]), op=">="
            )
        )
    for key, metric in (("max_extra", "extra"), ("max_missing", "missing"), ("max_mislabelled", "mislabelled")):
        if key in lim:
            out.append(
                ThresholdCheck(metric=metric, scope=scope, value=float(m[metric]), limit=float(lim[key]), op="<=")
            )
    if "max_drift" in lim:
        out += _drift_checks(scope, m["drift"], float(lim["max_drift"]))
    return out


def _drift_checks(scope: str, drift: Mapping[str, Mapping[str, float]], limit: float) -> list[ThresholdCheck]:
    return [
        ThresholdCheck(metric=f"drift.{edge}", scope=scope, value=_systematic(drift[edge]), limit=limit, op="<=")
        for edge in EDGES
    ]


def _per_annotator(
    batch: Batch, gm: GoldenMatch, cohort_of: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per batch annotator: their objects' outcome on the golden images and their boundary drift.

    Why: a systematic habit is usually one person's (bob draws every box 12% to the
    right). Mixed into the overall figures it is diluted and blamed on everyone;
    per annotator it is named, and the drift check fails with scope
    ``annotator:<name>``. With a golden file, missing golden objects have no
    annotator and count only overall; against the consensus every reference object
    judges one annotator (see :class:`annogate.consensus.ConsensusReference`), so
    missing, recall and accuracy are per annotator too. Objects without an
    annotator are left out here.

    ``cohort_of`` (annotator -> cohort) instead gives one record per cohort, over
    its annotators' objects together.
    """
    res, golden = gm.result, gm.golden
    ba, ga = batch.annotations, golden.annotations
    out: dict[str, dict[str, Any]] = {}
    if not batch.annotators:
        return out
    prow, pgold, piou = res.pairs()
    who = ba.annotator.astype(np.int64)
    owner = gm.owner()
    groups: dict[str, list[int]] = {}
    for c, name in enumerate(batch.annotators):
        if cohort_of is None:
            groups[str(name)] = [c]
        elif str(name) in cohort_of:
            groups.setdefault(cohort_of[str(name)], []).append(c)
    for name, members in groups.items():
        mine = np.isin(who, members)
        evaluated = mine & (res.batch_status != Status.UNEVALUATED) & (res.batch_status != Status.IGNORED)
        if not evaluated.any():
            continue
        tp = int(np.count_nonzero(mine & (res.batch_status == Status.MATCHED)))
        mis = int(np.count_nonzero(mine & (res.batch_status == Status.MISLABELLED)))
        extra = int(np.count_nonzero(mine & (res.batch_status == Status.UNMATCHED)))
        sel = np.isin(who[prow], members)
        rec: dict[str, Any] = {
            "batch_objects": tp + mis + extra,
            "tp": tp,
            "mislabelled": mis,
            "mislabelled_batch": mis,
            "extra": extra,
            "precision": _ratio(tp, tp + mis + extra),
            "mean_iou": float(piou[sel].mean()) if sel.any() else math.nan,
            "matched_pairs": int(np.count_nonzero(sel)),
            "drift": drift_stats(ba.bbox[prow[sel]], ga.bbox[pgold[sel]]),
        }
        if owner is not None:
            missing = int(np.count_nonzero(np.isin(owner, members) & (res.gold_status == Status.UNMATCHED)))
            rec.update(
                missing=missing,
                mislabelled_golden=mis,
                golden_objects=tp + mis + missing,
                recall=_ratio(tp, tp + mis + missing),
                accuracy=_ratio(tp, tp + mis + missing + extra),
            )
        out[str(name)] = rec
    return out


def _annotator_table(
    per_ann: Mapping[str, Mapping[str, Any]],
    *,
    consensus: bool = False,
    cohorts: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[list[Any]]:
    head = ["annotator", "batch", "tp", "mislabelled", "extra", "precision", "mean_iou"]
    if consensus:  # every reference object judges one annotator: misses and recall are theirs
        head[5:5] = ["missing", "recall", "accuracy"]
    head += [f"drift_{e}" for e in EDGES] + [f"drift_{e}_sure" for e in EDGES]
    rows: list[list[Any]] = [head]
    named = [*sorted(per_ann.items()), *((f"cohort:{n}", m) for n, m in sorted((cohorts or {}).items()))]
    for name, m in named:
        judged = [m["missing"], _r(m["recall"]), _r(m["accuracy"])] if consensus else []
        rows.append(
            [
                name,
                m["batch_objects"],
                m["tp"],
                m["mislabelled"],
                m["extra"],
                *judged,
                _r(m["precision"]),
                _r(m["mean_iou"]),
                *(_r(m["drift"][e]["mean"]) for e in EDGES),
                *(_r(_systematic(m["drift"][e])) for e in EDGES),
            ]
        )
    return rows


def _r(x: float, nd: int = 4) -> float | None:
    return None if x != x else round(float(x), nd)


def _tables(overall: Mapping[str, Any], per: Mapping[str, Mapping[str, Any]]) -> dict[str, list[list[Any]]]:
    head = [
        "class",
        "golden",
        "batch",
        "tp",
        "mislabelled",
        "missing",
        "extra",
        "precision",
        "recall",
        "accuracy",
        "mean_iou",
        *(f"drift_{e}" for e in EDGES),
    ]
    rows: list[list[Any]] = [head]
    for name, m in [*sorted(per.items()), ("(all)", overall)]:
        rows.append(
            [
                name,
                m["golden_objects"],
                m["batch_objects"],
                m["tp"],
                m["mislabelled"],
                m["missing"],
                m["extra"],
                _r(m["precision"]),
                _r(m["recall"]),
                _r(m["accuracy"]),
                _r(m["mean_iou"]),
                *(_r(m["drift"][e]["mean"]) for e in EDGES),
            ]
        )
    drift: list[list[Any]] = [["scope", "edge", "mean", "ci95_low", "ci95_high", "n"]]
    for name, m in [("(all)", overall), *sorted(per.items())]:
        for e in EDGES:
            d = m["drift"][e]
            drift.append([name, e, _r(d["mean"]), _r(d["low"]), _r(d["high"]), int(d["n"])])
    return {"golden_per_class": rows, "golden_drift": drift}


def _findings(batch: Batch, gm: GoldenMatch, min_object_iou: float | None) -> list[Finding]:
    res, golden = gm.result, gm.golden
    thr = res.settings.iou
    out: list[Finding] = []
    bad_b = set(res.unmatchable_batch.tolist())
    bad_g = set(res.unmatchable_gold.tolist())
    extra = res.batch_rows(Status.UNMATCHED)
    out += findings_for_rows(
        batch,
        extra,
        gate="golden",
        rule="extra",
        messages=[
            f"extra {batch.category_name(int(i))!r}: "
            + (
                _UNMATCHABLE
                if i in bad_b
                else f"no object of the {gm.voters_at(int(i))} matches it (IoU >= {thr})"
                if gm.consensus is not None
                else f"no golden object matches it (IoU >= {thr})"
            )
            for i in extra
        ],
    )
    mis = res.batch_rows(Status.MISLABELLED)
    out += findings_for_rows(
        batch,
        mis,
        gate="golden",
        rule="mislabelled",
        messages=[
            f"labelled {batch.category_name(int(i))!r}, {gm.ref_name(int(res.batch_match[i]))} says "
            f"{golden.category_name(int(res.batch_match[i]))!r} "
            f"({gm.ref_object(int(res.batch_match[i]))}, IoU {res.batch_iou[i]:.2f})"
            for i in mis
        ],
        values=res.batch_iou[mis],
    )
    miss = res.gold_rows(Status.UNMATCHED)
    out += findings_for_rows(
        golden,
        miss,
        gate="golden",
        rule="missing",
        messages=[
            (
                f"missing {golden.category_name(int(i))!r}: golden annotation {int(golden.annotations.id[i])} "
                if gm.consensus is None
                else f"missing {golden.category_name(int(i))!r}: {gm.ref_name(int(i))} drew it "
                f"({gm.ref_object(int(i))}), "
            )
            + (
                _UNMATCHABLE
                if i in bad_g
                else "has no match in the batch"
                if gm.consensus is None
                else f"{golden.annotators[int(golden.annotations.annotator[i])]} has no match for it"
            )
            for i in miss
        ],
    )
    if min_object_iou is not None:
        rows, _, ious = res.pairs()
        low = rows[ious < min_object_iou]
        out += findings_for_rows(
            batch,
            low,
            gate="golden",
            rule="low_iou",
            severity="warning",
            messages=[
                f"IoU {res.batch_iou[i]:.2f} with {gm.ref_name(int(res.batch_match[i]))} "
                f"({gm.ref_object(int(res.batch_match[i]))}) is below {min_object_iou}"
                if gm.consensus is not None
                else f"IoU {res.batch_iou[i]:.2f} with golden annotation {int(golden.annotations.id[res.batch_match[i]])} "
                f"is below {min_object_iou}"
                for i in low
            ],
            values=res.batch_iou[low],
        )
    return out


_UNMATCHABLE = "its mask is unsafe or cannot be drawn (see the geometry gate), so it matches nothing"


def _cost_facts(
    batch: Batch,
    overall: Mapping[str, Any],
    per_ann: Mapping[str, Mapping[str, Any]],
    checks: list[ThresholdCheck],
    cohort_of: Mapping[str, str] | None = None,
) -> CostFacts:
    """The golden sample's defects (extrapolated by the cost model) and drift patterns.

    Sampled: mislabelled + missing + extra out of tp + mislabelled + missing + extra
    (so the rate is 1 - accuracy), with each annotator's own defects and objects so
    the rework is attributed to who made it (with a golden file missing objects have
    no annotator; against the consensus they are the judged annotator's misses).
    Patterns: a failed drift check is boundary drift review does not catch. Drift
    named for an annotator spoils that annotator's labels; when annotators are named,
    the overall drift they cause is not priced a second time. A cohort's drift
    (scope ``cohort:<name>``) spoils its annotators' labels and is priced only when
    none of its annotators' drift is (the narrowest scope explains it);
    ``by_annotator`` stays keyed by annotator: the cost model maps annotators to
    cohorts with the same ``cost.cohorts``.
    """
    by_type = {k: int(overall[k]) for k in ("mislabelled", "missing", "extra")}
    sample = int(overall["tp"]) + sum(by_type.values())
    by_annotator = {
        name: (
            int(m["mislabelled"]) + int(m["extra"]) + int(m.get("missing", 0)),
            int(m["batch_objects"]) + int(m.get("missing", 0)),
        )
        for name, m in per_ann.items()
    }
    sampled = SampledDefects(defects=sum(by_type.values()), sample=sample, by_type=by_type, by_annotator=by_annotator)
    drifted: dict[str, list[ThresholdCheck]] = {}
    for c in checks:
        if c.metric.startswith("drift.") and not c.passed and c.severity == "error":
            drifted.setdefault(c.scope, []).append(c)
    named = [s for s in drifted if s.startswith(("annotator:", "cohort:"))]
    cohort_of = cohort_of or {}
    drifting = {cohort_of.get(s[len("annotator:") :]) for s in drifted if s.startswith("annotator:")}
    ann = batch.annotations
    pats: list[Pattern] = []
    for scope, cs in sorted(drifted.items()):
        if scope == "overall" and named:
            continue
        who: str | None = None
        cls: str | None = None
        if scope.startswith("cohort:"):
            cohort = scope[len("cohort:") :]
            if cohort in drifting:
                continue
            ks = [i for i, n in enumerate(batch.annotators) if cohort_of.get(str(n)) == cohort]
            affected = int(np.count_nonzero(np.isin(ann.annotator, ks)))
        elif scope.startswith("annotator:"):
            who = scope[len("annotator:") :]
            k = batch.annotators.index(who) if who in batch.annotators else -1
            affected = int(np.count_nonzero(ann.annotator == k)) if k >= 0 else 0
        elif scope.startswith("class:"):
            cls = scope[len("class:") :]
            ks = [i for i, n in enumerate(batch.categories.name) if str(n) == cls]
            affected = int(np.count_nonzero(np.isin(ann.category, ks)))
        else:
            affected = len(ann)
        pats.append(
            Pattern(
                kind="drift",
                scope=scope,
                affected=float(affected),
                annotator=who,
                category=cls,
                checks=tuple(c.to_dict() for c in cs),
            )
        )
    return CostFacts(sampled=sampled if sample > 0 else None, patterns=tuple(pats))


def cohort_map(ctx: GateContext) -> dict[str, str]:
    """Annotator -> cohort, from ``[tool.annogate.cost] cohorts`` (one mapping for tables, checks and cost).

    Why the cost section's: the cost model already itemises rework by that mapping
    (:meth:`annogate.cost.CostParameters.cohort`); a second mapping for the quality
    tables could disagree with it, and the same vendor would be blamed under two names.
    """
    cost = ctx.rules.get("cost")
    raw = cost.get("cohorts") if isinstance(cost, Mapping) else None
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _reference_metrics(gm: GoldenMatch) -> dict[str, Any]:
    """What the batch was judged against, for the report."""
    c = gm.consensus
    if c is None:
        return {"kind": "file", "file": str(gm.golden_path)}
    names = gm.golden.annotators
    return {
        "kind": "consensus",
        "leave_one_out": True,
        "quorum": c.quorum,
        "judged_images": c.judged_images,
        "images": int(np.unique(c.image_real).shape[0]),
        "annotators_judged": sorted({str(names[k]) for k in c.image_owner.tolist() if 0 <= k < len(names)}),
        "reference_objects": int(np.count_nonzero(~gm.golden.annotations.iscrowd.astype(np.bool_))),
        "undecided_regions": int(np.count_nonzero(gm.golden.annotations.iscrowd)),
    }


def match_or_result(batch: Batch, ctx: GateContext, *, gate: str) -> GoldenMatch | GateResult:
    """The golden match, or the result a gate reports when there is none.

    Shared by the golden and confusion gates so both skip (nothing to compare) or
    fail (a configured comparison that cannot be made) alike.
    """
    gm = golden_match(batch, ctx, gate=gate)
    if isinstance(gm, Unavailable):
        return gm.result(gate)
    if gm.result.images.shape[0] == 0:
        return Unavailable(
            reason=f"the batch has no image of the golden file {gm.golden_path.name}", failed=False
        ).result(gate)
    return gm


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """Match the batch's golden images with the golden file; check metrics against the rules."""
    gm = match_or_result(batch, ctx, gate="golden")
    if isinstance(gm, GateResult):
        return gm
    sec = ctx.section
    overall, per = _metrics(batch, gm)
    checks = _checks("overall", overall, sec)
    overall["intervals"] = _rate_decisions(overall, sec)
    per_lim = dict(sec.get("per_class", {}))
    for cls, m in per.items():
        m["intervals"] = _rate_decisions(m, per_lim.get(cls, {}))
    for cls, lim in sorted(per_lim.items()):
        m = per.get(cls) or _scope_metrics(
            0, 0, 0, 0, 0, np.empty(0), drift_stats(np.empty((0, 4)), np.empty((0, 4))), mislabelled=0
        )
        checks += _checks(f"class:{cls}", m, lim)
    per_ann = _per_annotator(batch, gm)
    cohort_of = cohort_map(ctx)
    per_cohort = _per_annotator(batch, gm, cohort_of) if cohort_of else {}
    for kind, group in (("annotator", per_ann), ("cohort", per_cohort)):
        for name, m in sorted(group.items()):
            if gm.consensus is not None:
                # against the consensus each annotator is judged on their own images: the rates are theirs
                m["intervals"] = _rate_decisions(m, sec)
                checks += _rate_checks(f"{kind}:{name}", m, sec)
            if "max_drift" in sec:
                checks += _drift_checks(f"{kind}:{name}", m["drift"], float(sec["max_drift"]))
    mo = sec.get("min_object_iou")
    findings = _findings(batch, gm, None if mo is None else float(mo))
    st = gm.result.settings
    tables = _tables(overall, per)
    tables["golden_per_annotator"] = _annotator_table(per_ann, consensus=gm.consensus is not None, cohorts=per_cohort)
    metrics = {
        "overall": overall,
        "per_class": per,
        "per_annotator": per_ann,
        "per_cohort": per_cohort,
        "golden_file": None if gm.consensus is not None else str(gm.golden_path),
        "reference": _reference_metrics(gm),
        "settings": {"iou_type": st.iou_type, "iou": st.iou, "max_dets": st.max_dets},
    }
    population = overall["tp"] + overall["mislabelled"] + overall["missing"] + overall["extra"]
    result = GateResult.from_checks(
        gate="golden",
        population=population,
        checks=checks,
        findings=findings,
        metrics=metrics,
        tables=tables,
        cost=_cost_facts(batch, overall, per_ann, checks, cohort_of),
    )
    result.metrics = GateResult.to_dict(result)["metrics"]  # plain Python, nan -> None
    return result


GATE = Gate(
    name="golden",
    run=run,
    rules_schema=RULES_SCHEMA,
    description="Honeypot images against their golden file: precision, recall, accuracy, IoU, boundary drift.",
    order=30,
)
