"""The console script's sub-commands that are not a gate run: ``plan``, ``trend``, ``merge``.

Why separate from ``cli.py``: ``annogate PATH...`` hands everything to pytest
untouched; these sub-commands are small programs of their own (argparse, plain
text out) over the library (``annogate.planning``, ``annogate.history``), and must
not pull pytest or the gates in.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["SUBCOMMANDS", "main_merge", "main_plan", "main_trend", "run_subcommand"]


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(v) and 0 < v < 1):
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1 (e.g. 0.05), got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def main_plan(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """``annogate plan``: golden-set size and acceptance-sampling plan."""
    from annogate.planning import acceptance_plan, estimation_plan

    ap = argparse.ArgumentParser(
        prog="annogate plan",
        description="How many golden objects a decision needs: the sample that estimates the defect rate "
        "within +/- margin, and the single sampling plan (n, c) for an AQL/LTPD pair.",
    )
    ap.add_argument("--expected-defect-rate", type=_probability, required=True, help="e.g. 0.05")
    ap.add_argument("--margin", type=_probability, default=0.01, help="half-width of the interval (default 0.01)")
    ap.add_argument("--confidence", type=_probability, default=0.95)
    ap.add_argument("--method", choices=("wilson", "clopper-pearson"), default="wilson")
    ap.add_argument("--batch-size", type=_positive_int, help="objects in the batch (finite-population correction)")
    ap.add_argument("--batch", metavar="PATH", help="a batch to read objects per image (and the batch size) from")
    ap.add_argument("--objects-per-image", type=float, help="to turn objects into images")
    ap.add_argument("--aql", type=_probability, help="acceptable quality level (defect fraction), e.g. 0.01")
    ap.add_argument("--ltpd", type=_probability, help="lot tolerance percent defective (fraction), e.g. 0.05")
    ap.add_argument("--alpha", type=_probability, default=0.05, help="producer's risk (default 0.05)")
    ap.add_argument("--beta", type=_probability, default=0.10, help="consumer's risk (default 0.10)")
    ap.add_argument("--level", choices=("I", "II", "III"), default="II", help="ISO 2859-1 inspection level")
    args = ap.parse_args(list(argv))
    per_image = args.objects_per_image
    size = args.batch_size
    if args.batch:
        from annogate.formats import load_batch

        b = load_batch(Path(args.batch))
        per_image = per_image or len(b.annotations) / max(1, len(b.images))
        size = size or len(b.annotations)
    est = estimation_plan(
        expected_rate=args.expected_defect_rate,
        margin=args.margin,
        confidence=args.confidence,
        batch_size=size,
        objects_per_image=per_image,
        method=args.method,
    )
    w = out.write
    w(f"Estimating a defect rate of {est.expected_rate:.2%} within +/-{est.margin:.2%} ")
    w(f"at {est.confidence:.0%} confidence ({est.method}):\n")
    w(f"  golden objects needed: {est.objects:,}")
    if size:
        w(f" (of {size:,}; {est.objects_infinite:,} without the finite-population correction)")
    w("\n")
    if est.images is not None:
        w(f"  golden images needed:  {est.images:,} (at {per_image:.2f} objects per image)\n")
    w(f"  expected interval:     {est.interval[0]:.2%} .. {est.interval[1]:.2%}\n")
    if args.aql is not None or args.ltpd is not None:
        if args.aql is None or args.ltpd is None:
            ap.error("--aql and --ltpd go together")
        plan = acceptance_plan(
            aql=args.aql, ltpd=args.ltpd, alpha=args.alpha, beta=args.beta, lot=size, level=args.level
        )
        w(f"\nAcceptance sampling ({plan.distribution}), AQL {plan.aql:.2%}, LTPD {plan.ltpd:.2%}:\n")
        w(f"  inspect n = {plan.n:,} objects, accept the batch with at most c = {plan.c} defective\n")
        w(f"  P(accept) at AQL  = {plan.p_accept_at_aql:.3f} (>= {1 - plan.alpha:.2f})\n")
        w(f"  P(accept) at LTPD = {plan.p_accept_at_ltpd:.3f} (<= {plan.beta:.2f})\n")
        if plan.iso_letter is not None:
            w(
                f"  ISO 2859-1 / ANSI Z1.4, level {args.level}: code letter {plan.iso_letter}, "
                f"sample size {plan.iso_sample_size:,}\n"
            )
    return 0


def main_trend(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """``annogate trend DIR``: defect rate over time per source, cohort and annotator."""
    from annogate.history import load_history, trend

    ap = argparse.ArgumentParser(
        prog="annogate trend",
        description="Quality over time from a history folder (--annogate-history) or audit reports; "
        "flags a series whose latest rate is significantly worse (one-sided Fisher exact test).",
    )
    ap.add_argument("history", help="history folder, history.jsonl, or a folder of audit reports")
    ap.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")
    ap.add_argument("--json", action="store_true", help="print the series as JSON")
    ap.add_argument(
        "--html",
        metavar="PATH",
        help="also draw the series (defect rate with Wilson intervals per source, cohort and annotator; "
        "flagged series in red) as one self-contained HTML file",
    )
    args = ap.parse_args(list(argv))
    try:
        entries = load_history(args.history)
    except (OSError, ValueError) as e:
        print(f"annogate trend: {e}", file=sys.stderr)
        return 4
    series = trend(entries, alpha=args.alpha)
    if args.html:
        from annogate.report.outputs import OutputError
        from annogate.report.trend_html import write_trend_html

        try:
            write_trend_html(args.html, series, entries=len(entries), alpha=args.alpha, source=str(args.history))
        except (OSError, OutputError) as e:  # a folder, FIFO or device named as the page: refused, not replaced
            print(f"annogate trend: cannot write {args.html}: {e}", file=sys.stderr)
            return 4
    if args.json:
        out.write(
            json.dumps(
                [
                    {
                        "kind": s.kind,
                        "key": s.key,
                        "p_value": s.p_value,
                        "regressed": s.regressed,
                        "points": [vars(p) for p in s.points],
                    }
                    for s in series
                ],
                indent=2,
            )
            + "\n"
        )
    else:
        out.write(f"{len(entries)} history entries, {len(series)} series\n")
        for s in series:
            flag = "  REGRESSED" if s.regressed else ""
            p = "" if s.p_value is None else f" p={s.p_value:.3g}"
            out.write(f"\n{s.kind} {s.key}{flag}{p}\n")
            for pt in s.points:
                out.write(
                    f"  {pt.when:<22} {pt.defects:>6}/{pt.sample:<6} {pt.rate:7.2%}  [{pt.low:.2%} .. {pt.high:.2%}]\n"
                )
    return 1 if any(s.regressed for s in series) else 0


def main_merge(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """``annogate merge OUT.json REPORT.json...``: one verdict from CI shards' reports."""
    from annogate.report.audit import dumps, merge_reports
    from annogate.report.outputs import OutputError

    ap = argparse.ArgumentParser(
        prog="annogate merge",
        description="Merge the audit reports of CI shards (--annogate-shard K/N) into one report: the one "
        "verdict, the summed cost, every batch; identical to a single run over all batches.",
    )
    ap.add_argument("-o", "--output", metavar="PATH", help="write the merged report here")
    ap.add_argument("reports", nargs="+", help="audit reports (--annogate-report) of the shards")
    args = ap.parse_args(list(argv))
    loaded = []
    for name in args.reports:
        try:
            loaded.append(json.loads(Path(name).read_text("utf-8")))
        except (OSError, ValueError) as e:
            print(f"annogate merge: {name}: {e}", file=sys.stderr)
            return 4
    try:
        merged = merge_reports(loaded)
    except (ValueError, KeyError, TypeError) as e:
        print(f"annogate merge: {e}", file=sys.stderr)
        return 4
    if args.output:
        from annogate.report.audit import atomic_write_text
        from annogate.report.outputs import same_file

        if any(same_file(Path(args.output), Path(r)) for r in args.reports):
            print(f"annogate merge: {args.output}: is one of the reports being merged", file=sys.stderr)
            return 4
        try:
            atomic_write_text(args.output, dumps(merged))
        except (OSError, OutputError) as e:
            print(f"annogate merge: {e}", file=sys.stderr)
            return 4
    s = merged["summary"]
    out.write(
        f"annogate merge: {len(loaded)} reports, {s['batches']} batches: {s['failed']} failed, "
        f"{s['passed']} passed, {s['skipped']} skipped; verdict {s['verdict']}\n"
    )
    for cur, t in sorted(s["cost"].items()):
        out.write(
            f"  expected cost of accepting: {cur} {t['total']:,.2f} ({t['total_low']:,.2f} .. {t['total_high']:,.2f})\n"
        )
    return 1 if s["verdict"] == "failed" else 0


SUBCOMMANDS = {"plan": main_plan, "trend": main_trend, "merge": main_merge}


def run_subcommand(argv: Sequence[str]) -> int | None:
    """Run ``argv`` as a sub-command if its first word names one (else None).

    A path that happens to be called ``plan`` still works: ``annogate ./plan``.
    """
    if not argv or argv[0] not in SUBCOMMANDS:
        return None
    return SUBCOMMANDS[argv[0]](argv[1:])
