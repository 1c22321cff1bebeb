"""GitHub Actions output: workflow-command annotations and the job summary.

Why: on a dataset pull request the reviewer should see each wrong label on the
changed file itself (an annotation at its line) and the verdict and cost in the
job summary, without opening logs. Annotations are printed to stdout as workflow
commands; the summary is markdown appended to ``$GITHUB_STEP_SUMMARY``.

GitHub shows at most 10 error and 10 warning annotations per step (50 per job),
so only the first ``max_per_file`` findings of each file become annotations; the
rest are in the audit report and the rework list.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from annogate.findings import Finding
from annogate.report.terminal import clean, format_money, format_number

if TYPE_CHECKING:
    from annogate.report import BatchOutcome

__all__ = [
    "annotation_command",
    "append_step_summary",
    "escape_data",
    "escape_property",
    "step_summary",
    "workflow_commands",
]


_CRLF = "\r\n"  # encoded by escape_data itself


def escape_data(text: str) -> str:
    """Escape a command's message as the Actions runner unescapes it (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property (file, title): as data, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation_command(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    title: str | None = None,
) -> str:
    """``::error file=…,line=…,title=…::message`` with every part escaped.

    Control characters (ANSI escapes, CR, bidi overrides) in names and messages
    come from label files; they are shown escaped (``\\x1b``), never passed to the
    log raw, where they could rewrite what the reviewer sees.
    """
    props = []
    if file:
        props.append(f"file={escape_property(clean(file, keep=_CRLF))}")
    if line:
        props.append(f"line={int(line)}")
    if title:
        props.append(f"title={escape_property(clean(title, keep=_CRLF))}")
    head = f"::{level}"
    if props:
        head += " " + ",".join(props)
    return f"{head}::{escape_data(clean(message, keep=_CRLF))}"


def _rel(path: str, root: Path | None) -> str:
    """Path relative to the repository root when inside it (annotations need repo paths)."""
    if root is None:
        return path
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def workflow_commands(
    outcomes: Sequence[BatchOutcome],
    *,
    max_per_file: int = 10,
    root: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Annotations for the first ``max_per_file`` findings of each file, batches by path.

    Error findings become ``::error``, warnings ``::warning``. A failed check that
    is not tied to a row (precision below its limit, a per-class limit) is
    annotated on the batch file; a file with more findings than annotated gets one ``::notice`` saying
    how many more there are.
    """
    base = Path(root) if root is not None else None
    out: list[str] = []
    for o in sorted(outcomes, key=lambda o: o.path):
        batch_file = _rel(o.path, base)
        for g in o.gates:
            # Count/rate limits of an error type whose findings are annotated line by
            # line would only repeat them (and use up GitHub's per-step quota).
            annotated = {f"{rule}.{kind}" for rule in g.counts_by_rule() for kind in ("count", "rate")}
            for c in g.failed_checks:
                if c.scope == "overall" and c.metric in annotated:
                    continue
                msg = f"{c.metric} ({c.scope}) = {format_number(c.value)}, limit {c.op} {format_number(c.limit)}"
                out.append(
                    annotation_command("error", msg, file=batch_file, title=f"annogate {g.gate}: threshold missed")
                )
        per_file: dict[str, list[Finding]] = {}
        for f in o.findings():
            per_file.setdefault(f.file, []).append(f)
        for file in sorted(per_file):
            fs = per_file[file]
            rel = _rel(file, base)
            for f in fs[:max_per_file]:
                level = "error" if f.severity == "error" else "warning"
                ident = f" [id {f.annotation_id}]" if f.annotation_id is not None else ""
                out.append(
                    annotation_command(
                        level, f"{f.message}{ident}", file=rel, line=f.line, title=f"annogate {f.gate}: {f.rule}"
                    )
                )
            if len(fs) > max_per_file:
                rest = len(fs) - max_per_file
                out.append(
                    annotation_command(
                        "notice",
                        f"{rest} more findings in this file: see the audit report and rework list",
                        file=rel,
                        title="annogate",
                    )
                )
    return out


def _md(text: str) -> str:
    """A markdown table cell: pipes escaped, line breaks flattened."""
    return clean(text.replace("\r", " ").replace("\n", " ")).replace("\\", "\\\\").replace("|", "\\|")


def step_summary(outcomes: Sequence[BatchOutcome], *, top: int = 10) -> str:
    """Markdown for the job summary: verdicts, cost table per batch, the top defect types."""
    items = sorted(outcomes, key=lambda o: o.path)
    n_failed = sum(1 for o in items if o.verdict == "failed")
    icon = {"passed": "✅", "failed": "❌", "skipped": "⏭️"}
    lines = [
        "## annogate",
        "",
        f"**{n_failed} of {len(items)} batches failed.**" if n_failed else f"**All {len(items)} batches passed.**",
        "",
        "| batch | verdict | annotations | defects by gate | expected rework | overhead |",
        "|---|---|---:|---|---:|---:|",
    ]
    for o in items:
        defects = ", ".join(f"{g} {n:,}" for g, n in o.defects_by_gate().items()) or "–"
        rework = f"{format_money(o.cost.rework)} {o.cost.currency}" if o.cost else "–"
        over = f"{o.cost.overhead_ratio:.1%}" if o.cost and o.cost.overhead_ratio is not None else "–"
        lines.append(
            f"| `{_md(o.path)}` | {icon[o.verdict]} {o.verdict} | {o.n_annotations:,} | {_md(defects)} | {rework} | {over} |"
        )

    for o in items:
        e = o.cost
        if e is None:
            continue
        sh = e.shares
        lines += [
            "",
            f"### Cost of `{_md(o.path)}` ({e.currency}, {e.n_labels:,} labels)",
            "",
            "| category | amount | share |",
            "|---|---:|---:|",
            f"| direct | {format_money(e.direct)} | {sh['direct']:.1%} |",
            f"| QA review | {format_money(e.qa)} | {sh['qa']:.1%} |",
            f"| rework | {format_money(e.rework)} | {sh['rework']:.1%} |",
            f"| downstream | {format_money(e.downstream)} | {sh['downstream']:.1%} |",
            f"| **total** | **{format_money(e.total)}** | 100% |",
            "",
        ]
        if e.overhead_ratio is not None:
            lines.append(f"Overhead (QA + rework + downstream) / direct: **{e.overhead_ratio:.1%}**.")
        if e.golden_sample:
            lines.append(
                f"Rework between {format_money(e.low.rework)} and {format_money(e.high.rework)} "
                f"at {e.confidence:.0%} confidence ({e.golden_defects}/{e.golden_sample} defects on the golden set)."
            )

    counts: Counter[tuple[str, str]] = Counter()
    for o in items:
        for f in o.findings(include_warnings=False):
            counts[(f.gate, f.rule)] += 1
    if counts:
        lines += ["", "### Top defects", "", "| gate | error type | count |", "|---|---|---:|"]
        for (gate, rule), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
            lines.append(f"| {_md(gate)} | {_md(rule)} | {n:,} |")
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str, path: str | os.PathLike[str] | None = None) -> bool:
    """Append to ``path`` or ``$GITHUB_STEP_SUMMARY``; False (nothing written) outside Actions."""
    target = path if path is not None else os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown)
    return True
