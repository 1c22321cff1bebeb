"""The pytest adapter: collect batches as File nodes, one Item per gate, and report.

Thin on purpose: everything that decides anything lives in the engine and the
gates. This module maps batches to pytest nodes, gate verdicts to pass/fail/skip,
and results to pytest's own reporting channels (terminal, junitxml properties,
xdist report transport). Without ``--annogate`` it does nothing at all.

Why only pytest and the standard library are imported at module level: pytest
loads this module (an entry point) in every session of every project where
annogate is installed. The engine, NumPy, jsonschema, orjson and shapely load
in ``pytest_configure`` and only when ``--annogate`` is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from annogate.engine import Engine
    from annogate.findings import GateResult
    from annogate.report import BatchOutcome

__all__ = ["BatchFile", "GateItem", "LabelDir"]

_RESULT_KEY = "annogate_result"
_ENGINE_KEY = pytest.StashKey["Engine"]()
_COLLECTOR_KEY = pytest.StashKey["Collector"]()
_SEEN_KEY = pytest.StashKey[dict[tuple[str, str], Path]]()
_ARGS_KEY = pytest.StashKey[set[Path]]()

#: Output options checked before any gate runs: (dest, flag, allowed suffixes).
#: Options that are not registered (a future ``--annogate-html``) are skipped.
_OUTPUTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("annogate_report", "--annogate-report", ()),
    ("annogate_rework", "--annogate-rework", (".csv", ".json")),
    ("annogate_html", "--annogate-html", (".html", ".htm")),
    ("xmlpath", "--junitxml", ()),
)
_REAL_OUTPUTS = pytest.StashKey[dict[str, Path]]()
_HISTORY_KEY = pytest.StashKey["Path | None"]()
_SHARD_KEY = pytest.StashKey["tuple[int, int] | None"]()


def _shard(config: pytest.Config) -> tuple[int, int] | None:
    """``--annogate-shard K/N`` as (K, N), 1 <= K <= N; a usage error otherwise."""
    text = config.getoption("annogate_shard", default=None)
    if not text:
        return None
    k, sep, n = str(text).partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= 100_000):
        raise pytest.UsageError(f"annogate: --annogate-shard {text}: expected K/N with 1 <= K <= N (e.g. 2/4)")
    return int(k), int(n)


def shard_of(path: str, n: int) -> int:
    """The shard (1..n) a batch belongs to: a hash of its path as reports show it, so every
    CI job, whatever its machine, splits the batches the same way."""
    import hashlib

    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


class TerminalProgress:
    """The one-line ``annogate: reading <batch> 45% (200 of 440 MiB)`` of a long load.

    Silent for the first ``delay`` seconds of a load (most batches load faster and a
    flicker helps nobody), then rewrites one line at most every ``interval`` seconds,
    and on ``end`` blanks it and puts back what the line held before (pytest's
    ``path .`` prefix), so the report around it is unchanged. The load runs inside a
    test item, while pytest captures output, so writes go through
    ``capture`` (the capture manager's ``global_and_fixture_disabled``, as live
    logging does). ``clock`` is injectable for tests; the adapter installs this only
    on a terminal, without ``-q``, and not on xdist workers.
    """

    def __init__(
        self,
        *,
        tw: Any,
        capture: Any = None,
        root: Path | None = None,
        clock: Any = None,
        delay: float = 2.0,
        interval: float = 0.2,
    ) -> None:
        import time

        self.tw = tw
        self.capture = capture
        self.root = root
        self.clock = clock if clock is not None else time.monotonic
        self.delay = delay
        self.interval = interval
        self._start = 0.0
        self._last = float("-inf")
        self._name = ""
        self._shown = 0  # width of the line drawn, 0: nothing drawn
        self._prefix = ""

    def begin(self, path: Path) -> Any:
        self._start = self.clock()
        self._last = float("-inf")
        self._shown = 0
        name = str(path)
        if self.root is not None:
            try:
                name = os.path.relpath(path, self.root)
            except ValueError:  # another drive (Windows)
                pass
        self._name = name
        return self.update

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self._start < self.delay or (now - self._last < self.interval and done < total):
            return
        self._last = now
        mib = 1 << 20
        pct = int(100 * done / total) if total > 0 else 100
        line = f"annogate: reading {self._name} {pct}% ({done // mib} of {total // mib} MiB)"
        width = max(int(getattr(self.tw, "fullwidth", 80)) - 1, 20)
        if len(line) > width:
            line = line[: width - 3] + "..."
        if not self._shown:
            # pytest's own text on this line (the raw characters it wrote, no markup)
            self._prefix = str(getattr(self.tw, "_current_line", ""))
        self._write("\r" + line.ljust(self._shown))
        self._shown = max(self._shown, len(line))

    def end(self, path: Path) -> None:
        if self._shown:
            self._write("\r" + " " * self._shown + "\r" + self._prefix)
            self._shown = 0

    def _write(self, text: str) -> None:
        # write_raw: pytest's idea of the current line (used to align "[ 50%]") stays its own
        if self.capture is not None:
            with self.capture.global_and_fixture_disabled():
                self.tw.write_raw(text, flush=True)
        else:
            self.tw.write_raw(text, flush=True)


def _install_progress(config: pytest.Config, engine: Engine) -> None:
    """Show long loads on a real terminal only: not under -q, not on xdist workers
    (their output never reaches the terminal), never when output is a pipe or file."""
    if hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    tw = getattr(reporter, "_tw", None)
    out = getattr(tw, "_file", None)  # the stream pytest reports to; --color=yes on a pipe is still a pipe
    isatty = getattr(out, "isatty", None)
    if tw is None or isatty is None or not isatty():
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    engine.progress = TerminalProgress(tw=tw, capture=capture, root=Path(config.invocation_params.dir))


def _baseline(config: pytest.Config) -> Any:
    """The baseline report and margins of ``--annogate-compare(-fail)``, checked now."""
    path = config.getoption("annogate_compare", default=None)
    margins_text = config.getoption("annogate_compare_fail", default=None) or []
    if not path:
        if margins_text:
            raise pytest.UsageError("annogate: --annogate-compare-fail needs --annogate-compare BASELINE.json")
        return None
    from annogate.engine import Baseline
    from annogate.history import parse_margin

    margins = []
    for text in margins_text:
        for part in str(text).split(","):
            if not part.strip():
                continue
            try:
                margins.append(parse_margin(part))
            except ValueError as e:
                hint = " (put the paths to gate before --annogate-compare-fail)" if Path(part).exists() else ""
                raise pytest.UsageError(f"annogate: {e}{hint}") from None
    p = Path(path)
    try:
        if not p.is_file():
            raise OSError("not a regular file")
        if p.stat().st_size > 512 << 20:
            raise OSError("larger than 512 MiB")
        data = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise pytest.UsageError(f"annogate: --annogate-compare {path}: {e}") from None
    if not (isinstance(data, dict) and str(data.get("report_format", "")).startswith("annogate-report/")):
        raise pytest.UsageError(f"annogate: --annogate-compare {path}: not an annogate audit report")
    return Baseline(report=data, margins=tuple(margins), path=str(path))


def _check_history(config: pytest.Config) -> Path | None:
    """``--annogate-history DIR``: a folder outside every folder being gated (history is
    never written among the labels), not a file, whose history.jsonl is a regular file."""
    value = config.getoption("annogate_history", default=None)
    if not value:
        return None
    from annogate.report.outputs import below

    d = Path(os.path.abspath(str(value)))
    where = f"--annogate-history {value}"
    if d.exists() and not d.is_dir():
        raise pytest.UsageError(f"annogate: {where}: is not a folder")
    parent = d if d.exists() else d.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise pytest.UsageError(f"annogate: {where}: folder {parent} is missing or not writable")
    real = Path(os.path.realpath(d))
    for a in _arg_paths(config):
        folder = a if a.is_dir() else a.parent
        if below(real, folder) or below(d, folder):
            raise pytest.UsageError(f"annogate: {where}: is inside {folder}, which is being gated")
    target = d / "history.jsonl"
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise pytest.UsageError(f"annogate: {where}: {target.name} is not a regular file")
    return d


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
    group.addoption(
        "--annogate-report",
        metavar="PATH",
        default=None,
        help="write the JSON audit report here (refused if it is an input, a folder or a special file)",
    )
    group.addoption(
        "--annogate-rework", metavar="PATH", default=None, help="write the rework list here (.csv or .json)"
    )
    group.addoption(
        "--annogate-html",
        metavar="PATH",
        default=None,
        help="write a self-contained HTML report here (charts, cost waterfall, thumbnails; no network)",
    )
    group.addoption(
        "--annogate-history",
        metavar="DIR",
        default=None,
        help="append each batch's audit summary to DIR/history.jsonl (see `annogate trend DIR`); "
        "refused inside the label folders",
    )
    group.addoption(
        "--annogate-compare",
        metavar="BASELINE",
        default=None,
        help="an earlier audit report: each batch gets a ::baseline item comparing it with the same batch there",
    )
    group.addoption(
        "--annogate-compare-fail",
        metavar="MARGIN",
        nargs="+",
        action="extend",
        default=None,
        help="fail ::baseline when a metric regresses beyond a margin: golden.recall:-2%% (relative), "
        "defect_rate:+1pt (percentage points), gate.metric[scope]:+0.005 (absolute)",
    )
    group.addoption(
        "--annogate-shard",
        metavar="K/N",
        default=None,
        help="gate only shard K of N (batches split deterministically by path), for CI matrix jobs; "
        "`annogate merge` joins the shards' reports",
    )
    group.addoption(
        "--annogate-allow-empty",
        action="store_true",
        default=False,
        help="exit 0 when the given paths hold no label batch (the pre-commit hook: a commit staging only "
        "package.json is fine); without it, no batches is exit 5 with a message naming the paths",
    )
    group.addoption(
        "--annogate-max-findings",
        metavar="N",
        type=int,
        default=None,
        help="offending annotations listed per failing gate (default 10, 50 with -v, all with -vv; N >= 0)",
    )


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("annogate", default=False))


def _arg_paths(config: pytest.Config) -> list[Path]:
    """The paths the session was asked to collect, absolute, ``::node`` parts dropped."""
    base = config.invocation_params.dir
    return [Path(os.path.abspath(base / str(a).split("::")[0])) for a in config.args]


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    n = config.getoption("annogate_max_findings")
    if n is not None and n < 0:
        raise pytest.UsageError(f"--annogate-max-findings {n}: must be 0 or more")
    from annogate.engine import Engine
    from annogate.rules import RulesError

    shard = _shard(config)
    baseline = _baseline(config)
    rules = config.getoption("annogate_rules")
    try:
        engine = Engine(rules_path=Path(rules) if rules else None, baseline=baseline)
    except RulesError as e:
        raise pytest.UsageError(f"annogate: {e}") from None
    config.stash[_SHARD_KEY] = shard
    if getattr(config.option, "dist", "no") == "load":
        # pytest-xdist's default spreads one batch's gate items over workers: each would
        # load the batch and run its gates again (a failing item shows the batch's cost).
        # One batch per worker instead: the same results, each batch read once.
        config.option.dist = "loadfile"
    config.stash[_ENGINE_KEY] = engine
    config.stash[_SEEN_KEY] = {}
    config.stash[_ARGS_KEY] = {p for p in _arg_paths(config) if not p.is_dir()}
    if not hasattr(config, "workerinput"):  # aggregate and write on the controller only (xdist)
        config.stash[_REAL_OUTPUTS] = _check_outputs(config, engine)
        config.stash[_HISTORY_KEY] = _check_history(config)
        collector = Collector(config)
        config.stash[_COLLECTOR_KEY] = collector
        config.pluginmanager.register(collector, "annogate-collector")


def _check_outputs(config: pytest.Config, engine: Engine) -> dict[str, Path]:
    """Refuse output targets that are folders, special files, unwritable or inputs.

    Inputs are: files named on the command line, label batches below a folder named
    there, golden files and rules files (compared by resolved path and inode).
    """
    from annogate.report.outputs import OutputError, below, check_output, same_file
    from annogate.rules import RulesError

    args = _arg_paths(config)
    inputs: list[tuple[Path, str]] = []
    if engine.rules_path is not None:
        inputs.append((engine.rules_path, "the --annogate-rules file"))

    def rules_inputs(p: Path) -> list[tuple[Path, str]]:
        try:
            r = engine.rules_for(p)
        except RulesError:
            return []  # reported as a usage error at session start
        found = [(r.path, "a rules file"), (r.golden_file(), "a golden file")]
        return [(path, what) for path, what in found if path is not None]

    for a in args:
        if a.exists():
            if a.is_file():
                inputs.append((a, "a file given on the command line"))
            inputs.extend(rules_inputs(a))

    def is_input(target: Path) -> str | None:
        """Inputs found from the target itself: the rules and golden file in force
        where it lies, and any batch below a folder given on the command line."""
        for path, what in rules_inputs(target):
            if same_file(target, path):
                return what
        for a in args:
            if a.is_dir() and below(target, a):
                try:
                    if engine.is_batch(target) is not None:
                        return f"a label batch below {a}"
                except RulesError:
                    return None
        return None

    gated = [a if a.is_dir() else a.parent for a in args if a.exists()]  # no link carries an output in there
    real: dict[str, Path] = {}
    for dest, flag, suffixes in _OUTPUTS:
        value = config.getoption(dest, default=None)
        if not value:
            continue
        try:
            out = check_output(
                str(value), option=flag, suffixes=suffixes, inputs=list(inputs), is_input=is_input, gated=gated
            )
        except OutputError as e:
            raise pytest.UsageError(f"annogate: {e}") from None
        for other_flag, other in real.items():
            if same_file(out, other) or out == other:
                raise pytest.UsageError(f"annogate: {flag} {value}: is also the {other_flag} target")
        real[flag] = out
    return real


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read the rules above each path argument now: a bad key is a usage error up front."""
    if not _enabled(session.config):
        return
    from annogate.rules import RulesError

    engine = session.config.stash[_ENGINE_KEY]
    _install_progress(session.config, engine)  # here: the terminal reporter is configured by now
    for p in _arg_paths(session.config):
        if p.exists():
            try:
                engine.rules_for(p if p.is_dir() else p.parent)
            except RulesError as e:
                raise pytest.UsageError(f"annogate: {e}") from None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--annogate-shard K/N``: keep the gate items of this shard's batches only."""
    if not _enabled(config):
        return
    shard = config.stash.get(_SHARD_KEY, None)
    if shard is None:
        return
    from annogate.engine import _display_path

    k, n = shard
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        if isinstance(item, GateItem) and shard_of(str(_display_path(item.path)), n) != k:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Do not descend into a directory symlink that points at one of its own ancestors
    (a loop): it would show the same batches under ever longer names, up to the OS's
    symlink limit."""
    if not _enabled(config) or not collection_path.is_symlink() or not collection_path.is_dir():
        return None
    target = Path(os.path.realpath(collection_path))
    parent = Path(os.path.realpath(collection_path.parent))
    if parent == target or target in parent.parents:
        return True
    return None


def _is_arg_ancestor(path: Path, config: pytest.Config) -> bool:
    """A folder strictly above a path given on the command line: pytest walks through it
    to reach the argument, so it must stay a plain folder (claiming it as a batch would
    hide the argument: "not found")."""
    p = Path(os.path.abspath(path))
    return any(p != a and p in a.parents for a in _arg_paths(config))


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A folder that a folder format claims (YOLO, VOC, LabelMe; or the rules' ``format``)
    is ONE batch node, with one item per gate; its files are not collected one by one.
    Any other folder is collected by :class:`LabelDir` (pytest's ``Dir`` plus special
    files in scope, which must fail rather than pass unread)."""
    config = parent.config
    if not _enabled(config) or (path / "__init__.py").is_file():
        return None
    if not _is_arg_ancestor(path, config):
        from annogate.rules import RulesError

        engine = config.stash[_ENGINE_KEY]
        try:
            fmt = engine.folder_batch(path)
            key = engine.batch_key(path) if fmt is not None else None
        except RulesError as e:
            bad: RulesErrorFile = RulesErrorFile.from_parent(parent, path=path)
            bad.error = str(e)
            return bad
        if fmt is not None and key is not None:
            if not _first_name(config, key, path):
                return None
            return _batch_file(parent, path)
    return LabelDir.from_parent(parent, path=path)


