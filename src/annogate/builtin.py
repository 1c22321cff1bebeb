"""The built-in formats and gates, registered as an ordinary annogate plugin."""

from __future__ import annotations

from annogate.checks import builtin_gates
from annogate.formats import Format, _builtin_formats
from annogate.gates import Gate
from annogate.hookspecs import hookimpl


@hookimpl
def annogate_formats() -> list[Format]:
    return list(_builtin_formats())


@hookimpl
def annogate_gates() -> list[Gate]:
    return builtin_gates()
