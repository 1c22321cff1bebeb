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
    "plain",
    "schema_path",
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


def _rules_files(items: Sequence[BatchOutcome]) -> list[dict[str, Any]]:
    """Every rules file that judged a batch, with its digest and the batches it judged."""
    by: dict[tuple[str | None, str], list[str]] = {}
    for o in items:
        by.setdefault((o.rules_path, o.rules_sha256), []).append(o.path)
    return [
        {"path": path, "sha256": sha or None, "batches": sorted(paths)}
        for (path, sha), paths in sorted(by.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    ]


def _totals(outcomes: Sequence[BatchOutcome]) -> dict[str, Any]:
    by_currency: dict[str, dict[str, float]] = {}
    for o in outcomes:
        if o.cost is None:
            continue
        t = by_currency.setdefault(
            o.cost.currency,
            {
                "direct": 0.0,
                "qa": 0.0,
                "rework": 0.0,
                "downstream": 0.0,
                "total": 0.0,
                "rework_low": 0.0,
                "rework_high": 0.0,
            },
        )
        t["direct"] += o.cost.direct
        t["qa"] += o.cost.qa
        t["rework"] += o.cost.rework
        t["downstream"] += o.cost.downstream
        t["total"] += o.cost.total
        t["rework_low"] += o.cost.low.rework
        t["rework_high"] += o.cost.high.rework
    out: dict[str, Any] = {}
    for cur, t in by_currency.items():
        ratio = (t["qa"] + t["rework"] + t["downstream"]) / t["direct"] if t["direct"] else None
        out[cur] = {**t, "overhead_ratio": ratio}
    return out


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
    verdicts = [o.verdict for o in items]
    verdict = "failed" if "failed" in verdicts else ("passed" if "passed" in verdicts else "skipped")
    if exit_status is not None and exit_status not in (0, 5):  # pytest: OK, NO_TESTS_COLLECTED
        verdict = "failed"
    when = (generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    report = {
        "report_format": REPORT_FORMAT,
        "annogate_version": version,
        "generated_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "rules": {"path": rules_path, "sha256": rules_sha256, "content": dict(rules)},
        "summary": {
            "verdict": verdict,
            "batches": len(items),
            "failed": verdicts.count("failed"),
            "passed": verdicts.count("passed"),
            "skipped": verdicts.count("skipped"),
            "annotations": sum(o.n_annotations for o in items),
            "defects": sum(sum(o.defects_by_gate().values()) for o in items),
            "cost": _totals(items),
            **({} if exit_status is None else {"exit_status": int(exit_status)}),
        },
        "rules_files": _rules_files(items),
        "batches": [_batch(o) for o in items],
    }
    result: dict[str, Any] = plain(report)
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
