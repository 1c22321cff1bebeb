"""Finding, reading, validating and merging the rules of a label repository.

Rules live in ``[tool.annogate]`` of a ``pyproject.toml`` or at the top level of an
``annogate.toml`` (the nearest one above the batch wins), or in a file given with
``--annogate-rules``. A rules file may start from built-in packs (``pack =
"detection"``) kept in the project's top-level ``rules/`` folder, or from a TOML
file inside its own folder tree (``pack = "team/base.toml"``): never from anywhere
else on the disk, so a rules file cannot pull in limits from outside the repository.
Everything is validated against a JSON Schema composed from each gate's own section
schema, so a misspelt key is an error that names the key and the file, not a silent
default. Every number must be finite (TOML allows ``nan`` and ``inf``, which would
turn each threshold comparison into a silent pass or fail) and nesting is shallow.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Rules", "RulesError", "find_rules_file", "load_rules", "packs_dir", "rules_schema"]

RULES_FILE = "annogate.toml"
MAX_DEPTH = 32  # nesting of tables/arrays in a rules file; the deepest real rule is 4
_PACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class RulesError(ValueError):
    """A rules file that cannot be used: names the file and the offending key."""


@lru_cache(maxsize=1)
def packs_dir() -> Path:
    """The built-in packs: inside the wheel (``annogate/rules``) or the source checkout's ``rules/``."""
    here = Path(__file__).resolve().parent
    for cand in (here / "rules", here.parents[1] / "rules"):
        if (cand / "detection.toml").is_file():
            return cand
    raise RulesError("built-in rule packs not found (annogate installation is incomplete)")


@dataclass(frozen=True, kw_only=True)
class Rules:
    """The rules in force for a batch: merged data, where they came from, and a digest."""

    data: Mapping[str, Any]
    path: Path | None
    sha256: str
    packs: tuple[str, ...] = ()
    base_dir: Path = field(default_factory=Path.cwd)

    def section(self, name: str) -> Mapping[str, Any]:
        sec = self.data.get(name, {})
        return sec if isinstance(sec, Mapping) else {}

    def golden_file(self) -> Path | None:
        f = self.section("golden").get("file")
        return (self.base_dir / str(f)).resolve() if f else None


_TOP_SCHEMA: dict[str, Any] = {
    "pack": {
        "description": "Built-in rule pack(s) to start from: detection, segmentation, keypoints.",
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
        ],
    },
    "format": {
        "description": (
            "Force a format instead of detecting it: one name for every batch under these rules, or a table "
            'of glob (relative to the rules file\'s folder) -> name, e.g. { "labels/**" = "yolo" }; the first '
            "matching glob decides. A folder format (yolo, voc, labelme) makes the matching folder one batch."
        ),
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        ],
    },
    "batches": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "description": (
            "Glob patterns (relative to the rules file's folder; ** crosses folders) of what is in scope. "
            "Without it, every path given and every file below a given folder with a reader's suffix is."
        ),
    },
    "annotator_from": {
        "type": "string",
        "minLength": 1,
        "description": (
            'Where a folder batch\'s layout names the annotator: "parent_dir" (the folder holding each file) '
            "or a regular expression with a group (?P<annotator>...) searched in the file's path relative to "
            "the batch folder."
        ),
    },
    "images": {
        "type": "string",
        "maxLength": 4096,
        "description": "Folder (relative to the rules file) holding the images, for the HTML report's thumbnails.",
    },
    "annotator_field": {
        "type": "string",
        "description": "Dotted field holding the annotator, e.g. attributes.annotator.",
    },
    "cohort_field": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": (
            "Per-annotation field naming the annotator's cohort (vendor, shift, tool version), e.g. vendor "
            "(COCO: dotted like attributes.vendor; CVAT/VOC/Label Studio/LabelMe: the object's attribute). "
            "Each annotator's cohort is the value most of their annotations carry; [cost] cohorts wins over it."
        ),
    },
    "exclude": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Glob patterns of files that are not batches.",
    },
    "taxonomy": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "classes": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "aliases": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


