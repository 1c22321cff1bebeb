"""annogate: quality gates for image-label batches, run as pytest items.

The public API: read a batch into the columnar model, run gates on it, estimate
what its defects cost. The pytest plugin (``annogate.plugin``) is a thin adapter
over the same engine.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from annogate.engine import Engine
from annogate.findings import Finding, GateResult, ThresholdCheck
from annogate.formats import Format, LoadError, load_batch
from annogate.gates import Gate, GateContext
from annogate.hookspecs import hookimpl, hookspec
from annogate.model import Annotations, Batch, Categories, Images
from annogate.rules import Rules, RulesError, load_rules

try:
    __version__ = version("annogate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Annotations",
    "Batch",
    "Categories",
    "Engine",
    "Finding",
    "Format",
    "Gate",
    "GateContext",
    "GateResult",
    "Images",
    "LoadError",
    "Rules",
    "RulesError",
    "ThresholdCheck",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_batch",
    "load_rules",
]
