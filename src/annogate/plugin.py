"""The pytest adapter: collect batches as File nodes, one Item per gate, and report.

Thin on purpose: everything that decides anything lives in the engine and the
gates. This module maps batches to pytest nodes, gate verdicts to pass/fail/skip,
and results to pytest's own reporting channels (terminal, junitxml properties,
xdist report transport). Without ``--annogate`` it does nothing at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from annogate.engine import Engine
from annogate.findings import GateResult
from annogate.rules import RulesError

__all__ = ["BatchFile", "GateItem"]

_RESULT_KEY = "annogate_result"
_ENGINE_KEY = pytest.StashKey[Engine]()
_COLLECTOR_KEY = pytest.StashKey["Collector"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("annogate", "label-batch quality gates")
    group.addoption(
        "--annogate",
        action="store_true",
        default=False,
        help="collect label batches (COCO, ...) under the given paths as test items, one per gate",
    )
    group.addoption(
        "--annogate-rules",
        metavar="PATH",
        default=None,
        help="rules file to use for every batch (default: nearest annogate.toml or pyproject.toml [tool.annogate])",
    )
    group.addoption("--annogate-report", metavar="PATH", default=None, help="write the JSON audit report here")
    group.addoption(
        "--annogate-rework", metavar="PATH", default=None, help="write the rework list here (.csv or .json)"
    )
    group.addoption(
        "--annogate-max-findings",
        metavar="N",
        type=int,
        default=None,
        help="offending annotations listed per failing gate (default 10, 50 with -v)",
    )


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("annogate", default=False))


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    rules = config.getoption("annogate_rules")
    try:
        config.stash[_ENGINE_KEY] = Engine(rules_path=Path(rules) if rules else None)
    except RulesError as e:
        raise pytest.UsageError(f"annogate: {e}") from None
    if not hasattr(config, "workerinput"):  # aggregate on the controller only (xdist)
        collector = Collector(config)
        config.stash[_COLLECTOR_KEY] = collector
        config.pluginmanager.register(collector, "annogate-collector")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read the rules above each path argument now: a bad key is a usage error up front."""
    if not _enabled(session.config):
        return
    engine = session.config.stash[_ENGINE_KEY]
    for arg in session.config.args:
        p = Path(arg.split("::")[0])
        if p.exists():
            try:
                engine.rules_for(p if p.is_dir() else p.parent)
            except RulesError as e:
                raise pytest.UsageError(f"annogate: {e}") from None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    config = parent.config
    if not _enabled(config):
        return None
    engine = config.stash[_ENGINE_KEY]
    try:
        fmt = engine.is_batch(file_path)
    except RulesError as e:
        bad: RulesErrorFile = RulesErrorFile.from_parent(parent, path=file_path)
        bad.error = str(e)
        return bad
    if fmt is None:
        return None
    node: BatchFile = BatchFile.from_parent(parent, path=file_path)
    return node


class RulesErrorFile(pytest.File):
    """A batch whose (nested) rules file is invalid: one clean collection error."""

    error = ""

    def collect(self) -> Iterator[pytest.Item]:
        raise self.CollectError(f"annogate: {self.error}")


class BatchFile(pytest.File):
    """One label batch; its children are the gates, in gate order."""

    def collect(self) -> Iterator[GateItem]:
        engine = self.config.stash[_ENGINE_KEY]
        for gate in engine.gates:
            yield GateItem.from_parent(self, name=gate.name, gate=gate.name)

    def selected_gates(self) -> list[str]:
        """Gates of this batch that survived -k/--lf/deselection in this process."""
        return [i.gate for i in self.session.items if isinstance(i, GateItem) and i.parent is self]


class GateFailed(Exception):
    """Raised by a failing gate item; carries the result for ``repr_failure``."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.gate)
        self.result = result


class GateItem(pytest.Item):
    """``batch.json::geometry``: runs one gate; fails on a failed threshold."""

    def __init__(self, *, gate: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = gate
        self.result: GateResult | None = None

    def runtest(self) -> None:
        engine = self.config.stash[_ENGINE_KEY]
        parent = self.parent
        assert isinstance(parent, BatchFile)
        outcome = engine.run_batch(self.path, parent.selected_gates() or [self.gate])
        result = outcome.gates[self.gate]
        self.result = result
        self.outcome = outcome
        self.user_properties.extend(_key_figures(result))
        self.user_properties.append((_RESULT_KEY, json.dumps(outcome.item_payload(self.gate), separators=(",", ":"))))
        if result.verdict == "skipped":
            # report the skip at the batch, not at this line of the plugin
            raise pytest.skip.Exception(result.reason or "nothing to check", _use_item_location=True)
        if result.verdict == "failed":
            raise GateFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, GateFailed):
            from annogate.report.terminal import failure_lines

            verbose = self.config.get_verbosity()
            limit = self.config.getoption("annogate_max_findings") or (50 if verbose > 0 else 10)
            return "\n".join(
                failure_lines(self.outcome.outcome(), excinfo.value.result, max_findings=limit, verbose=verbose)
            )
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.nodeid


def _key_figures(result: GateResult) -> list[tuple[str, object]]:
    """Small, flat figures for junitxml properties."""
    props: list[tuple[str, object]] = [
        ("annogate.verdict", result.verdict),
        ("annogate.findings", len(result.findings)),
        ("annogate.failed_checks", len(result.failed_checks)),
    ]
    for c in result.checks:
        if not c.passed:
            props.append((f"annogate.{c.metric}[{c.scope}]", f"{c.value:.6g} (limit {c.op} {c.limit:.6g})"))
    return props


class Collector:
    """Session-level aggregation, on the controller when running under xdist.

    Each item ships its gate result (and the batch facts) as a JSON user property;
    this plugin picks it up from every report, removes it before junitxml sees it,
    and at the end writes the terminal summary, the audit report, the rework list
    and the CI surfaces from the same data, so they are identical with and without
    ``-n``.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.payloads: dict[tuple[str, str], dict[str, Any]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        keep = []
        for name, value in report.user_properties:
            if name == _RESULT_KEY:
                data = json.loads(str(value))
                self.payloads[(data["batch"]["path"], data["result"]["gate"])] = data
            else:
                keep.append((name, value))
        report.user_properties = keep

    def outcomes(self) -> list[Any]:
        from annogate.session import outcomes_from_payloads

        return outcomes_from_payloads(list(self.payloads.values()), engine=self.config.stash[_ENGINE_KEY])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.payloads:
            return
        from annogate.report.terminal import summary_lines

        outcomes = self.outcomes()
        terminalreporter.section("annogate")
        for line in summary_lines(outcomes):
            terminalreporter.write_line(line)
        self._write_artifacts(outcomes, terminalreporter)

    def _write_artifacts(self, outcomes: list[Any], tr: Any) -> None:
        from annogate.session import write_artifacts

        for line in write_artifacts(
            outcomes,
            engine=self.config.stash[_ENGINE_KEY],
            report_path=self.config.getoption("annogate_report"),
            rework_path=self.config.getoption("annogate_rework"),
            github=os.environ.get("GITHUB_ACTIONS") == "true",
        ):
            tr.write_line(line)
