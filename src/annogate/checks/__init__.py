"""The gates: one module per gate, each exposing ``GATE``.

Order of items in a batch follows ``Gate.order``. To add a gate, write a module
with a ``GATE`` and list it here (built-in) or return it from the
``annogate_gates`` hook (third-party).
"""

from __future__ import annotations

from importlib import import_module

from annogate.gates import Gate

__all__ = ["BUILTIN_GATE_MODULES", "builtin_gates"]

BUILTIN_GATE_MODULES = ("schema", "geometry", "golden", "confusion", "agreement")


def builtin_gates() -> list[Gate]:
    return [import_module(f"annogate.checks.{m}").GATE for m in BUILTIN_GATE_MODULES]
