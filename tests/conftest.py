"""Shared fixtures: the third-party data folder and batch builders.

``thirdparty`` points at ``../shared/thirdparty`` beside the repository (real label
files from other projects, never copied here); tests that need it skip with a
reason when it is absent, as it is in a user's clone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The plugin loads the engine (and NumPy) only under --annogate. In-process pytester
# runs restore sys.modules afterwards, and NumPy cannot be imported twice in one
# process: load it here, in the outer session, so every inner run shares it.
import annogate.engine
import annogate.session  # noqa: F401

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
THIRDPARTY = REPO.parent / "shared" / "thirdparty"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def thirdparty() -> Path:
    if not THIRDPARTY.is_dir():
        pytest.skip(f"third-party data not present at {THIRDPARTY}")
    return THIRDPARTY


@pytest.fixture
def write_coco(tmp_path: Path) -> Callable[..., Path]:
    """Write a COCO dict (pretty-printed, so lines are meaningful) and return its path."""

    def _write(data: Any, name: str = "batch.json") -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(data, indent=1))
        return p

    return _write
