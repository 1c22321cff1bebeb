"""Rules files that must be refused with a usage error naming the file and the key.

Each fixture in ``tests/data/invalid/rules/`` starts with ``# expect: <text>``: the
error must name the fixture and contain that text. nan/inf would silently disable
or invert a limit; a ``pack`` outside the repository would let a rules file import
weaker limits from anywhere on the disk; deep nesting must not crash.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from annogate.engine import Engine
from annogate.rules import RulesError, load_rules

DATA = Path(__file__).parent / "data"
INVALID = sorted((DATA / "invalid" / "rules").glob("*.toml"))


def _sections() -> dict[str, object]:
    return dict(Engine().sections)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_rules_are_a_clean_error(path: Path, tmp_path: Path) -> None:
    expect = path.read_bytes().split(b"\n", 1)[0].decode().removeprefix("# expect: ")
    copy = tmp_path / "repo" / "annogate.toml"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    (tmp_path / "x.toml").write_text("[golden]\nmin_recall = 0.0\n")  # what "../x.toml" would load
    with pytest.raises(RulesError) as ei:
        load_rules(copy, sections=_sections())
    msg = str(ei.value)
    assert str(copy.resolve()) in msg and expect in msg, msg


def test_engine_refuses_nan_rules_before_any_gate(tmp_path: Path) -> None:
    rules = tmp_path / "annogate.toml"
    rules.write_text("[golden]\nmin_precision = nan\n")
    with pytest.raises(RulesError, match=r"golden\.min_precision"):
        Engine(rules_path=rules)


def test_pack_inside_the_repository_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "base.toml").write_text('pack = "detection"\n')
    rules = tmp_path / "annogate.toml"
    rules.write_text('pack = ["detection", "team/base.toml"]\n')
    with pytest.raises(RulesError, match="cannot name further packs"):
        load_rules(rules, sections=_sections())
    (tmp_path / "team" / "base.toml").write_text("[golden]\nmin_recall = 0.5\n")
    r = load_rules(rules, sections=_sections())
    assert r.data["golden"]["min_recall"] == 0.5 and r.data["golden"]["min_precision"] == 0.9
    assert r.packs == ("detection", "team/base.toml")


def test_pack_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.toml"
    outside.write_text("[golden]\nmin_recall = 0.0\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "base.toml").symlink_to(outside)
    (repo / "annogate.toml").write_text('pack = "base.toml"\n')
    with pytest.raises(RulesError, match="not a file inside"):
        load_rules(repo / "annogate.toml", sections=_sections())


def test_nan_elsewhere_in_pyproject_is_not_ours(tmp_path: Path) -> None:
    pp = tmp_path / "pyproject.toml"
    pp.write_text("[tool.other]\nx = nan\n[tool.annogate.golden]\nmin_recall = 0.8\n")
    assert load_rules(pp, sections=_sections()).data["golden"]["min_recall"] == 0.8
    pp.write_text("[tool.annogate.golden]\nmin_recall = inf\n")
    with pytest.raises(RulesError, match=r"golden\.min_recall"):
        load_rules(pp, sections=_sections())
