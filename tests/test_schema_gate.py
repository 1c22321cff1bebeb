"""The schema gate on one fixture per defect, and on real COCO data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from annogate.engine import Engine
from annogate.formats import load_batch

DATA = Path(__file__).parent / "data"
INVALID = sorted(p for p in (DATA / "invalid" / "coco").glob("*.json"))
VALID = sorted((DATA / "valid" / "coco").glob("*.json"))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(rules_path=DATA / "taxonomy.toml")


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_defect_fails_with_its_rule(engine: Engine, path: Path) -> None:
    rule = path.stem.split("__")[0]
    result = engine.run_gate(path, "schema")
    assert result.verdict == "failed"
    rules = {f.rule for f in result.findings}
    assert rule in rules, (rule, [f.message for f in result.findings])
    for f in result.findings:
        assert Path(f.file).resolve() == path.resolve()
        assert f.message
        if f.rule not in ("unreadable",):
            assert f.pointer is None or f.pointer.startswith("/")
    if rule == "unreadable":
        # the other gates cannot run and say why
        other = engine.run_gate(path, engine.gates[-1].name) if len(engine.gates) > 1 else None
        assert other is None or other.verdict == "skipped"


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_files_pass(engine: Engine, path: Path) -> None:
    result = engine.run_gate(path, "schema")
    assert result.verdict == "passed", [f.message for f in result.findings]
    assert result.findings == []


def test_finding_names_line_pointer_and_id(engine: Engine) -> None:
    path = DATA / "invalid" / "coco" / "dangling_image_id__no_such_image.json"
    (f,) = [f for f in engine.run_gate(path, "schema").findings if f.rule == "dangling_image_id"]
    lines = path.read_text().split("\n")
    assert f.annotation_id == 11 and f.pointer == "/annotations/1"
    assert f.line is not None and lines[f.line - 1] == "  {" and '"id": 11' in lines[f.line]
    assert "99" in f.message


def test_jsonschema_message_and_pointer(engine: Engine) -> None:
    path = DATA / "invalid" / "coco" / "schema__bbox_has_string.json"
    msgs = [f for f in engine.run_gate(path, "schema").findings if f.rule == "schema"]
    assert any(f.pointer == "/annotations/1/bbox/2" and "'3' is not of type 'number'" in f.message for f in msgs)


def test_warning_severity_does_not_fail(tmp_path: Path) -> None:
    rules = tmp_path / "annogate.toml"
    rules.write_text('[schema.thresholds]\ndangling_image_id = { severity = "warning" }\n')
    batch = tmp_path / "b.json"
    batch.write_text((DATA / "invalid" / "coco" / "dangling_image_id__no_such_image.json").read_text())
    result = Engine().run_gate(batch, "schema")
    assert result.verdict == "passed"
    assert [f.severity for f in result.findings] == ["warning"]


def test_real_coco_val2014_passes_schema(thirdparty: Path) -> None:
    path = thirdparty / "faster_coco_eval/tests/dataset/cocoapi/instances_val2014_100.json"
    result = Engine().run_gate(path, "schema")
    assert result.verdict == "passed", [f.message for f in result.findings[:5]]
    assert result.metrics["annotations"] == 839


@pytest.mark.parametrize("key", ["categories", "images", "annotations", "info"])
def test_duplicate_top_level_key_fails(engine: Engine, tmp_path: Path, key: str) -> None:
    """A JSON parser keeps the last of two equal keys: the first array would be judged by nobody."""
    doc = json.loads((DATA / "valid" / "coco" / "minimal.json").read_text())
    body = json.dumps(doc)[1:-1]
    spelt = key.replace("a", "\\u0061", 1)
    p = tmp_path / "b.json"
    p.write_text("{" + body + f', "{spelt}": ' + json.dumps(doc.get(key, {})) + "}")
    result = engine.run_gate(p, "schema")
    assert result.verdict == "failed"
    (f,) = [f for f in result.findings if f.rule == "duplicate_key"]
    assert f.pointer == f"/{key}" and key in f.message


# -- ids are exact: every dangling, duplicate or inexact id is a finding ----------------


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "valid" / "coco" / "minimal.json").read_text())
    for path, value in changes.items():
        key, index, field = path.split("__")
        doc[key][int(index)][field] = value
    return doc


def _schema(engine: Engine, tmp_path: Path, doc: Any) -> list[tuple[str, str | None]]:
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc, indent=1))
    result = engine.run_gate(p, "schema")
    assert result.verdict == ("failed" if result.findings else "passed")
    return sorted((f.rule, f.pointer) for f in result.findings)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"annotations__0__image_id": -5}, [("dangling_image_id", "/annotations/0")]),
        ({"annotations__1__category_id": -3}, [("dangling_category_id", "/annotations/1")]),
        ({"annotations__0__image_id": -1}, [("dangling_image_id", "/annotations/0")]),
        ({"annotations__0__image_id": 1.0}, [("schema", "/annotations/0/image_id")]),
        (
            {"images__0__id": 2.0},
            [
                ("dangling_image_id", "/annotations/0"),
                ("dangling_image_id", "/annotations/1"),
                ("schema", "/images/0/id"),
            ],
        ),
        (
            {"images__0__id": -1, "images__1__id": -1},
            [*[("dangling_image_id", f"/annotations/{i}") for i in range(3)], ("duplicate_image_id", "/images/1")],
        ),
        (
            {"categories__0__id": 2**63, "categories__1__id": 2**63},
            [
                *[("dangling_category_id", f"/annotations/{i}") for i in range(3)],
                ("schema", "/categories/0/id"),
                ("schema", "/categories/1/id"),
            ],
        ),
        (
            {"annotations__0__id": 2**70, "annotations__1__id": 2**70},
            [("schema", "/annotations/0/id"), ("schema", "/annotations/1/id")],
        ),
        (
            {"annotations__0__id": -1, "annotations__1__id": -1},
            [("duplicate_annotation_id", "/annotations/1")],
        ),
    ],
    ids=[
        "image_-5",
        "category_-3",
        "image_-1",
        "image_id_1.0",
        "image_id_2.0_in_table",
        "dup_-1",
        "dup_2**63",
        "dup_2**70",
        "dup_ann_-1",
    ],
)
def test_ids_are_exact(
    engine: Engine, tmp_path: Path, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert _schema(engine, tmp_path, _doc(**changes)) == expected


def test_huge_ids_never_resolve_to_each_other(engine: Engine, tmp_path: Path) -> None:
    """Image id 2**70 and annotation image_id 2**71 used to both become -1 and "resolve"."""
    doc = _doc(images__0__id=2**70, annotations__0__image_id=2**71)
    found = _schema(engine, tmp_path, doc)
    assert ("schema", "/images/0/id") in found and ("schema", "/annotations/0/image_id") in found
    b = load_batch(tmp_path / "b.json")
    assert b.annotations.image[0] == -1
    doc = _doc(images__0__id=-1, annotations__0__image_id=2**64)  # 2**64 is parsed as a float
    assert ("schema", "/annotations/0/image_id") in _schema(engine, tmp_path, doc)
    assert load_batch(tmp_path / "b.json").annotations.image[0] == -1


@pytest.mark.parametrize("bad", ['"x"', "true", "null"])
def test_huge_polygon_is_validated_by_kind_at_its_true_index(engine: Engine, tmp_path: Path, bad: str) -> None:
    """A 1M-vertex polygon among the first (always validated) annotations: jsonschema sees a
    shortened copy (it took 28 s on the whole array), yet the bad value keeps its pointer."""
    doc = _doc()
    n = 2_000_000
    ring = ",".join(["1.5,2"] * (n // 2))
    text = json.dumps(doc)
    marker = '"segmentation": [[10, 20, 110, 20, 110, 220, 10, 220]]'
    assert marker in text
    p = tmp_path / "big.json"
    p.write_text(text.replace(marker, f'"segmentation": [[{ring},-3,{bad},7]]', 1))
    result = engine.run_gate(p, "schema")
    found = [(f.rule, f.pointer) for f in result.findings]
    assert found == [("schema", f"/annotations/0/segmentation/0/{n + 1}")], found
