"""The machine-readable audit report: what was checked, against which rules, with what result.

Why: a dataset pull request is accepted or refused on this record, so it must be
reproducible and comparable between runs. Everything in it is deterministic
(keys sorted, batches sorted by path, gates by name, findings and checks in a
stable order) except ``generated_at``; the rules are stored with their SHA-256 and
each input file with its own, so a reviewer can tell exactly what was gated.
The shape is described by ``annogate/schemas/report.schema.json``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annogate.findings import Finding, GateResult, ThresholdCheck

if TYPE_CHECKING:
    from annogate.report import BatchOutcome

__all__ = [
    "REPORT_FORMAT",
    "atomic_write_text",
    "build_report",
    "dumps",
    "finding_sort_key",
    "merge_reports",
    "plain",
    "schema_path",
    "summarise_batches",
    "write_report",
]

#: Identifies the document type and its major version (bump on incompatible change).
REPORT_FORMAT = "annogate-report/1"


def schema_path() -> Path:
    """Where the shipped JSON Schema of the report lives."""
    return Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"


def plain(obj: Any) -> Any:
    """Plain, strict-JSON Python: NumPy to Python, non-finite floats to None, keys sorted.

    Strict JSON has no NaN/Infinity; None says "not measured" without breaking
    other tools' parsers.
    """
    if isinstance(obj, Mapping):
        return {str(k): plain(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def finding_sort_key(f: Finding) -> tuple[Any, ...]:
    """Stable order of findings: by file, line, annotation, then rule and message.

    Gates may run in parallel or in any order; sorting makes two runs on the same
    input produce the same report byte for byte (apart from ``generated_at``).
    """
    return (
        f.file,
        f.line if f.line is not None else -1,
        f.annotation_id if f.annotation_id is not None else -1,
        f.gate,
        f.rule,
        f.message,
        f.pointer or "",
    )


def _check_key(c: ThresholdCheck) -> tuple[Any, ...]:
    return (c.metric, c.scope, c.op, c.limit, c.severity)


def _gate(g: GateResult) -> dict[str, Any]:
    checks = sorted(g.checks, key=_check_key)
    findings = sorted(g.findings, key=finding_sort_key)
    return {
        "gate": g.gate,
        "verdict": g.verdict,
        "population": g.population,
        "reason": g.reason,
        "metrics": g.metrics,
        "checks": [c.to_dict() for c in checks],
        "failed_checks": sum(1 for c in checks if not c.passed and c.severity == "error"),
        "findings": [f.to_dict() for f in findings],
        "counts_by_rule": dict(g.counts_by_rule()),
        "tables": g.tables,
        "cost": None if g.cost is None else g.cost.to_dict(),
    }


def _batch(o: BatchOutcome) -> dict[str, Any]:
    return {
        "path": o.path,
        "sha256": o.sha256,
        "format": o.format,
        "n_annotations": o.n_annotations,
        "verdict": o.verdict,
        "defects_by_gate": o.defects_by_gate(),
        "gates": [_gate(g) for g in sorted(o.gates, key=lambda g: g.gate)],
        "cost": None if o.cost is None else o.cost.to_dict(),
        "rules": {"path": o.rules_path, "sha256": o.rules_sha256 or None},
    }


def _rules_files(batches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every rules file that judged a batch, with its digest and the batches it judged."""
    by: dict[tuple[str, str], list[str]] = {}
    for b in batches:
        r = b.get("rules") or {}
        by.setdefault((r.get("path") or "", r.get("sha256") or ""), []).append(str(b["path"]))
    return [
        {"path": path or None, "sha256": sha or None, "batches": sorted(paths)}
        for (path, sha), paths in sorted(by.items())
    ]


_TOTAL_KEYS = ("direct", "qa", "rework", "downstream", "total", "rework_low", "rework_high", "total_low", "total_high")


