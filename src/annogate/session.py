"""From gate results to outcomes and artifacts, for any runner (pytest or not).

The pytest adapter ships each item's result as a JSON payload (so xdist workers
and the single-process run take the same path) and calls these functions on the
controller: the same inputs give the same outcomes, reports and rework lists
whether or not the session ran on several workers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annogate.cost import composition_from_batch, estimate_cost
from annogate.findings import GateResult
from annogate.model import Batch
from annogate.report import BatchOutcome

if TYPE_CHECKING:
    from annogate.engine import Engine

__all__ = ["BatchRun", "outcomes_from_payloads", "write_artifacts"]


@dataclass(kw_only=True)
class BatchRun:
    """The gates run so far on one batch in this process, with the batch's facts."""

    path: Path
    sha256: str
    format: str
    n_annotations: int
    n_images: int
    composition: list[tuple[str | None, str, int]]
    cost_rules: Mapping[str, Any]
    order: Sequence[str]
    gates: dict[str, GateResult] = field(default_factory=dict)

    @classmethod
    def of(cls, path: Path, batch: Batch | None, *, cost_rules: Mapping[str, Any], order: Sequence[str]) -> BatchRun:
        comp = [(c, t, n) for (c, t), n in composition_from_batch(batch).items()] if batch is not None else []
        return cls(
            path=path,
            sha256=batch.sha256 if batch is not None else "",
            format=batch.format if batch is not None else "unknown",
            n_annotations=len(batch.annotations) if batch is not None else 0,
            n_images=len(batch.images) if batch is not None else 0,
            composition=comp,
            cost_rules=cost_rules,
            order=order,
        )

    def batch_facts(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "format": self.format,
            "n_annotations": self.n_annotations,
            "n_images": self.n_images,
            "composition": [list(x) for x in self.composition],
            # cohorts derived from the batch (rules' cohort_field) travel with it, so the
            # controller prices by cohort under xdist exactly as in one process
            "cohorts": dict(self.cost_rules.get("cohorts") or {}),
        }

    def item_payload(self, gate: str) -> dict[str, Any]:
        return {"batch": self.batch_facts(), "result": self.gates[gate].to_dict()}

    def outcome(self) -> BatchOutcome:
        """The batch's outcome from the gates run so far (cost included)."""
        return _outcome(
            self.batch_facts(),
            [self.gates[g] for g in self.order if g in self.gates],
            self.cost_rules,
            order=self.order,
        )


def _outcome(
    facts: Mapping[str, Any],
    results: list[GateResult],
    cost_rules: Mapping[str, Any],
    *,
    order: Sequence[str] = (),
    rules_path: str | None = None,
    rules_sha256: str = "",
) -> BatchOutcome:
    comp = {(c, t): int(n) for c, t, n in facts.get("composition", [])}
    n = int(facts["n_annotations"])
    loaded = bool(facts.get("sha256"))
    ran = {r.gate for r in results}
    # a gate deselected (-k) or on another shard leaves the estimate partial: say which
    not_run = [g for g in order if g not in ran and g != "baseline"]
    cost = (
        estimate_cost(n_labels=n, results=results, params=cost_rules, composition=comp or None, not_run=not_run)
        if loaded
        else None
    )
    return BatchOutcome(
        path=str(facts["path"]),
        sha256=str(facts["sha256"]),
        format=str(facts["format"]),
        n_annotations=n,
        gates=results,
        cost=cost,
        rules_path=rules_path,
        rules_sha256=rules_sha256,
    )


def _shown(path: Path | None) -> str | None:
    """A rules path as the report shows it: relative to the working directory when below it."""
    if path is None:
        return None
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def outcomes_from_payloads(payloads: Sequence[Mapping[str, Any]], *, engine: Engine) -> list[BatchOutcome]:
    """Group item payloads by batch, order gates as the engine does, estimate costs."""
    by_batch: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for p in payloads:
        by_batch[p["batch"]["path"]].append(p)
    order = {g.name: k for k, g in enumerate(engine.gates)}
    out: list[BatchOutcome] = []
    for path in sorted(by_batch):
        items = sorted(by_batch[path], key=lambda p: order.get(p["result"]["gate"], 999))
        results = [GateResult.from_dict(p["result"]) for p in items]
        rules = engine.rules_for(Path(path))
        # An item that failed outside its gate ships only the path: take the batch's
        # facts from an item that read it.
        facts = next((p["batch"] for p in items if p["batch"].get("sha256")), items[0]["batch"])
        out.append(
            _outcome(
                facts,
                results,
                {**rules.section("cost"), **({"cohorts": facts["cohorts"]} if facts.get("cohorts") else {})},
                order=[g.name for g in engine.gates],
                rules_path=_shown(rules.path),
                rules_sha256=rules.sha256,
            )
        )
    return out


def write_artifacts(
    outcomes: Sequence[BatchOutcome],
    *,
    engine: Engine,
    report_path: str | os.PathLike[str] | None,
    rework_path: str | os.PathLike[str] | None,
    github: bool,
    step_summary: str | None = None,
    exit_status: int | None = None,
    shown: Mapping[str, str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
    history_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Write the audit report, rework list and GitHub surfaces; return lines to print.

    Nothing is printed here: the returned lines (messages, then GitHub workflow
    commands) go through the runner's own output (pytest's terminal writer), so
    capture, ``-q`` and xdist behave. ``exit_status`` is the runner's, recorded in
    the report (see :func:`annogate.report.audit.build_report`); ``shown`` maps a
    path written to the text the user gave for it, for the messages.
    """
    from annogate import __version__
    from annogate.report import append_step_summary, build_report, workflow_commands, write_report, write_rework
    from annogate.report import step_summary as md_summary
    from annogate.report.terminal import clean

    def name(p: str | os.PathLike[str]) -> str:
        return clean((shown or {}).get(os.fspath(p), os.fspath(p)))

    lines: list[str] = []
    rules_list = sorted({o.rules_path for o in outcomes if o.rules_path})
    report: dict[str, Any] | None = None
    if report_path or html_path or history_dir:
        first = engine.rules_for(Path(outcomes[0].path)) if outcomes else None
        report = build_report(
            outcomes,
            rules=dict(first.data) if first else {},
            rules_path=_shown(first.path) if first else None,
            rules_sha256=first.sha256 if first else "",
            version=__version__,
            exit_status=exit_status,
        )
    if report_path and report is not None:
        write_report(report_path, report)
        lines.append(
            f"annogate: audit report written to {name(report_path)}"
            + (f" (rules: {clean(', '.join(rules_list))})" if rules_list else "")
        )
    if rework_path:
        write_rework(rework_path, outcomes)
        lines.append(f"annogate: rework list written to {name(rework_path)}")
    if html_path and report is not None:
        from annogate.report.html import write_html

        write_html(html_path, report, load_batch=engine.load_for_report, images_root=engine.images_root(outcomes))
        lines.append(f"annogate: HTML report written to {name(html_path)}")
    if history_dir and report is not None:
        from annogate.history import append_history, entries_from_report

        appended = append_history(history_dir, entries_from_report(report))
        lines.append(f"annogate: history appended to {name(appended)}")
    if github:
        lines.extend(workflow_commands(outcomes, root=os.getcwd()))
        target = step_summary or os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            append_step_summary(md_summary(outcomes), target)
    return lines
