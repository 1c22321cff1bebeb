"""annogate's own pluggy hook specifications (project name ``annogate``).

Third-party packages extend annogate the way pytest plugins extend pytest: a
module registered under the ``annogate`` entry-point group implements any of
these hooks with ``@annogate.hookimpl``.
"""

from __future__ import annotations

import pluggy

from annogate.formats import Format
from annogate.gates import Gate

hookspec = pluggy.HookspecMarker("annogate")
hookimpl = pluggy.HookimplMarker("annogate")


@hookspec
def annogate_formats() -> list[Format]:  # type: ignore[empty-body]
    """Return label formats (readers) this plugin adds."""


@hookspec
def annogate_gates() -> list[Gate]:  # type: ignore[empty-body]
    """Return gates this plugin adds; each becomes one pytest item per batch."""
