"""Hostile-input harness: each case is a REAL annogate session in a subprocess.

Why a subprocess and not pytester: the failures issue 8 lists are process-level
(a segfault in C code, an endless loop holding the GIL, gigabytes of memory, a file
replaced through ``os.replace``), and only a separate process with a timeout and an
address-space cap can observe them without taking the outer test run down.

A case builds a small label repository in a temporary folder (``root``), says how to
run the session (``pytest --annogate ...``, the console script ``annogate``, or with
``-n 2``) and what it EXPECTS (issue 8/13): exit codes, gates that must fail with
which rule, how many batches the audit report lists. :func:`run_case` runs it and
classifies the outcome into the five failure kinds below; an empty ``problems`` list
means the gate behaved.

- ``crash``: exit code outside 0..5, a signal (segfault), ``INTERNALERROR`` or a
  Python traceback printed outside a failing item's report;
- ``hang``: the session outlived the timeout (its process group is killed);
- ``blow-up``: ``MemoryError``/``bad_alloc`` under the address-space cap, a kill by
  signal 9, a peak RSS above the cap, or an audit report larger than its bound;
- ``wrong verdict``: exit code not the expected one, the report's verdict or
  ``exit_status`` disagreeing with the exit code, an expected gate finding absent, or
  the report not listing every collected batch;
- ``bad write``: any file under ``root`` changed (SHA-256, mtime, type) or created
  (e.g. ``.pytest_cache``), or a device/FIFO replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Case", "Expect", "Outcome", "Run", "run_case"]

KINDS = ("crash", "hang", "blow-up", "wrong verdict", "bad write")

MEM_CAP = 4 << 30  # RLIMIT_AS of every session (inherited by xdist workers)
TIMEOUT = 60.0
REPORT_CAP = 64 << 20  # an audit report beyond this is a blow-up (findings must be capped)


@dataclass(frozen=True, kw_only=True)
class Expect:
    """What issue 8/13 says the session must do with this input."""

    exit: frozenset[int]
    #: (gate, rule or None): the gate's verdict is "failed" and, if given, the rule is among its counts
    fails: tuple[tuple[str, str | None], ...] = ()
    #: number of batches the audit report must list (None: not checked)
    batches: int | None = None
    #: regexes the combined output must contain / must not contain
    output_has: tuple[str, ...] = ()
    output_not: tuple[str, ...] = ()
    #: (gate, rule, count): exact finding counts in the report (the full count, even when findings are capped)
    counts: tuple[tuple[str, str, int], ...] = ()
    #: (gate, regex): the gate's reason or a finding's message in the report matches
    reasons: tuple[tuple[str, str], ...] = ()
    note: str = ""


@dataclass(kw_only=True)
class Run:
    """How to run one case, returned by the case's ``build``."""

    args: list[str]
    cwd: Path
    console: bool = False  # run the ``annogate`` console script instead of ``python -m pytest --annogate``
    report: Path | None = None  # where the audit report is expected (None: not read)
    add_report: bool = True  # append ``--annogate-report <report>``
    env: dict[str, str] = field(default_factory=dict)
    allowed_changes: set[str] = field(default_factory=set)  # paths under root that may change/appear
    specials: list[Path] = field(default_factory=list)  # devices/FIFOs that must keep their type


@dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    build: Callable[[Path, Path], Run]  # (root, out) -> Run
    expect: Expect
    source: str  # "issue 8", "issue 13", "own"
    slow: bool = False
    xdist: bool = False  # also run with -n 2
    xfail: str | None = None  # exact symptom while the fix is in progress
    timeout: float = TIMEOUT


@dataclass
class Outcome:
    case: str
    rc: int | None
    seconds: float
    peak_mb: float
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, symptom)
    notes: list[str] = field(default_factory=list)  # e.g. a gate's raw exception inside its item
    output: str = ""

    @property
    def kinds(self) -> set[str]:
        return {k for k, _ in self.problems}

    def describe(self) -> str:
        return "; ".join(f"{k}: {s}" for k, s in self.problems) or "ok"


# -- snapshots (bad writes) ---------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    snap: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode) and st.st_size > 256 << 20:  # a sparse giant: size and mtime suffice
                snap[rel] = ("file", st.st_size, st.st_mtime_ns, st.st_mode)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                snap[rel] = ("file", h.hexdigest(), st.st_mtime_ns, st.st_mode)
            elif stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("dir", st.st_mode)
            else:
                snap[rel] = ("special", stat.S_IFMT(st.st_mode), st.st_rdev)
    return snap


def _special_state(p: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    return stat.S_IFMT(st.st_mode), st.st_rdev


# -- running -----------------------------------------------------------------


def _preexec() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (MEM_CAP, MEM_CAP))


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "GITHUB_")) and k not in ("COV_CORE_SOURCE", "PYTHONBREAKPOINT")
    }
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="120", NO_COLOR="1")
    env.update(extra)
    return env


