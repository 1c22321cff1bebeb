"""Threshold checks for gates whose findings are counted by error type.

The schema and geometry gates both say "at most N (or a rate r) of error type T,
overall and per class", with a severity per type. The rules section looks like::

    [tool.annogate.geometry.thresholds]
    default = { max_count = 0 }
    tiny_box = { max_rate = 0.01, per_class = { person = { max_count = 3 } } }
    area_mismatch = { severity = "warning" }

A type with ``severity = "warning"`` is reported but never fails the gate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from annogate.findings import Finding, Severity, ThresholdCheck

__all__ = ["THRESHOLDS_SCHEMA", "apply_severity", "error_type_checks"]

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
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_LIMIT["properties"],
            "per_class": {"type": "object", "additionalProperties": _LIMIT},
        },
    },
}


def _limit_for(cfg: Mapping[str, Any], rule: str) -> Mapping[str, Any]:
    default = dict(cfg.get("default", {"max_count": 0}))
    default.pop("per_class", None)
    merged = {**default, **cfg.get(rule, {})}
    return merged


def apply_severity(findings: Iterable[Finding], cfg: Mapping[str, Any]) -> list[Finding]:
    """Mark findings of types configured as warnings (returns new Finding objects)."""
    from dataclasses import replace

    out: list[Finding] = []
    for f in findings:
        sev: Severity = _limit_for(cfg, f.rule).get("severity", "error")
        out.append(f if f.severity == sev else replace(f, severity=sev))
    return out


def error_type_checks(
    *,
    findings: Sequence[Finding],
    population: int,
    cfg: Mapping[str, Any],
    class_population: Mapping[str, int] | None = None,
) -> list[ThresholdCheck]:
    """One check per (error type, limit) for every type found or configured.

    Rates are over ``population`` (the number of annotations the gate examined),
    per class over ``class_population[class]``.
    """
    by_rule = Counter(f.rule for f in findings)
    by_rule_class = Counter((f.rule, f.category) for f in findings)
    rules = sorted(set(by_rule) | {k for k in cfg if k != "default"})
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