def _totals(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Cost totals per currency, summed from the batches' cost blocks."""
    by_currency: dict[str, dict[str, float]] = {}
    for b in batches:
        c = b.get("cost")
        if not c:
            continue
        t = by_currency.setdefault(str(c["currency"]), dict.fromkeys(_TOTAL_KEYS, 0.0))
        sc = c.get("scenarios") or {}
        low, high = sc.get("low") or {}, sc.get("high") or {}
        for key in ("direct", "qa", "rework", "downstream", "total"):
            t[key] += float(c.get(key) or 0.0)
        t["rework_low"] += float(low.get("rework") or 0.0)
        t["rework_high"] += float(high.get("rework") or 0.0)
        t["total_low"] += float(low.get("total") or 0.0)
        t["total_high"] += float(high.get("total") or 0.0)
    out: dict[str, Any] = {}
    for cur, t in sorted(by_currency.items()):
        ratio = (t["qa"] + t["rework"] + t["downstream"]) / t["direct"] if t["direct"] else None
        out[cur] = {**t, "overhead_ratio": ratio}
    return out


def summarise_batches(batches: Sequence[Mapping[str, Any]], *, exit_status: int | None = None) -> dict[str, Any]:
    """The report's ``summary`` from its (plain) batch entries.

    One function for a session's report and for ``annogate merge`` of CI shards, so
    a merged report says exactly what one run over all the batches would have said.
    """
    verdicts = [str(b.get("verdict")) for b in batches]
    verdict = "failed" if "failed" in verdicts else ("passed" if "passed" in verdicts else "skipped")
    if exit_status is not None and exit_status not in (0, 5):  # pytest: OK, NO_TESTS_COLLECTED
        verdict = "failed"
    return {
        "verdict": verdict,
        "batches": len(batches),
        "failed": verdicts.count("failed"),
        "passed": verdicts.count("passed"),
        "skipped": verdicts.count("skipped"),
        "annotations": sum(int(b.get("n_annotations") or 0) for b in batches),
        "defects": sum(sum(int(v) for v in (b.get("defects_by_gate") or {}).values()) for b in batches),
        "cost": _totals(batches),
        **({} if exit_status is None else {"exit_status": int(exit_status)}),
    }


def build_report(
    outcomes: Sequence[BatchOutcome],
    *,
    rules: Mapping[str, Any],
    rules_path: str | None,
    rules_sha256: str | None,
    version: str,
    generated_at: datetime | None = None,
    exit_status: int | None = None,
) -> dict[str, Any]:
    """The audit report of a session as plain JSON-able Python (see the module docstring).

    ``generated_at`` defaults to now (UTC); tests pass a fixed time. ``exit_status``
    is the runner's (pytest's) exit status: when it says the session failed (a
    collection error, an internal error, an item that failed outside any gate), the
    report's verdict is ``failed`` too, whatever the batches say, so the report and
    the CI status never disagree.
    """
    items = sorted(outcomes, key=lambda o: (o.path, o.sha256))
    batches = [plain(_batch(o)) for o in items]
    when = (generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    report = {
        "report_format": REPORT_FORMAT,
        "annogate_version": version,
        "generated_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "rules": {"path": rules_path, "sha256": rules_sha256, "content": dict(rules)},
        "summary": summarise_batches(batches, exit_status=exit_status),
        "rules_files": _rules_files(batches),
        "batches": batches,
    }
    result: dict[str, Any] = plain(report)
    return result


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report from the reports of CI shards (``--annogate-shard K/N``).

    Batches are taken as they are (a batch gated by two shards is kept once, and
    must be identical), sorted by path as in any report; the summary is recomputed
    by :func:`summarise_batches`. The exit status is the worst shard's (a shard that
    collected nothing does not count), so the merged verdict is what one run over
    all batches would give.
    """
    if not reports:
        raise ValueError("no reports to merge")
    batches: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in reports:
        if not str(r.get("report_format", "")).startswith("annogate-report/"):
            raise ValueError("not an annogate audit report")
        for b in r.get("batches", []):
            key = (str(b["path"]), str(b.get("sha256", "")))
            if key in batches and plain(batches[key]) != plain(b):
                raise ValueError(f"batch {key[0]} differs between the reports")
            batches[key] = b
    items = [batches[k] for k in sorted(batches)]
    statuses = [int(s) for r in reports if (s := (r.get("summary") or {}).get("exit_status")) is not None]
    real = [s for s in statuses if s != 5]
    status = max(real) if real else (5 if statuses else None)
    first = reports[0]
    merged = {
        "report_format": first["report_format"],
        "annogate_version": first.get("annogate_version"),
        "generated_at": max(str(r.get("generated_at", "")) for r in reports),
        "rules": first.get("rules"),
        "summary": summarise_batches(items, exit_status=status),
        "rules_files": _rules_files(items),
        "batches": items,
    }
    result: dict[str, Any] = plain(merged)
    return result


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of it.

    A temporary file in the target's folder (same file system, so ``os.replace`` is
    an atomic rename), flushed and fsynced first; removed if anything fails. The file
    gets ``0o666 & ~umask`` like any file the user creates (``mkstemp`` alone would
    leave 0600, unreadable to the CI user who uploads it). A symlinked target is
    written through (the link stays); a FIFO, device or socket is refused rather
    than replaced by a regular file.
    """
    from annogate.report.outputs import OutputError, special_kind

    target = Path(os.path.realpath(path))
    try:
        kind = special_kind(os.stat(target).st_mode)
    except FileNotFoundError:
        kind = None
    if kind:
        raise OutputError(f"{path}: is {kind}; annogate writes regular files only and never replaces {kind}")
    if target.is_dir():
        raise OutputError(f"{path}: is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dumps(report: Mapping[str, Any]) -> str:
    """Canonical text of a report: sorted keys, strict JSON, two-space indent, final newline."""
    return json.dumps(plain(report), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_report(path: str | os.PathLike[str], report: Mapping[str, Any]) -> None:
    """Write the report atomically as canonical JSON."""
    atomic_write_text(path, dumps(report))
