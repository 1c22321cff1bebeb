"""The engine: collect batches, load them once, run gates. No pytest in here.

The pytest adapter (``annogate.plugin``) and any other runner drive an
:class:`Engine`; it owns the plugin manager, the rules cache and the loaded
batches, so a batch is read once however many gates examine it, and a golden
file once however many batches name it.
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from annogate import hookspecs
from annogate.cohorts import Cohorts, batch_cohorts, with_cohorts
from annogate.cohorts import add_problems as add_cohort_problems
from annogate.findings import Finding, GateResult, ThresholdCheck
from annogate.formats import Format, LoadError, detect_format, explain_unclaimed, load_batch, read_head, sample_files
from annogate.gates import Gate, GateContext
from annogate.model import Batch
from annogate.rules import Rules, RulesError, find_rules_file, load_rules
from annogate.session import BatchRun

if TYPE_CHECKING:
    from annogate.history import Margin

__all__ = ["NOT_LABEL_FILES", "Claim", "Engine", "LoadFailure", "LoadProgress"]


class LoadProgress(Protocol):
    """How a front end follows long loads (the pytest adapter's terminal line).

    ``begin`` is called before a batch is read and returns the callback the reader
    calls with ``(done_bytes, total_bytes)``; ``end`` is called when the read is over,
    whether it succeeded or not, so the front end can clear what it drew. Only
    readers whose ``load`` takes a ``progress`` keyword report (COCO today); the
    others are still bracketed by ``begin``/``end``.
    """

    def begin(self, path: Path) -> Callable[[int, int], None]: ...

    def end(self, path: Path) -> None: ...


@cache
def _takes_progress(load: Callable[..., Any]) -> bool:
    """Whether a reader accepts ``progress=`` (third-party readers need not)."""
    try:
        params = inspect.signature(load).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


#: Files that are plainly something else: in scope by their suffix, claimed by no
#: reader, and *not* failed as unreadable label files (lower-case name globs). The
#: golden file and rules files in force, and annogate's own outputs (a JSON whose
#: ``report_format`` starts with ``annogate-``), are skipped the same way. Keep this
#: list to files whose name alone says what they are; anything else in scope that
#: no reader claims fails with the reason, so nothing passes unread.
NOT_LABEL_FILES: tuple[str, ...] = (
    "package.json",  # npm
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.*.json",
    "classes.txt",  # YOLO class lists (read by the YOLO reader as part of its folder)
    "obj.names",
    "names.txt",
    "train.txt",  # YOLO image lists
    "val.txt",
    "valid.txt",
    "test.txt",
    "requirements*.txt",  # pip
    "readme*.txt",
    "license*.txt",
    "changelog*.txt",
    "cmakelists.txt",
)
# annogate's audit report (keys sorted: "annogate_version" first) and rework JSON
# ("report_format": "annogate-rework/1" within the first keys). Only files that no
# reader claims are checked, so a label batch cannot hide behind this mark.
_OUTPUT_MARK = re.compile(rb'^\s*\{\s*"annogate_version"\s*:|"report_format"\s*:\s*"annogate-')
_RULES_NAMES = ("annogate.toml",)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """What the collection makes of a path in scope: a batch of ``format``, a file that
    must fail because no reader claims it (``reason`` says why), or nothing (``skip``:
    out of scope, excluded, golden/rules/output, or plainly something else)."""

    kind: str  # "batch" | "unreadable" | "skip"
    format: Format | None = None
    reason: str = ""


def _glob_re(pat: str) -> re.Pattern[str]:
    """A rules glob as a regex over ``/``-separated paths: ``**/`` any folders (or none),
    ``**`` anything, ``*`` and ``?`` within one name, ``[...]`` a set."""
    out: list[str] = []
    i = 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        elif pat[i] == "[" and "]" in pat[i + 2 :]:
            j = pat.index("]", i + 2)
            body = pat[i + 1 : j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return re.compile("".join(out))


def _glob_matches(path: Path, pat: str, base: Path, *, is_dir: bool = False) -> bool:
    """Whether ``path`` (or a folder above it) matches a rules glob, gitignore-like:
    a pattern without ``/`` matches a name at any depth; one with ``/`` matches the path
    relative to the rules file's folder (``base``), or the absolute path if it is one."""
    pat = pat.strip()
    if not pat:
        return False
    absolute = pat.startswith("/")
    pat = pat.rstrip("/").removeprefix("./") or pat
    rx = _glob_re(pat.lstrip("/") if absolute else pat)
    if absolute:
        parts = _abs(path).parts[1:]
    else:
        try:
            parts = _abs(path).relative_to(_abs(base)).parts
        except ValueError:
            return False
    if "/" not in pat.strip("/"):
        return any(rx.fullmatch(p) for p in parts) or fnmatch.fnmatch(path.name, pat)
    cands = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if is_dir and cands:
        cands.append(cands[-1] + "/")
    return any(rx.fullmatch(c) for c in cands)


@dataclass(frozen=True, kw_only=True)
class LoadFailure:
    """A batch that could not be read: the error, with line and column when known."""

    path: Path
    error: LoadError


@dataclass(kw_only=True)
class _Loaded:
    batch: Batch | None
    failure: LoadFailure | None
    cohorts: Cohorts | None = None  # from the rules' cohort_field, when set


def _abs(path: Path) -> Path:
    """Absolute, ``..`` folded, symlinks NOT resolved.

    Why not ``resolve()``: a symlinked batch is judged by the rules of the place it
    is linked into (the nearest ``annogate.toml`` above the link), and it is reported
    under the name it was collected by; resolving would silently apply the target's
    rules and merge two differently-judged batches into one.
    """
    return Path(os.path.abspath(path))


def _display_path(path: Path) -> Path:
    """The path relative to the working directory when below it: what findings,
    terminal lines and CI annotations show (GitHub wants repository-relative paths)."""
    for cand in (_abs(path), path.resolve()):
        try:
            return cand.relative_to(Path.cwd())
        except ValueError:
            continue
    return path


def _exception_text(e: BaseException, limit: int = 500) -> str:
    """``TypeName: message``, the message cut to ``limit`` characters (an exception
    can carry a whole input value; the terminal and the report need the gist)."""
    msg = str(e)
    if len(msg) > limit:
        msg = msg[: limit - 1] + "…"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def plugin_manager() -> pluggy.PluginManager:
    """annogate's plugin manager: built-ins plus the ``annogate`` entry-point group."""
    from annogate import builtin

    pm = pluggy.PluginManager("annogate")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="annogate.builtin")
    pm.load_setuptools_entrypoints("annogate")
    return pm


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """An earlier audit report and the margins a batch may not regress beyond."""

    report: Mapping[str, Any]
    margins: tuple[Margin, ...]
    path: str


