"""Reports of a session: terminal text, JSON audit log, GitHub output, rework list.

Every report is a pure function of a list of :class:`BatchOutcome` (one per batch,
whatever order the runner produced them in), so the pytest plugin only collects
outcomes and calls these; the same functions serve pre-commit and scripts. Only
``write_*`` functions touch the file system, and they write atomically.

The submodules refer to :class:`BatchOutcome` only in annotations (imported under
``TYPE_CHECKING``), so importing them before it is defined here is safe.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from annogate.cost import CostEstimate
from annogate.findings import Finding, GateResult
from annogate.report.audit import build_report, write_report
from annogate.report.github import (
    append_step_summary,
    escape_data,
    escape_property,
    step_summary,
    workflow_commands,
)
from annogate.report.rework import rework_items, rework_json, write_rework
from annogate.report.terminal import cost_lines, failure_lines, gate_failure_lines, summary_lines

__all__ = [
    "BatchOutcome",
    "BatchVerdict",
    "append_step_summary",
    "build_report",
    "cost_lines",
    "escape_data",
    "escape_property",
    "failure_lines",
    "gate_failure_lines",
    "rework_items",
    "rework_json",
    "step_summary",
    "summary_lines",
    "workflow_commands",
    "write_report",
    "write_rework",
]

BatchVerdict = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    """Everything the session concluded about one batch (one input file or folder)."""

    path: str
    sha256: str
    format: str
    n_annotations: int
    gates: list[GateResult] = field(default_factory=list)
    cost: CostEstimate | None = None
    # The rules file that judged this batch (None: built-in defaults) and the SHA-256
    # of what was applied (the file plus its packs): batches of one session may be
    # judged by different rules (nested annogate.toml files), and the audit report
    # records each of them.
    rules_path: str | None = None
    rules_sha256: str = ""

    @property
    def verdict(self) -> BatchVerdict:
        """Failed if any gate failed; skipped if every gate was skipped (or none ran)."""
        if any(g.verdict == "failed" for g in self.gates):
            return "failed"
        if all(g.verdict == "skipped" for g in self.gates):
            return "skipped"
        return "passed"

    def findings(self, *, include_warnings: bool = True) -> list[Finding]:
        """All findings of all gates, in gate order then the gate's own order."""
        return [f for g in self.gates for f in g.findings if include_warnings or f.severity == "error"]

    def defects_by_gate(self) -> dict[str, int]:
        """Error-level findings per gate (gates without any are left out), in gate order."""
        c: Counter[str] = Counter()
        for g in self.gates:
            # counted on every finding, kept or not (gates keep at most max_findings_per_rule)
            error_rules = {f.rule for f in g.findings if f.severity == "error"}
            counts = g.counts_by_rule()
            n = sum(counts.get(r, 0) for r in error_rules)
            if n:
                c[g.gate] += n
        return dict(c)
