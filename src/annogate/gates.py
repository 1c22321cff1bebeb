"""What a gate is, and the context it runs in.

A gate is a pure function ``(batch, context) -> GateResult`` plus the JSON Schema of
its section of the rules (``[tool.annogate.<name>]``). Built-in gates live one per
module in ``annogate.checks``; third-party gates arrive through the ``annogate``
pluggy hooks (see ``annogate.hookspecs``). Nothing here knows about pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annogate.findings import GateResult
from annogate.model import Batch

__all__ = ["Gate", "GateContext"]


@dataclass(kw_only=True)
class GateContext:
    """What a gate may use besides the batch.

    ``section`` is the gate's own part of the rules (pack defaults merged with the
    repository's). ``rules`` is the whole merged rules mapping, for gates that need
    the taxonomy or another gate's settings. ``load`` reads another label file
    (a golden file) through the same readers, cached per session.
    """

    section: Mapping[str, Any]
    rules: Mapping[str, Any]
    base_dir: Path
    load: Callable[[Path], Batch]
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Gate:
    """A named check of a batch: one pytest item per batch and gate."""

    name: str
    run: Callable[[Batch, GateContext], GateResult]
    rules_schema: Mapping[str, Any]
    description: str = ""
    order: int = 100