#: The comparison with a baseline runs after the gates, as an item of its own.
BASELINE_GATE = "baseline"


def _no_run(batch: Batch, ctx: GateContext) -> GateResult:  # pragma: no cover - never called
    raise AssertionError("the baseline comparison is run by Engine.run_batch")


@dataclass(kw_only=True)
class Engine:
    """Runs gates on batches. ``rules_path`` overrides rules discovery for every batch;
    ``baseline`` adds a ``baseline`` item per batch that compares it with an earlier report."""

    rules_path: Path | None = None
    baseline: Baseline | None = None
    #: follows long loads (see :class:`LoadProgress`); None: silent
    progress: LoadProgress | None = None
    pm: pluggy.PluginManager = field(default_factory=plugin_manager)
    _rules: dict[Path | None, Rules] = field(default_factory=dict)
    _loaded: dict[Path, _Loaded] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)
    _runs: dict[Path, BatchRun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        gates: list[Gate] = [g for gs in self.pm.hook.annogate_gates() for g in gs]
        names = [g.name for g in gates]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise RulesError(f"two plugins define the gate(s) {sorted(dup)}")
        self.gates: tuple[Gate, ...] = tuple(sorted(gates, key=lambda g: (g.order, g.name)))
        self.formats: tuple[Format, ...] = tuple(f for fs in self.pm.hook.annogate_formats() for f in fs)
        from annogate.cost import RULES_SCHEMA as COST_SCHEMA

        self.sections: dict[str, Any] = {g.name: g.rules_schema for g in self.gates}
        self.sections["cost"] = COST_SCHEMA
        if self.baseline is not None:
            if BASELINE_GATE in names:
                raise RulesError(f"a plugin defines a gate called {BASELINE_GATE!r}, which --annogate-compare uses")
            compare = Gate(name=BASELINE_GATE, run=_no_run, rules_schema={"type": "object"}, order=10_000)
            self.gates = (*self.gates, compare)
        if self.rules_path is not None:
            self.rules_for(self.rules_path)  # validate early: a usage error, before collection

    # -- rules -------------------------------------------------------------
    def rules_for(self, batch_path: Path) -> Rules:
        """The rules in force for a batch (cached per rules file)."""
        rp = self.rules_path if self.rules_path is not None else find_rules_file(_abs(batch_path))
        key = rp.resolve() if rp is not None else None
        if key not in self._rules:
            self._rules[key] = load_rules(key, sections=self.sections, default_pack="detection")
        return self._rules[key]

    # -- collection --------------------------------------------------------
    def is_batch(self, path: Path) -> Format | None:
        """The format of ``path`` if it is a label batch under its rules, else None.

        Golden files named by the rules and files matching ``exclude`` are not batches.
        """
        c = self.claim(path, given=False) if not path.is_dir() else None
        if c is not None:
            return c.format if c.kind == "batch" else None
        return self.folder_batch(path)

    def format_override(self, path: Path, rules: Rules | None = None) -> str | None:
        """The format the rules force for ``path``: ``format = "name"`` for everything under
        them, or the first glob of a ``[format]`` table that matches the path."""
        rules = rules or self.rules_for(path)
        spec = rules.data.get("format")
        if isinstance(spec, str):
            return spec
        if isinstance(spec, Mapping):
            for pat, name in spec.items():
                if _glob_matches(path, str(pat), rules.base_dir, is_dir=path.is_dir()):
                    return str(name)
        return None

    def _format_named(self, name: str) -> Format | None:
        from annogate.formats import _formats

        return next((f for f in _formats(self.formats) if f.name == name), None)

    def _skipped(self, path: Path, rules: Rules, *, is_dir: bool) -> str | None:
        """Why the rules put ``path`` out of scope, or None when they do not."""
        base = rules.base_dir
        for pat in rules.data.get("exclude", []):
            if _glob_matches(path, pat, base, is_dir=is_dir):
                return f"excluded by {pat!r}"
        scope = rules.data.get("batches")
        if scope is not None and not any(_glob_matches(path, pat, base, is_dir=is_dir) for pat in scope):
            return "not matched by the rules' batches"
        return None

    def claim(self, path: Path, *, given: bool) -> Claim:
        """What ``path`` (a file, or anything that is not a folder) is for the collection.

        In scope: what the rules' ``batches`` globs match (minus ``exclude``); without
        ``batches``, a path given on the command line (``given``) and any file whose
        suffix a reader handles. A file in scope is a batch when the rules force its
        format or a reader claims it; else it is skipped when it is plainly something
        else (:data:`NOT_LABEL_FILES`, the golden file, a rules file, annogate's own
        output) and otherwise *fails* with the reason (never passes unread).
        """
        rules = self.rules_for(path)
        why = self._skipped(path, rules, is_dir=False)
        if why is not None:
            return Claim(kind="skip", reason=why)
        suffixes = {s for f in self._all_formats() for s in f.suffixes}
        if rules.data.get("batches") is None and not given and path.suffix.lower() not in suffixes:
            return Claim(kind="skip", reason="no reader handles this suffix")
        if self._is_input_file(path, rules):
            return Claim(kind="skip", reason="a golden or rules file in force")
        forced = self.format_override(path, rules)
        if forced is not None:
            return Claim(kind="batch", format=self._format_named(forced))
        fmt = detect_format(path, formats=self.formats)
        if fmt is not None:
            return Claim(kind="batch", format=fmt)
        name = path.name.lower()
        if any(fnmatch.fnmatchcase(name, pat) for pat in NOT_LABEL_FILES):
            return Claim(kind="skip", reason="plainly not a label file")
        head = read_head(path, 4096)
        if head is not None and _OUTPUT_MARK.search(head):
            return Claim(kind="skip", reason="an annogate output")
        return Claim(kind="unreadable", reason=explain_unclaimed(path, formats=self.formats))

    def _all_formats(self) -> tuple[Format, ...]:
        from annogate.formats import _formats

        return _formats(self.formats)

    def _is_input_file(self, path: Path, rules: Rules) -> bool:
        real = Path(os.path.realpath(path))
        if rules.golden_file() == real or (rules.path is not None and rules.path.resolve() == real):
            return True
        return self.rules_path is not None and self.rules_path.resolve() == real

    def folder_batch(self, path: Path) -> Format | None:
        """The folder format of ``path`` if the folder is one batch, else None.

        The rules decide first (``format``, scalar or by glob, naming a folder format);
        else a folder format's sniffer claims it (see :func:`detect_format`), unless a
        rules file lies below it (its parts are judged by different rules, so they
        are collected one by one). Out-of-scope folders are no batch.
        """
        rules = self.rules_for(path)
        if self._skipped(path, rules, is_dir=True) is not None:
            return None
        forced = self.format_override(path, rules)
        if forced is not None:
            fmt = self._format_named(forced)
            return fmt if fmt is not None and fmt.folder else None
        if any(r.parent != path for r in sample_files(path, _RULES_NAMES, per_dir=1, max_files=2)):
            return None  # a rules file strictly below: its part is judged by other rules
        return detect_format(path, formats=self.formats)

    def batch_key(self, path: Path) -> tuple[str, str]:
        """What makes two collected paths the same batch: the same file judged by the
        same rules. A directory symlink loop reaches one file under endless names;
        all of them share this key, so the batch is collected once."""
        rules = self.rules_for(path)
        return (os.path.realpath(path), str(rules.path.resolve()) if rules.path else "")

    # -- loading -----------------------------------------------------------
    def _load(self, path: Path, **options: Any) -> _Loaded:
        # Keyed by the unresolved path: how a batch is read depends on its rules
        # (format, annotator field), which depend on where it was found.
        key = _abs(path)
        if key not in self._loaded:
            rules = self.rules_for(path)
            opts: dict[str, Any] = dict(options)
            if "annotator_field" in rules.data:
                opts.setdefault("annotator_field", rules.data["annotator_field"])
            try:
                fmt_name = self.format_override(path, rules)
                if fmt_name is None:
                    fmt = detect_format(path, formats=self.formats)
                    if fmt is None:
                        raise LoadError(explain_unclaimed(path, formats=self.formats), path=_display_path(path))
                    fmt_name = fmt.name
                chosen = self._format_named(fmt_name)
                if "annotator_from" in rules.data and chosen is not None and chosen.folder:
                    # the layout names the annotator: only folder readers take it
                    opts.setdefault("annotator_from", rules.data["annotator_from"])
                cohort_field = rules.data.get("cohort_field")
                if cohort_field and chosen is not None and chosen.name == "coco":
                    opts.setdefault("cohort_field", cohort_field)  # COCO keeps only the fields asked for
                batch = self._read(path, fmt_name, chosen, opts)
                cohorts = batch_cohorts(batch, str(cohort_field)) if cohort_field else None
                if cohorts is not None:
                    batch = add_cohort_problems(batch, cohorts)
                self._loaded[key] = _Loaded(batch=batch, failure=None, cohorts=cohorts)
            except LoadError as e:
                self._loaded[key] = _Loaded(batch=None, failure=LoadFailure(path=path, error=e))
            except Exception as e:  # a third-party reader's bug must not crash the session
                err = LoadError(f"the reader raised {_exception_text(e)}", path=_display_path(path))
                self._loaded[key] = _Loaded(batch=None, failure=LoadFailure(path=path, error=err))
        return self._loaded[key]

    def _read(self, path: Path, fmt_name: str, chosen: Format | None, opts: dict[str, Any]) -> Batch:
        """One reader call, bracketed by the progress front end when there is one."""
        if self.progress is None:
            return load_batch(_display_path(path), format=fmt_name, formats=self.formats, **opts)
        callback = self.progress.begin(path)
        try:
            if chosen is not None and _takes_progress(chosen.load):
                opts = {**opts, "progress": callback}
            return load_batch(_display_path(path), format=fmt_name, formats=self.formats, **opts)
        finally:
            self.progress.end(path)

    def load(self, path: Path) -> Batch:
        """Load a batch (cached); raises LoadError when it cannot be read."""
        loaded = self._load(path)
        if loaded.batch is None:
            assert loaded.failure is not None
            raise loaded.failure.error
        return loaded.batch

    def release(self, path: Path) -> None:
        """Forget a batch once all its gates ran (keeps memory flat over many batches).

        Its results stay (``run_batch`` keeps them); the golden files in the shared
        cache stay too, since every batch of the session may use them.
        """
        self._loaded.pop(_abs(path), None)

    # -- gates -------------------------------------------------------------
    def gate(self, name: str) -> Gate:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(name)

    def run_gate(self, path: Path, name: str) -> GateResult:
        """Run one gate on one batch. A batch that does not load fails ``schema``
        with the parser's message and skips every other gate; a batch its reader
        marks as having nothing to gate (``Batch.skip_reason``) skips every gate.

        A gate that raises (any ``Exception``: a bug, an overflow, a MemoryError on a
        hostile input) fails *this* gate with a message naming the gate and the
        exception; the batch's other gates still run, and the session goes on.
        """
        gate = self.gate(name)
        loaded = self._load(path)
        if loaded.batch is None:
            assert loaded.failure is not None
            err = loaded.failure.error
            if name != "schema":
                return GateResult(
                    gate=name, verdict="skipped", reason="the batch could not be read (see its schema item)"
                )
            f = Finding(
                gate="schema",
                rule="unreadable",
                message=err.msg,
                file=str(_display_path(path)),
                line=err.line,
                pointer=None,
            )
            return GateResult(gate="schema", verdict="failed", findings=[f], metrics={"column": err.column})
        if loaded.batch.skip_reason:
            return GateResult(gate=name, verdict="skipped", reason=loaded.batch.skip_reason)
        rules = self.rules_for(path)
        ctx = GateContext(
            section=rules.section(name),
            rules=self._batch_rules(rules, loaded),
            base_dir=rules.base_dir,
            load=self.load,
            cache=self._cache,
        )
        # no timings in results: the audit report must be byte-identical across runs
        try:
            return gate.run(loaded.batch, ctx)
        except Exception as e:  # MemoryError, RecursionError, OverflowError included
            return GateResult(
                gate=name,
                verdict="failed",
                population=len(loaded.batch.annotations),
                reason=f"the {name} gate raised {_exception_text(e)}",
            )

    @staticmethod
    def _batch_rules(rules: Rules, loaded: _Loaded) -> Mapping[str, Any]:
        """The merged rules as this batch sees them: with the cohorts its ``cohort_field``
        gives under the explicit ``cost.cohorts`` (so tables, checks and cost share one mapping)."""
        if loaded.cohorts is None:
            return rules.data
        return with_cohorts(rules.data, loaded.cohorts)

    def run_batch(self, path: Path, names: list[str]) -> BatchRun:
        """Run the named gates of one batch (each once per process) and return them all.

        A gate item runs every selected gate of its batch on first use, so each
        failing item can show the batch's whole cost table; gates already run are
        not run again.
        """
        key = _abs(path)
        run = self._runs.get(key)
        if run is None:
            loaded = self._load(path)
            cost_rules = self._batch_rules(self.rules_for(path), loaded).get("cost", {})
            run = self._runs[key] = BatchRun.of(
                _display_path(path),
                loaded.batch,
                cost_rules=cost_rules if isinstance(cost_rules, Mapping) else {},
                order=[g.name for g in self.gates],
            )
        for name in names:
            if name not in run.gates and name != BASELINE_GATE:
                run.gates[name] = self.run_gate(path, name)
        if BASELINE_GATE in names and BASELINE_GATE not in run.gates:
            run.gates[BASELINE_GATE] = self._compare(run)
        return run

    def _compare(self, run: BatchRun) -> GateResult:
        """The batch against the same batch of the baseline report, per margin.

        Fails when a metric is worse than its baseline by more than its margin; each
        comparison is a check (value now, limit = the worst value allowed) and, when it
        fails, a finding that shows baseline, now, the difference and its interval.
        """
        from annogate.history import compare

        assert self.baseline is not None
        gates = [run.gates[g].to_dict() for g in run.order if g in run.gates and g != BASELINE_GATE]
        now = {"path": str(run.path), "gates": gates}
        if not any(str(b.get("path")) == str(run.path) for b in self.baseline.report.get("batches", [])):
            return GateResult(
                gate=BASELINE_GATE,
                verdict="skipped",
                reason=f"{run.path} is not in the baseline {self.baseline.path}",
            )
        comps = compare(now, self.baseline.report, self.baseline.margins)
        checks: list[ThresholdCheck] = []
        findings: list[Finding] = []
        for c in comps:
            if c.now is None or c.allowed is None:
                continue
            checks.append(
                ThresholdCheck(
                    metric=c.margin.metric,
                    scope="baseline",
                    value=c.now,
                    limit=c.allowed,
                    op=">=" if c.margin.direction < 0 else "<=",
                )
            )
            if c.failed:
                findings.append(
                    Finding(gate=BASELINE_GATE, rule="regression", message=c.describe(), file=str(run.path))
                )
        metrics = {
            "baseline": self.baseline.path,
            "comparisons": [
                {
                    "metric": c.margin.metric,
                    "baseline": c.baseline,
                    "now": c.now,
                    "difference": c.difference,
                    "interval": None if c.interval is None else list(c.interval),
                    "allowed": c.allowed,
                    "failed": c.failed,
                    "note": c.reason,
                }
                for c in comps
            ],
        }
        table: list[list[Any]] = [["metric", "baseline", "now", "difference", "ci95_low", "ci95_high", "allowed"]]
        for c in comps:
            lo, hi = c.interval if c.interval else (None, None)
            table.append([c.margin.metric, c.baseline, c.now, c.difference, lo, hi, c.allowed])
        if not checks:
            notes = "; ".join(c.describe() for c in comps) or "no margins given (--annogate-compare-fail)"
            return GateResult(gate=BASELINE_GATE, verdict="skipped", reason=notes, metrics=metrics)
        return GateResult.from_checks(
            gate=BASELINE_GATE,
            population=len(checks),
            checks=checks,
            findings=findings,
            metrics=metrics,
            tables={"baseline": table},
        )

    # -- the HTML report's access to batches ---------------------------------
    def load_for_report(self, path: str) -> Batch:
        """A batch by the path the report shows (for thumbnails), read again if released."""
        return self.load(Path(path))

    def images_root(self, outcomes: Sequence[Any]) -> Path | None:
        """Where the images are, from the rules' ``images`` key of the first batch (if any)."""
        if not outcomes:
            return None
        rules = self.rules_for(Path(outcomes[0].path))
        images = rules.data.get("images")
        return (rules.base_dir / str(images)) if images else None
