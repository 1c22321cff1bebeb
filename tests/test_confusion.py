"""The confusion gate on the golden fixtures (see tests/test_golden.py for what they hold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from annogate.checks import confusion, golden
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch

DATA = Path(__file__).resolve().parent / "data"
VALID = DATA / "valid" / "golden"
INVALID = DATA / "invalid" / "golden"


def ctx_for(
    folder: Path,
    section: dict[str, Any],
    rules: dict[str, Any] | None = None,
    loads: list[Path] | None = None,
    cache: dict[str, Any] | None = None,
) -> GateContext:
    def load(p: Path) -> Batch:
        if loads is not None:
            loads.append(p)
        return load_batch(p)

    return GateContext(
        section=section, rules=rules or {}, base_dir=folder, load=load, cache={} if cache is None else cache
    )


def test_named_pair_fails_and_findings() -> None:
    batch = load_batch(INVALID / "batch.json")
    sec = {"pairs": {"cyclist->pedestrian": 0.02, "person->car": 0.1}}
    res = confusion.GATE.run(batch, ctx_for(INVALID, sec, rules={"golden": {"file": "golden.json"}}))
    assert res.verdict == "failed"
    failed = [(c.metric, c.scope, c.value) for c in res.failed_checks]
    assert failed == [("pair_rate", "pair:cyclist->pedestrian", 1.0)]
    assert [(f.rule, f.severity, f.category, f.image) for f in res.findings] == [
        ("confusion", "error", "pedestrian", "honey_01.jpg")
    ]
    assert "golden 'cyclist' labelled 'pedestrian'" in res.findings[0].message
    m = res.metrics
    assert m["pairs"]["cyclist->pedestrian"] == {"count": 1, "golden": 1, "rate": 1.0}
    assert m["worst_pair"]["pair"] == "cyclist->pedestrian"
    rows, cols, counts = m["matrix"]["rows"], m["matrix"]["columns"], m["matrix"]["counts"]
    assert rows[-1] == "extra" and cols[-1] == "missing"
    assert counts[rows.index("car")][cols.index("missing")] == 1
    assert counts[rows.index("extra")][cols.index("car")] == 1
    assert counts[rows.index("person")][cols.index("person")] == 2
    assert res.tables["confusion_top_pairs"][1][0] == "cyclist->pedestrian"
    json.dumps(res.to_dict())


def test_max_pair_rate_and_min_support() -> None:
    batch = load_batch(INVALID / "batch.json")
    ctx = ctx_for(INVALID, {"file": "golden.json", "max_pair_rate": 0.5})
    res = confusion.GATE.run(batch, ctx)
    assert [(c.metric, c.scope) for c in res.failed_checks] == [("pair_rate.max", "pair:cyclist->pedestrian")]
    # one golden cyclist is too few to judge with min_support = 2
    res = confusion.GATE.run(batch, ctx_for(INVALID, {"file": "golden.json", "max_pair_rate": 0.5, "min_support": 2}))
    assert res.verdict == "passed"
    assert [f.severity for f in res.findings] == ["warning"]


def test_valid_batch_passes() -> None:
    res = confusion.GATE.run(
        load_batch(VALID / "batch.json"),
        ctx_for(VALID, {"max_pair_rate": 0.0, "pairs": {"cyclist->pedestrian": 0.0}}, rules={"golden": "golden.json"}),
    )
    assert res.verdict == "passed" and res.findings == []
    assert res.metrics["worst_pair"] is None


def test_shares_the_golden_match() -> None:
    batch = load_batch(INVALID / "batch.json")
    loads: list[Path] = []
    cache: dict[str, Any] = {}
    rules = {"golden": {"file": "golden.json"}}
    golden.GATE.run(batch, ctx_for(INVALID, {"file": "golden.json"}, rules=rules, loads=loads, cache=cache))
    confusion.GATE.run(batch, ctx_for(INVALID, {}, rules=rules, loads=loads, cache=cache))
    assert len(loads) == 1
    # a different threshold is a different match
    confusion.GATE.run(batch, ctx_for(INVALID, {"iou": 0.9}, rules=rules, loads=loads, cache=cache))
    assert len(loads) == 2


def test_skipped_without_golden() -> None:
    res = confusion.GATE.run(load_batch(VALID / "batch.json"), ctx_for(VALID, {}))
    assert res.verdict == "skipped"


def test_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate({"pairs": {"a->b": 0.1}, "max_pair_rate": 0.2}, confusion.RULES_SCHEMA)
    for bad in ({"pairs": {"ab": 0.1}}, {"pairs": {"a->b": 2}}, {"max_rate": 0.1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, confusion.RULES_SCHEMA)
