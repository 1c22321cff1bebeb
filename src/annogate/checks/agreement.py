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
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.checks.golden import cohort_map
from annogate.consensus import NOTHING, AgreementAnalysis, alpha, analyse, consensus, pair_alphas
from annogate.findings import Finding, GateResult, ThresholdCheck, findings_for_rows
from annogate.gates import Gate, GateContext
from annogate.matching import MatchSettings, TooManyCandidates, sigma_problem
from annogate.model import Batch
from annogate.stats import wilson_interval
from annogate.thresholds import THRESHOLDS_SCHEMA, apply_severity, error_type_checks

__all__ = [
    "DEFAULTS",
    "GATE",
    "RULES_SCHEMA",
    "AgreementAnalysis",
    "analyse",
    "consensus",
    "run",
]

NAME = "agreement"
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

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


# --------------------------------------------------------------------- gate


def _name(batch: Batch, coder: int) -> str:
    return batch.annotators[coder] if 0 <= coder < len(batch.annotators) else f"#{coder}"


def _class(batch: Batch, k: int) -> str:
    if k == NOTHING:
        return "nothing"
    return str(batch.categories.name[k]) if 0 <= k < len(batch.categories) else f"#{k}"


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
    """The section over the defaults (unknown keys were refused by the rules schema)."""
    return {**DEFAULTS, **dict(section)}


_CACHE_SLOT = "agreement.analysis"


def _cached_analysis(batch: Batch, ctx: GateContext, cfg: Mapping[str, Any]) -> AgreementAnalysis:
    """The analysis of ``batch`` under ``cfg``, kept in ``ctx.cache`` for the latest batch only.

    So repeated runs over one batch pair the objects once; one slot bounds the
    memory a session holds.
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


def run(batch: Batch, ctx: GateContext) -> GateResult:
    """The agreement gate: alpha, IoU and per-annotator defect rates, with findings."""
    cfg = _settings(ctx.section)
    if not batch.annotators or not (batch.annotations.annotator >= 0).any():
        return GateResult(gate=NAME, verdict="skipped", reason="no annotator recorded for any object")
    sigmas = tuple(float(x) for x in cfg["oks_sigmas"]) if cfg.get("oks_sigmas") else None
    lacking = sigma_problem(batch, MatchSettings(iou_type=cfg["iou_type"], oks_sigmas=sigmas))
    if lacking:
        classes = ", ".join(f"{c!r} ({k} keypoints)" for c, k in sorted(lacking.items()))
        return GateResult(
            gate=NAME,
            verdict="failed",
            reason=f"OKS needs one sigma per keypoint: class {classes} has no sigmas; "
            "set `oks_sigmas` (one number per keypoint) in [tool.annogate.agreement]",
        )
    try:
        a = _cached_analysis(batch, ctx, cfg)
    except TooManyCandidates as e:
        return GateResult(gate=NAME, verdict="failed", reason=f"cannot pair the annotators' objects: {e}")
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

    alpha_value = alpha(a, unmatched)
    alpha_basis = unmatched
    if alpha_value != alpha_value and a.edge_iou.size == 0 and a.n_units:
        # Nobody matched anybody: with "missing", no unit has two values and alpha is
        # 0/0. That is total disagreement on what is there, not "nothing measured", so
        # absence counts as a value and alpha judges it.
        alpha_value = alpha(a, "nothing")
        alpha_basis = "nothing (no object matched across annotators)"
    mean_iou = float(a.edge_iou.mean()) if a.edge_iou.size else math.nan
    checks: list[ThresholdCheck] = []
    if cfg["min_alpha"] is not None:
        checks.append(
            ThresholdCheck(metric="alpha", scope="overall", value=alpha_value, limit=float(cfg["min_alpha"]), op=">=")
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
    pair_alpha = pair_alphas(a, unmatched, span)
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

    # Per cohort (cost.cohorts: the one annotator -> cohort mapping), its annotators pooled.
    cohort_metrics = _cohorts(ann_metrics, {c: a.coverage[c] for c in coders}, batch, cohort_map(ctx))
    for name, rec in sorted(cohort_metrics.items()):
        ann_rows.append([f"cohort:{name}", *rec.values()])

    population = int(a.rows.shape[0])
    if "thresholds" in cfg:
        checks += error_type_checks(findings=findings, population=population, cfg=cfg["thresholds"])

    decided = int(a.unit_decided.sum())
    metrics: dict[str, Any] = {
        "alpha": alpha_value,
        "alpha_basis": alpha_basis,
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
        "per_cohort": cohort_metrics,
    }
    return GateResult.from_checks(
        gate=NAME,
        population=population,
        checks=checks,
        findings=findings,
        metrics=metrics,
        tables={"pairs": pair_rows, "annotators": ann_rows},
    )


def _cohorts(
    per: Mapping[str, Mapping[str, Any]], coverage: Mapping[int, set[int]], batch: Batch, cohort_of: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Per cohort: its annotators' images (union), objects, trials and defects summed, with the Wilson interval.

    Why pooled counts and not a mean of rates: a vendor's defect rate is its defects
    over its trials, whoever in it made them; one busy annotator weighs by their work.
    """
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for c in coverage:
        name = _name(batch, c)
        if name in cohort_of and name in per:
            groups[cohort_of[name]].append(c)
    for cohort, members in groups.items():
        recs = [per[_name(batch, c)] for c in members]
        trials = sum(int(r["trials"]) for r in recs)
        defects = sum(int(r["defects"]) for r in recs)
        low, high = wilson_interval(defects, trials)
        out[cohort] = {
            "images": len(set().union(*(coverage[c] for c in members))),
            "objects": sum(int(r["objects"]) for r in recs),
            "trials": trials,
            "defects": defects,
            "defect_rate": defects / trials if trials else math.nan,
            "wilson_low": float(low),
            "wilson_high": float(high),
            **{k: sum(int(r[k]) for r in recs) for k in ANNOTATOR_COLUMNS[8:]},
        }
    return out


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
