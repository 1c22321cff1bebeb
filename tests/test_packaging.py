"""What a user installs: typed package marker, licence, dependency weight."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_py_typed_ships_as_the_classifier_says() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "Typing :: Typed" in meta["project"]["classifiers"]
    assert (ROOT / "src" / "annogate" / "py.typed").is_file()
    assert (ROOT / "LICENSE").is_file()


def test_peers_are_test_or_benchmark_extras_not_runtime() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = " ".join(meta["project"]["dependencies"]).lower()
    for peer in ("faster-coco-eval", "statsmodels", "krippendorff", "scipy"):
        assert peer not in runtime, peer