def _command(run: Run, *, xdist: bool) -> list[str]:
    args = list(run.args)
    if run.add_report and run.report is not None:
        args += ["--annogate-report", str(run.report)]
    if xdist:
        args += ["-n", "2"]
    if run.console:
        script = Path(sysconfig.get_path("scripts")) / "annogate"
        return [str(script), *args, "-q", "--color=no"]
    return [sys.executable, "-m", "pytest", "--annogate", *args, "-p", "no:cacheprovider", "-q", "--color=no"]


_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^INTERNALERROR>", re.M)
_ITEM_HEADER = re.compile(r"^_{3,} .+ _{3,}$", re.M)
_SECTION = re.compile(r"^={3,} .+ ={3,}$", re.M)
_RAW_EXC = re.compile(r"^E\s+([A-Za-z_.]*(?:Error|Exception|Overflow)\b.*)$", re.M)
_MEMORY = re.compile(r"MemoryError|std::bad_alloc|Cannot allocate memory|numpy\.core\._exceptions\._ArrayMemoryError")


def _outside_items(text: str) -> str:
    """The output with every failing item's report (``____ name ____`` up to the next
    header or ``==== section ====``) removed: a traceback there belongs to the item."""
    out: list[str] = []
    pos = 0
    for m in _ITEM_HEADER.finditer(text):
        out.append(text[pos : m.start()])
        nxt = min(
            [x.start() for x in (_ITEM_HEADER.search(text, m.end()), _SECTION.search(text, m.end())) if x]
            or [len(text)]
        )
        pos = nxt
    out.append(text[pos:])
    return "".join(out)


def run_case(
    case: Case, tmp: Path, *, xdist: bool = False, timeout: float | None = None, env: dict[str, str] | None = None
) -> Outcome:
    """Build the case under ``tmp``, run it as a session, classify what happened.

    ``env`` adds variables to the session's environment (e.g. ``PYTHONPATH`` of an
    older tree's ``src`` to show that a case fails on the old code)."""
    root, out = tmp / "root", tmp / "out"
    root.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    run = case.build(root, out)
    before = _snapshot(root)
    specials_before = {p: _special_state(p) for p in run.specials}
    cmd = _command(run, xdist=xdist)
    limit = case.timeout if timeout is None else timeout
    so, se = out / "_stdout.txt", out / "_stderr.txt"
    t0 = time.monotonic()
    timed_out = threading.Event()
    with open(so, "wb") as fo, open(se, "wb") as fe:
        p = subprocess.Popen(
            cmd,
            cwd=run.cwd,
            env=_env({**run.env, **(env or {})}),
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            preexec_fn=_preexec,
            start_new_session=True,
        )

        def _kill() -> None:
            timed_out.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the session we started, with its xdist workers
            except ProcessLookupError:
                pass

        timer = threading.Timer(limit, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        if not timed_out.is_set():
            try:  # stray workers of a crashed session: same process group, started by us
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    seconds = time.monotonic() - t0
    rc = p.returncode
    text = so.read_bytes().decode("utf-8", "replace") + "\n" + se.read_bytes().decode("utf-8", "replace")
    o = Outcome(case=case.name + (" [-n 2]" if xdist else ""), rc=rc, seconds=seconds, peak_mb=usage.ru_maxrss / 1024)
    o.output = text
    problems = o.problems

    # hang / blow-up / crash
    if timed_out.is_set():
        problems.append(("hang", f"no exit after {limit:.0f} s"))
    elif rc in (-signal.SIGKILL, 137):
        problems.append(("blow-up", f"killed by signal 9 (peak {o.peak_mb:.0f} MB)"))
    if _MEMORY.search(text):
        problems.append(("blow-up", "MemoryError under the 4 GiB address-space cap"))
    if o.peak_mb > MEM_CAP / (1 << 20):
        problems.append(("blow-up", f"peak RSS {o.peak_mb:.0f} MB"))
    if not timed_out.is_set() and rc is not None and rc not in (0, 1, 2, 3, 4, 5) and rc != -signal.SIGKILL:
        sig = f" (signal {-rc})" if rc < 0 else ""
        problems.append(("crash", f"exit {rc}{sig}"))
    if re.search(r"Fatal Python error|Segmentation fault", text):
        problems.append(("crash", "fatal error / segfault in output"))
    outside = _outside_items(text)
    m = _TRACEBACK.search(outside)
    if m:
        line = next(
            (ln for ln in outside[m.start() :].splitlines()[1:] if re.match(r"^\w[\w.]*(Error|Exception)", ln)), ""
        )
        problems.append(("crash", f"traceback outside an item: {line or outside[m.start() : m.start() + 120]!r}"))
    for m in _RAW_EXC.finditer(text):
        o.notes.append(f"gate raised: {m.group(1)[:160]}")
        break
    if "worker" in text and re.search(r"\[gw\d\] (node down|crashed)|replacing crashed worker", text):
        problems.append(("crash", "an xdist worker crashed"))

    # bad writes
    after = _snapshot(root)
    allowed = run.allowed_changes
    for rel in sorted(set(before) | set(after)):
        if rel in allowed:
            continue
        b, a = before.get(rel), after.get(rel)
        if b == a:
            continue
        if b is None:
            problems.append(("bad write", f"created {rel}"))
        elif a is None:
            problems.append(("bad write", f"deleted {rel}"))
        elif b[0] != a[0]:
            problems.append(("bad write", f"{rel}: {b[0]} replaced by {a[0]}"))
        elif b[0] == "file" and b[1] != a[1]:
            problems.append(("bad write", f"{rel}: content changed"))
        elif b[0] == "file" and b[2] != a[2]:
            problems.append(("bad write", f"{rel}: mtime changed"))
        elif b[0] != "dir":  # a dir's own mode is not at stake (created entries are reported above)
            problems.append(("bad write", f"{rel}: changed {b} -> {a}"))
    for path, st in specials_before.items():
        if _special_state(path) != st:
            problems.append(("bad write", f"{path}: special file replaced"))

    # verdict
    if not (o.kinds & {"hang", "crash", "blow-up"}):
        _check_verdict(case.expect, run, rc, text, problems)
    return o


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259): a non-finite number reached the report")


