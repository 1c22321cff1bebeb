"""Threshold checks for gates whose findings are counted by error type.

The schema and geometry gates both say "at most N (or a rate r) of error type T,
overall and per class", with a severity per type. The rules section looks like::

    [tool.annogate.geometry.thresholds]
    default = { max_count = 0 }
    tiny_box = { max_rate = 0.01, per_class = { person = { max_count = 3 } } }
    area_mismatch = { severity = "warning" }

A type with ``severity = "warning"`` is reported but never fails the gate.

``max_findings_per_rule = N`` in the same section (default 1000) bounds how many
findings of each type the result keeps; every defect is still counted, and the
limits above are judged on those counts (see :class:`annogate.findings.Tally`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from annogate.findings import DEFAULT_MAX_FINDINGS_PER_RULE, Finding, Severity, Tally, ThresholdCheck

__all__ = ["MAX_FINDINGS_KEY", "THRESHOLDS_SCHEMA", "apply_severity", "error_type_checks", "max_findings_per_rule"]

#: The thresholds key that caps findings kept per error type (not an error type itself).
MAX_FINDINGS_KEY = "max_findings_per_rule"

_LIMIT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_count": {"type": "integer", "minimum": 0},
        "max_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "severity": {"enum": ["error", "warning"]},
    },
}

THRESHOLDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Per error type: max_count / max_rate, severity, per_class overrides.",
    "properties": {
        MAX_FINDINGS_KEY: {
            "type": "integer",
            "minimum": 0,
            "description": f"Findings kept per error type (default {DEFAULT_MAX_FINDINGS_PER_RULE}); "
            "all are counted and judged, the rest are left out of results and reports.",
        }
    },
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_LIMIT["properties"],
            "per_class": {"type": "object", "additionalProperties": _LIMIT},
        },
    },
}


def max_findings_per_rule(cfg: Mapping[str, Any]) -> int:
    """The cap on findings kept per error type that a thresholds section sets."""
    v = cfg.get(MAX_FINDINGS_KEY, DEFAULT_MAX_FINDINGS_PER_RULE)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:  # the schema refuses these; never trust a dict
        raise ValueError(f"{MAX_FINDINGS_KEY} must be an integer >= 0, got {v!r}")
    return v


def _limit_for(cfg: Mapping[str, Any], rule: str) -> Mapping[str, Any]:
    default = dict(cfg.get("default", {"max_count": 0}))
    default.pop("per_class", None)
    merged = {**default, **cfg.get(rule, {})}
    return merged


def severity_for(cfg: Mapping[str, Any], rule: str) -> Severity:
    """The severity the rules give an error type (``error`` unless made a warning)."""
    sev: Severity = _limit_for(cfg, rule).get("severity", "error")
    return sev


def apply_severity(findings: Iterable[Finding], cfg: Mapping[str, Any]) -> list[Finding]:
    """Mark findings of types configured as warnings (returns new Finding objects)."""
    from dataclasses import replace

    out: list[Finding] = []
    for f in findings:
        sev = severity_for(cfg, f.rule)
        out.append(f if f.severity == sev else replace(f, severity=sev))
    return out


def error_type_checks(
    *,
    findings: Sequence[Finding] = (),
    population: int,
    cfg: Mapping[str, Any],
    class_population: Mapping[str, int] | None = None,
    tally: Tally | None = None,
) -> list[ThresholdCheck]:
    """One check per (error type, limit) for every type found or configured.

    Rates are over ``population`` (the number of annotations the gate examined),
    per class over ``class_population[class]``. Counts come from ``tally`` (every
    defect, including findings not kept) when given, else from ``findings``.
    """
    t = tally if tally is not None else Tally.of(findings)
    by_rule: Counter[str] = t.by_rule
    by_rule_class: Counter[tuple[str, str | None]] = t.by_rule_class
    rules = sorted({r for r, n in by_rule.items() if n} | {k for k in cfg if k not in ("default", MAX_FINDINGS_KEY)})
    checks: list[ThresholdCheck] = []
    for rule in rules:
        lim = _limit_for(cfg, rule)
        sev: Severity = lim.get("severity", "error")
        n = by_rule.get(rule, 0)
        if "max_count" in lim:
            checks.append(
                ThresholdCheck(
                    metric=f"{rule}.count",
                    scope="overall",
                    value=float(n),
                    limit=float(lim["max_count"]),
                    op="<=",
                    severity=sev,
                )
            )
        if "max_rate" in lim:
            rate = n / population if population else 0.0
            checks.append(
                ThresholdCheck(
                    metric=f"{rule}.rate",
                    scope="overall",
                    value=rate,
                    limit=float(lim["max_rate"]),
                    op="<=",
                    severity=sev,
                )
            )
        for cls, clim in cfg.get(rule, {}).get("per_class", {}).items():
            csev: Severity = clim.get("severity", sev)
            cn = by_rule_class.get((rule, cls), 0)
            if "max_count" in clim:
                checks.append(
                    ThresholdCheck(
                        metric=f"{rule}.count",
                        scope=f"class:{cls}",
                        value=float(cn),
                        limit=float(clim["max_count"]),
                        op="<=",
                        severity=csev,
                    )
                )
            if "max_rate" in clim:
                cpop = (class_population or {}).get(cls, 0)
                checks.append(
                    ThresholdCheck(
                        metric=f"{rule}.rate",
                        scope=f"class:{cls}",
                        value=cn / cpop if cpop else 0.0,
                        limit=float(clim["max_rate"]),
                        op="<=",
                        severity=csev,
                    )
                )
    return checks