def rules_schema(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The whole rules schema: fixed top-level keys plus one section per gate/cost model."""
    props: dict[str, Any] = dict(_TOP_SCHEMA)
    for name, sch in sections.items():
        props[name] = sch
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }


def find_rules_file(start: Path) -> Path | None:
    """The nearest ``annogate.toml`` or ``pyproject.toml`` with ``[tool.annogate]`` above ``start``."""
    d = start if start.is_dir() else start.parent
    for cand_dir in (d, *d.parents):
        own = cand_dir / RULES_FILE
        if own.is_file():
            return own
        pp = cand_dir / "pyproject.toml"
        if pp.is_file() and _has_tool_section(pp):
            return pp
    return None


@lru_cache(maxsize=256)
def _has_tool_section(pp: Path) -> bool:
    try:
        return "annogate" in tomllib.loads(_read_regular(pp).decode("utf-8")).get("tool", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        return False


MAX_RULES_BYTES = 16 << 20  # a rules file is a few KB; anything near this is not one


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, opened without blocking and checked before reading.

    Why: ``--annogate-rules`` (or a ``pack``) naming a FIFO would block the session
    forever in ``read``, and a device (``/dev/zero``) would fill memory. The file is
    opened non-blocking and checked with ``fstat`` on the open descriptor (no race
    with a swap after a path check); only a regular file under the size cap is read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file ({_kind(st.st_mode)}); rules are read only from regular files")
        if st.st_size > MAX_RULES_BYTES:
            raise OSError(f"{st.st_size} bytes, larger than the {MAX_RULES_BYTES}-byte limit for a rules file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_RULES_BYTES + 1)[:MAX_RULES_BYTES]
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "a special file"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(_read_regular(path).decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise RulesError(f"{path}: not valid TOML: not UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise RulesError(f"{path}: not valid TOML: nested too deeply") from None
    except OSError as e:
        raise RulesError(f"{path}: cannot read rules: {e.strerror or e}") from None
    return data


def _check_values(data: Any, where: str) -> None:
    """Every number finite and nesting shallow, over the whole parsed file (not key by key).

    Why generic: any threshold, tolerance, price or rate compared against ``nan``
    passes or fails silently, and ``inf`` disables a limit; a new gate's keys are
    covered without listing them. Iterative, so deep nesting cannot overflow here.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise RulesError(f"{where}: {_key(path[:MAX_DEPTH])}...: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, float) and not math.isfinite(value):
            raise RulesError(f"{where}: bad value for {_key(path)}: {value} (numbers in rules must be finite)")
        if isinstance(value, dict):
            stack.extend((v, (*path, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, str(i))) for i, v in enumerate(value))


def _key(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(top level)"


def _user_rules(path: Path) -> dict[str, Any]:
    doc = _read_toml(path)
    if path.name == "pyproject.toml":
        tool = doc.get("tool", {})
        data = tool.get("annogate", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise RulesError(f"{path}: [tool.annogate] must be a table")
        _check_values(data, str(path))
        return data
    _check_values(doc, str(path))
    return doc


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Accept the short forms ``golden = "file.json"`` for ``[golden] file = ...`` and
    ``golden = "consensus"`` for ``[golden] reference = "consensus"``."""
    if data.get("golden") == "consensus":
        data = {**data, "golden": {"reference": "consensus"}}
    elif isinstance(data.get("golden"), str):
        data = {**data, "golden": {"file": data["golden"]}}
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _validate(data: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    e = errors[0]
    key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        where_key = f"{key}." if e.absolute_path else ""
        raise RulesError(f"{where}: unknown key {where_key}{extra[0] if extra else '?'} ({e.message})")
    raise RulesError(f"{where}: bad value for {key}: {e.message}")


def _check_annotator_from(data: Mapping[str, Any], where: str) -> None:
    """``annotator_from``: "parent_dir" or a regular expression with a group named annotator."""
    spec = data.get("annotator_from")
    if spec is None or spec == "parent_dir":
        return
    try:
        pattern = re.compile(str(spec))
    except re.error as e:
        raise RulesError(f"{where}: bad value for annotator_from: {spec!r} is not a regular expression ({e})") from None
    if "annotator" not in pattern.groupindex:
        raise RulesError(
            f'{where}: bad value for annotator_from: {spec!r} is neither "parent_dir" nor a regular expression '
            "with a group (?P<annotator>...)"
        )


def _pack_file(name: str, rules_file: Path | None, where: str) -> Path:
    """The file a ``pack`` names: a built-in pack, or a TOML file inside the rules file's folder tree.

    Absolute paths, ``..`` and symlinks leading out of that tree are refused, so a
    rules file cannot load (and be weakened by) any TOML elsewhere on the disk.
    """
    if _PACK_NAME.fullmatch(name):
        pfile = packs_dir() / f"{name}.toml"
        if pfile.is_file():
            return pfile
        avail = ", ".join(sorted(p.stem for p in packs_dir().glob("*.toml")))
        raise RulesError(f"{where}: unknown key value pack = {name!r} (built-in packs: {avail})")
    root = rules_file.parent if rules_file is not None else None
    if root is None or Path(name).is_absolute() or ".." in Path(name).parts or not name.endswith(".toml"):
        raise RulesError(
            f"{where}: bad value for pack: {name!r} is neither a built-in pack nor a relative path to a .toml "
            "file inside the rules file's folder"
        )
    pfile = (root / name).resolve()
    if not pfile.is_relative_to(root) or not pfile.is_file():
        raise RulesError(f"{where}: bad value for pack: {name!r} is not a file inside {root}")
    return pfile


def load_rules(
    path: Path | None,
    *,
    sections: Mapping[str, Mapping[str, Any]],
    default_pack: str | None = None,
) -> Rules:
    """Read, validate and merge rules (packs first, then the file's own values).

    ``path`` None means no rules file: the default pack alone (if any) applies.
    """
    schema = rules_schema(sections)
    user: dict[str, Any] = {}
    where = "built-in defaults"
    raw = b""
    if path is not None:
        path = path.resolve()
        where = str(path)
        user = _normalise(_user_rules(path))
        try:
            raw = _read_regular(path)
        except OSError as e:
            raise RulesError(f"{where}: cannot read rules: {e.strerror or e}") from None
        _validate(user, schema, where)
        _check_annotator_from(user, where)
    packs_v = user.get("pack", default_pack)
    packs: Sequence[str] = [packs_v] if isinstance(packs_v, str) else list(packs_v or [])
    merged: dict[str, Any] = {}
    for name in packs:
        pfile = _pack_file(name, path, where)
        pdata = _normalise(_user_rules(pfile))
        if "pack" in pdata:
            raise RulesError(f"{pfile}: a pack cannot name further packs (pack = {pdata['pack']!r})")
        _validate(pdata, schema, str(pfile))
        merged = _merge(merged, pdata)
        raw += _read_regular(pfile)
    merged = _merge(merged, {k: v for k, v in user.items() if k != "pack"})
    return Rules(
        data=merged,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        packs=tuple(packs),
        base_dir=path.parent if path is not None else Path.cwd(),
    )