def _check_verdict(exp: Expect, run: Run, rc: int | None, text: str, problems: list[tuple[str, str]]) -> None:
    def wrong(s: str) -> None:
        problems.append(("wrong verdict", s))

    if rc not in exp.exit:
        tail = " | ".join(ln for ln in text.strip().splitlines()[-3:])
        wrong(f"exit {rc}, expected {sorted(exp.exit)} ({tail[:300]})")
    for rx in exp.output_has:
        if not re.search(rx, text):
            wrong(f"output lacks {rx!r}")
    for rx in exp.output_not:
        mm = re.search(rx, text)
        if mm:
            wrong(f"output has {rx!r}: {text[max(0, mm.start() - 30) : mm.end() + 30]!r}")
    if run.report is None or rc not in (0, 1):
        return
    if not run.report.is_file():
        wrong(f"no audit report at {run.report.name} after exit {rc}")
        return
    size = run.report.stat().st_size
    if size > REPORT_CAP:
        problems.append(("blow-up", f"audit report {size >> 20} MB"))
        return
    try:
        rep = json.loads(run.report.read_bytes(), parse_constant=_reject_constant)
    except ValueError as e:
        wrong(f"audit report is not JSON: {e}")
        return
    summ = rep.get("summary", {})
    want = {0: "passed", 1: "failed"}[rc]
    if summ.get("verdict") != want:
        wrong(f"report verdict {summ.get('verdict')!r} but exit {rc}")
    if summ.get("exit_status") not in (None, rc):
        wrong(f"report exit_status {summ.get('exit_status')} but exit {rc}")
    batches = rep.get("batches", [])
    if exp.batches is not None and len(batches) != exp.batches:
        wrong(f"report lists {len(batches)} batches, expected {exp.batches}")
    gates: dict[str, list[dict[str, Any]]] = {}
    for b in batches:
        for g in b.get("gates", []):
            gates.setdefault(g.get("gate", "?"), []).append(g)
    for gate, rule in exp.fails:
        got = [g for g in gates.get(gate, []) if g.get("verdict") == "failed"]
        if not got:
            seen = {g.get("verdict") for g in gates.get(gate, [])}
            wrong(f"gate {gate} not failed (verdicts {sorted(map(str, seen))})")
        elif rule is not None and not any(rule in (g.get("counts_by_rule") or {}) for g in got):
            rules = sorted({r for g in got for r in (g.get("counts_by_rule") or {})})
            wrong(f"gate {gate} failed without {rule} (rules {rules})")
    for gate, rx in exp.reasons:
        texts = [str(g.get("reason", "")) for g in gates.get(gate, [])]
        texts += [str(f.get("message", "")) for g in gates.get(gate, []) for f in g.get("findings", [])]
        if not any(re.search(rx, t) for t in texts):
            wrong(f"gate {gate}: no reason or finding matches {rx!r}")
    for gate, rule, n in exp.counts:
        total = sum((g.get("counts_by_rule") or {}).get(rule, 0) for g in gates.get(gate, []))
        if total != n:
            wrong(f"{gate}.{rule} counted {total}, expected {n}")