class LabelDir(pytest.Directory):
    """pytest's folder collector (``pytest.Dir``, which is final, so its loop is repeated
    here), plus what it passes over that is in scope: a FIFO, a device or a dangling
    symlink with a reader's suffix becomes a batch node that fails ("not a regular
    file: never read") instead of being silently skipped."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        config = self.config
        ihook = self.ihook
        engine = config.stash[_ENGINE_KEY]
        suffixes = {s for f in engine._all_formats() for s in f.suffixes}
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            path = Path(e.path)
            try:
                is_dir, is_file = e.is_dir(), e.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if not self.session.isinitpath(path, with_parents=True):
                    if ihook.pytest_ignore_collect(collection_path=path, config=config):
                        continue
                col = ihook.pytest_collect_directory(path=path, parent=self)
                if col is not None:
                    yield col
            elif is_file:
                if not self.session.isinitpath(path):
                    if ihook.pytest_ignore_collect(collection_path=path, config=config):
                        continue
                yield from ihook.pytest_collect_file(file_path=path, parent=self)
            elif not e.name.startswith(".") and path.suffix.lower() in suffixes:
                node = _batch_node(path, self, given=False)
                if node is not None:
                    yield node


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Generator[None, list[Any], list[Any]]:
    collected = yield
    config = parent.config
    if not _enabled(config):
        return collected
    given = Path(os.path.abspath(file_path)) in config.stash[_ARGS_KEY]
    node = _batch_node(file_path, parent, given=given)
    if node is not None:
        return [*collected, node]
    if not collected and given:
        # A file named on the command line that is plainly no label file (pre-commit
        # passes package.json): an empty node instead of pytest's "not found" error.
        empty: NotABatch = NotABatch.from_parent(parent, path=file_path)
        return [empty]
    return collected


def _batch_node(file_path: Path, parent: pytest.Collector, *, given: bool) -> pytest.File | None:
    """The node of a file in scope: a batch, or a file no reader claims (it fails its
    schema item with the reason; see ``Engine.claim``); None when out of scope."""
    from annogate.rules import RulesError

    config = parent.config
    engine = config.stash[_ENGINE_KEY]
    try:
        claim = engine.claim(file_path, given=given)
        key = engine.batch_key(file_path) if claim.kind != "skip" else None
    except RulesError as e:
        bad: RulesErrorFile = RulesErrorFile.from_parent(parent, path=file_path)
        bad.error = str(e)
        return bad
    if key is None:
        return None
    if not _first_name(config, key, file_path):  # the same file under the same rules, reached again
        return None
    return _batch_file(parent, file_path)


def _first_name(config: pytest.Config, key: tuple[str, str], path: Path) -> bool:
    """Whether ``path`` is the name a batch was first collected under. Another name for
    it (a symlink, a loop) is not collected again; the same name is, since pytest may
    collect a folder twice (one file argument after another from the same folder)."""
    seen = config.stash[_SEEN_KEY]
    name = Path(os.path.abspath(path))
    return seen.setdefault(key, name) == name


def _batch_file(parent: pytest.Collector, path: Path) -> BatchFile:
    node: BatchFile = BatchFile.from_parent(parent, path=path)
    from annogate.report.terminal import clean

    if clean(node.nodeid) != node.nodeid:
        # A file name with control characters (an ANSI escape): pytest prints node ids
        # raw, so the node gets the escaped name (the path stays the real one).
        node = BatchFile.from_parent(parent, path=path, name=clean(node.name), nodeid=clean(node.nodeid))
    return node


class NotABatch(pytest.File):
    """A file named on the command line that is no label batch: collects nothing."""

    def collect(self) -> Iterator[pytest.Item]:
        return iter(())


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
        """Gates of this batch that survived -k/--lf/deselection in this process.

        Found once per batch (the selection is final when items run): every gate item
        asks, and scanning the session's items each time cost items x items.
        """
        found: list[str] | None = self.__dict__.get("_selected_gates")
        if found is None:
            found = [i.gate for i in self.session.items if isinstance(i, GateItem) and i.parent is self]
            self.__dict__["_selected_gates"] = found
        return found


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
        from annogate.report.terminal import clean

        engine = self.config.stash[_ENGINE_KEY]
        parent = self.parent
        assert isinstance(parent, BatchFile)
        outcome = engine.run_batch(self.path, parent.selected_gates() or [self.gate])
        # every selected gate of the batch has run (and is kept in ``outcome``): the
        # columns can go, so memory stays flat over many batches
        engine.release(self.path)
        result = outcome.gates[self.gate]
        self.result = result
        self.outcome = outcome
        self.user_properties.extend(_key_figures(result))
        self.user_properties.append((_RESULT_KEY, json.dumps(outcome.item_payload(self.gate), separators=(",", ":"))))
        if result.verdict == "skipped":
            # report the skip at the batch, not at this line of the plugin
            raise pytest.skip.Exception(clean(result.reason or "nothing to check"), _use_item_location=True)
        if result.verdict == "failed":
            raise GateFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, GateFailed):
            from annogate.report.terminal import failure_lines

            verbose = self.config.get_verbosity()
            limit = self.config.getoption("annogate_max_findings")
            width = self.config.get_terminal_writer().fullwidth
            return "\n".join(
                failure_lines(
                    self.outcome.outcome(), excinfo.value.result, max_findings=limit, verbose=verbose, width=width
                )
            )
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        # pytest prints the domain as the failure header, and in -v lines replaces a
        # node id that ends with the domain by the domain with its dots turned into
        # "::" (Python's module.Class.test): the plain node id as domain printed
        # "batch::json::golden". The " gate" suffix keeps the -v line the node id.
        return self.path, 0, f"{self.nodeid} gate"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """An item that ended without a gate result (it errored outside its gate, or a
    plugin skipped it) still ships one, so the audit report lists its batch and its
    verdict agrees with pytest's."""
    rep = yield
    if not isinstance(item, GateItem) or item.result is not None:
        return rep
    if not (rep.when == "call" or (rep.when == "setup" and not rep.passed)):
        return rep
    from annogate.engine import _display_path

    path = str(_display_path(item.path))
    if rep.skipped:
        longrepr = rep.longrepr
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) else "skipped"
        payload = _payload(path, item.gate, "skipped", reason.removeprefix("Skipped: "))
    else:
        err = call.excinfo.exconly().splitlines()[0][:500] if call.excinfo is not None else rep.outcome
        payload = _payload(path, item.gate, "failed", f"the {item.gate} item errored: {err}")
    rep.user_properties.append((_RESULT_KEY, json.dumps(payload, separators=(",", ":"))))
    return rep


