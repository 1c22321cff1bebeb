"""From gate results to outcomes and artifacts, for any runner (pytest or not).

The pytest adapter ships each item's result as a JSON payload (so xdist workers
and the single-process run take the same path) and calls these functions on the
controller: the same inputs give the same outcomes, reports and rework lists
whether or not the session ran on several workers.
"""

from __future__ import annotations

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
        }

    def item_payload(self, gate: str) -> dict[str, Any]:
        return {"batch": self.batch_facts(), "result": self.gates[gate].to_dict()}

    def outcome(self) -> BatchOutcome:
        """The batch's outcome from the gates run so far (cost included)."""
        return _outcome(self.batch_facts(), [self.gates[g] for g in self.order if g in self.gates], self.cost_rules)


def _outcome(facts: Mapping[str, Any], results: list[GateResult], cost_rules: Mapping[str, Any]) -> BatchOutcome:
    comp = {(c, t): int(n) for c, t, n in facts.get("composition", [])}
    n = int(facts["n_annotations"])
    loaded = bool(facts.get("sha256"))
    cost = estimate_cost(n_labels=n, results=results, params=cost_rules, composition=comp or None) if loaded else None
    return BatchOutcome(
        path=str(facts["path"]),
        sha256=str(facts["sha256"]),
        format=str(facts["format"]),
        n_annotations=n,
        gates=results,
        cost=cost,
    )


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
        cost_rules = engine.rules_for(Path(path)).section("cost")
        out.append(_outcome(items[0]["batch"], results, cost_rules))
    return out


def write_artifacts(
    outcomes: Sequence[BatchOutcome],
    *,
    engine: Engine,
    report_path: str | None,
    rework_path: str | None,
    github: bool,
    step_summary: str | None = None,
) -> list[str]:
    """Write the audit report, rework list and GitHub surfaces; return lines to print."""
    import os

    from annogate import __version__
    from annogate.report import append_step_summary, build_report, workflow_commands, write_report, write_rework
    from annogate.report import step_summary as md_summary

    lines: list[str] = []
    if report_path:
        rules_list = sorted({str(r.path) if r.path else "" for r in (engine.rules_for(Path(o.path)) for o in outcomes)})
        first = engine.rules_for(Path(outcomes[0].path)) if outcomes else None
        report = build_report(
            outcomes,
            rules=dict(first.data) if first else {},
            rules_path=str(first.path) if first and first.path else None,
            rules_sha256=first.sha256 if first else "",
            version=__version__,
        )
        write_report(report_path, report)
        lines.append(
            f"annogate: audit report written to {report_path}"
            + (f" (rules: {', '.join(r for r in rules_list if r)})" if any(rules_list) else "")
        )
    if rework_path:
        write_rework(rework_path, outcomes)
        lines.append(f"annogate: rework list written to {rework_path}")
    if github:
        for cmd in workflow_commands(outcomes, root=os.getcwd()):
            print(cmd)
        target = step_summary or os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            append_step_summary(md_summary(outcomes), target)
    return lines
