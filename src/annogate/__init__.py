"""annogate: quality gates for image-label batches, run as pytest items.

The public API: read a batch into the columnar model, run gates on it, estimate
what its defects cost. The pytest plugin (``annogate.plugin``) is a thin adapter
over the same engine.

Why the re-exports below are lazy (module ``__getattr__``): pytest imports
``annogate.plugin`` in every session of every project where annogate is installed,
and that imports this package first. Eager re-exports would load NumPy, jsonschema,
orjson and the gates (about a second) into test runs that never pass ``--annogate``.

PYTEST_DONT_REWRITE: this package is imported before pytest starts when the
``annogate`` console script runs; the marker tells pytest's assertion rewriter not
to warn that the (assert-free) package could not be rewritten.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annogate.engine import Engine
    from annogate.findings import Finding, GateResult, ThresholdCheck
    from annogate.formats import Format, LoadError, load_batch
    from annogate.gates import Gate, GateContext
    from annogate.hookspecs import hookimpl, hookspec
    from annogate.model import Annotations, Batch, Categories, Images
    from annogate.rules import Rules, RulesError, load_rules

    __version__: str

_EXPORTS: dict[str, str] = {
    "Annotations": "annogate.model",
    "Batch": "annogate.model",
    "Categories": "annogate.model",
    "Engine": "annogate.engine",
    "Finding": "annogate.findings",
    "Format": "annogate.formats",
    "Gate": "annogate.gates",
    "GateContext": "annogate.gates",
    "GateResult": "annogate.findings",
    "Images": "annogate.model",
    "LoadError": "annogate.formats",
    "Rules": "annogate.rules",
    "RulesError": "annogate.rules",
    "ThresholdCheck": "annogate.findings",
    "hookimpl": "annogate.hookspecs",
    "hookspec": "annogate.hookspecs",
    "load_batch": "annogate.formats",
    "load_rules": "annogate.rules",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("annogate")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """Load a re-exported name on first use (see the module docstring for why)."""
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'annogate' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


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