def _payload(path: str, gate: str, verdict: str, reason: str) -> dict[str, Any]:
    """An item's payload when no gate result exists: the batch by path only."""
    from annogate.findings import GateResult

    result = GateResult(gate=gate, verdict=verdict, reason=reason)  # type: ignore[arg-type]
    facts = {"path": path, "sha256": "", "format": "unknown", "n_annotations": 0, "n_images": 0, "composition": []}
    return {"batch": facts, "result": result.to_dict()}


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
    and at the end writes the audit report, the rework list and the CI surfaces
    (in ``pytest_sessionfinish``, where pytest's exit status is known), then prints
    the summary from the same data, so they are identical with and without ``-n``.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.payloads: dict[tuple[str, str], dict[str, Any]] = {}
        self.lines: list[str] = []
        self.outcomes_: list[BatchOutcome] = []
        self.no_batches = False
        self.collected: list[tuple[str, str]] = []  # (display path, gate) of items selected here

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Remember the selected gate items (in-process runs): batches whose items never
        ran (``-x`` stopped the session) still appear in the report, as not run."""
        from annogate.engine import _display_path

        self.collected = [(str(_display_path(i.path)), i.gate) for i in session.items if isinstance(i, GateItem)]

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

    def outcomes(self) -> list[BatchOutcome]:
        from annogate.session import outcomes_from_payloads

        return outcomes_from_payloads(list(self.payloads.values()), engine=self.config.stash[_ENGINE_KEY])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and not self.payloads:
            # Zero batches is no success for a gate: pytest's exit 5 stays, with a line
            # naming the paths; only --annogate-allow-empty (the pre-commit hook) makes it 0.
            self.no_batches = True
            if self.config.getoption("annogate_allow_empty", default=False):
                session.exitstatus = pytest.ExitCode.OK
            return
        if not self.payloads and exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
            return
        for path, gate in self.collected:
            if (path, gate) not in self.payloads:
                self.payloads[(path, gate)] = _payload(path, gate, "skipped", "not run: the session stopped first")
        self.outcomes_ = self.outcomes()
        self._write_artifacts(session, int(session.exitstatus))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.no_batches:
            from annogate.engine import _display_path
            from annogate.report.terminal import clean

            paths = ", ".join(clean(str(_display_path(p))) for p in _arg_paths(self.config)) or "."
            allowed = " (allowed: --annogate-allow-empty)" if self.config.getoption("annogate_allow_empty") else ""
            terminalreporter.write_line(f"annogate: no label batches under {paths}{allowed}")
            return
        if not self.outcomes_ and not self.lines:
            return
        from annogate.report.terminal import session_lines

        terminalreporter.section("annogate")
        if self.outcomes_:
            # the cost of each failing batch is printed here, once, not under each failing gate
            width = terminalreporter._tw.fullwidth
            for line in session_lines(self.outcomes_, width=width, verbosity=self.config.get_verbosity()):
                terminalreporter.write_line(line)
        for line in self.lines:
            terminalreporter.write_line(line)

    def _write_artifacts(self, session: pytest.Session, exit_status: int) -> None:
        from annogate.report.outputs import OutputError
        from annogate.session import write_artifacts

        real = self.config.stash[_REAL_OUTPUTS]
        report = real.get("--annogate-report")
        rework = real.get("--annogate-rework")
        html = real.get("--annogate-html")
        shown = {
            os.fspath(p): str(self.config.getoption(dest))
            for dest, flag, _ in _OUTPUTS
            if (p := real.get(flag)) is not None
        }
        try:
            self.lines = write_artifacts(
                self.outcomes_,
                engine=self.config.stash[_ENGINE_KEY],
                report_path=report,
                rework_path=rework,
                html_path=html,
                history_dir=self.config.stash.get(_HISTORY_KEY, None),
                github=os.environ.get("GITHUB_ACTIONS") == "true",
                exit_status=exit_status,
                shown=shown,
            )
        except (OSError, OutputError) as e:
            self.lines = [f"annogate: could not write an output: {e}"]
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
