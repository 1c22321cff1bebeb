"""The golden and confusion gates with the leave-one-out consensus as the reference.

Why these tests: with several annotators per image and no golden file, each
annotator is judged against the quorum consensus of the *others*. The synthetic
batch plants one annotator (dave) who shifts every box 12% of its width to the
right and calls every cyclist a pedestrian: dave, and only dave, must fail. The
Label Studio export (5 tasks x 3 annotators, from label-studio-evalme) checks the
gate against counts computed here with plain loops over the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from annogate.checks import confusion, golden
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch
from annogate.rules import RulesError, load_rules
from tests.builders import Obj, make_batch

LS_BBOX = (
    Path(__file__).resolve().parents[1].parent
    / "shared/thirdparty/label-studio-evalme/evalme/tests/test_data/test_bbox.json"
)
CLASSES = ["car", "person", "cyclist", "pedestrian"]
PEOPLE = ["alice", "bob", "carol", "dave"]


def planted(people: list[str] = PEOPLE, n_images: int = 8) -> Batch:
    """Every annotator draws the same 5 objects per image; dave shifts them and flips cyclists."""
    objs = []
    for i in range(n_images):
        for k, cls in enumerate(["car", "person", "cyclist", "car", "cyclist"]):
            x, y, w, h = 20 + 110 * k, 50 + 10 * i, 80.0, 120.0
            for who in people:
                dx, c = (0.12 * w, "pedestrian" if cls == "cyclist" else cls) if who == "dave" else (0.0, cls)
                objs.append(Obj(image=f"img{i}.jpg", category=c, bbox=[x + dx, y, w, h], annotator=who))
    return make_batch(objs, images={f"img{i}.jpg": (640, 480) for i in range(n_images)}, categories=CLASSES)


def run(gate: Any, batch: Batch, section: dict[str, Any], rules: dict[str, Any] | None = None) -> Any:
    return gate.GATE.run(batch, GateContext(section=section, rules=rules or {}, base_dir=Path("."), load=load_batch))


def test_planted_annotator_is_the_one_that_fails() -> None:
    res = run(
        golden,
        planted(),
        {"reference": "consensus", "quorum": 2, "max_drift": 0.03, "min_precision": 0.9, "min_recall": 0.9},
    )
    assert res.verdict == "failed"
    failed = {(c.metric, c.scope) for c in res.failed_checks}
    assert {("drift.left", "annotator:dave"), ("drift.right", "annotator:dave")} <= failed
    assert {("precision", "annotator:dave"), ("recall", "annotator:dave")} <= failed
    assert not any(s.startswith("annotator:") and s != "annotator:dave" for _, s in failed)
    per = res.metrics["per_annotator"]
    # 8 images x 5 objects each; dave's 16 cyclists are pedestrians to the others
    assert {k: (m["tp"], m["mislabelled"], m["missing"], m["extra"]) for k, m in per.items()} == {
        "alice": (40, 0, 0, 0),
        "bob": (40, 0, 0, 0),
        "carol": (40, 0, 0, 0),
        "dave": (24, 16, 0, 0),
    }
    assert 0.11 < per["dave"]["drift"]["right"]["low"] <= per["dave"]["drift"]["right"]["mean"] < 0.13
    assert abs(per["alice"]["drift"]["right"]["mean"]) < 1e-9  # dave's shifted box is never the representative
    ref = res.metrics["reference"]
    assert (ref["kind"], ref["judged_images"], ref["images"], ref["quorum"]) == ("consensus", 32, 8, 2)
    assert res.metrics["golden_file"] is None
    mis = [f for f in res.findings if f.rule == "mislabelled"]
    assert len(mis) == 16 and {f.annotator for f in mis} == {"dave"}
    assert all("consensus of alice, bob, carol says 'cyclist'" in f.message for f in mis), mis[0].message
    assert not any("golden" in f.message for f in res.findings)
    table = res.tables["golden_per_annotator"]
    assert table[0][:8] == ["annotator", "batch", "tp", "mislabelled", "extra", "missing", "recall", "accuracy"]
    # cost: the sample is every judged object, each annotator's own defects vs the others' consensus
    s = res.cost.sampled
    assert (s.defects, s.sample) == (16, 160)
    assert dict(s.by_annotator) == {"alice": (0, 40), "bob": (0, 40), "carol": (0, 40), "dave": (16, 40)}
    drift = [p for p in res.cost.patterns if p.kind == "drift"]
    assert [p.scope for p in drift] == ["annotator:dave"] and drift[0].affected == 40


def test_confusion_uses_the_consensus_of_the_others() -> None:
    res = run(confusion, planted(), {"max_pair_rate": 0.1}, rules={"golden": {"reference": "consensus"}})
    assert res.verdict == "failed"
    assert res.metrics["pairs"]["cyclist->pedestrian"]["count"] == 16
    assert set(res.metrics["per_annotator"]) == {"dave"}
    f = next(f for f in res.findings if f.rule == "confusion")
    assert f.annotator == "dave" and f.message.startswith("consensus of alice, bob, carol says 'cyclist', labelled")


def test_own_vote_does_not_count() -> None:
    """Three annotators, quorum 2: an object only alice and bob drew is a consensus object for carol
    (missed), but for alice the others split (bob yes, carol no: a tie), so it is an ignore region:
    alice's object is neither confirmed by her own vote nor an error. An object only carol drew is extra."""
    objs = [Obj(image="a.jpg", category="car", bbox=[10, 10, 50, 50], annotator=w) for w in ("alice", "bob", "carol")]
    objs += [Obj(image="a.jpg", category="car", bbox=[200, 10, 50, 50], annotator=w) for w in ("alice", "bob")]
    objs += [Obj(image="a.jpg", category="car", bbox=[400, 10, 50, 50], annotator="carol")]
    res = run(golden, make_batch(objs, images={"a.jpg": (640, 480)}, categories=["car"]), {"reference": "consensus"})
    per = res.metrics["per_annotator"]
    assert {k: (m["tp"], m["missing"], m["extra"]) for k, m in per.items()} == {
        "alice": (1, 0, 0),
        "bob": (1, 0, 0),
        "carol": (1, 1, 1),
    }
    assert res.metrics["overall"]["ignored"] == 2  # alice's and bob's second car
    miss = next(f for f in res.findings if f.rule == "missing")
    assert miss.annotator == "carol" and "consensus of alice, bob" in miss.message


def test_needs_enough_other_annotators() -> None:
    two = planted(["alice", "bob"], n_images=2)
    res = run(golden, two, {"reference": "consensus"})
    assert res.verdict == "skipped" and "at least 2 others" in res.reason
    res = run(golden, planted(["alice", "bob", "carol", "dave"], n_images=2), {"reference": "consensus", "quorum": 3})
    assert res.metrics["reference"]["judged_images"] == 8  # every one of 4 has 3 others
    res = run(golden, planted(["alice", "bob", "carol"], n_images=2), {"reference": "consensus", "quorum": 3})
    assert res.verdict == "skipped"


def test_rules_keys(tmp_path: Path) -> None:
    sections = {"golden": golden.RULES_SCHEMA, "confusion": confusion.RULES_SCHEMA}
    f = tmp_path / "annogate.toml"
    f.write_text('golden = "consensus"\n')
    assert dict(load_rules(f, sections=sections).data["golden"]) == {"reference": "consensus"}
    f.write_text('[golden]\nreference = "consensus"\nquorum = 0.6\n[confusion]\nquorum = 3\n')
    load_rules(f, sections=sections)
    for bad in ("quorum = 1", "quorum = 1.0", "quorum = 0", 'reference = "majority"'):
        f.write_text(f"[golden]\n{bad}\n")
        with pytest.raises(RulesError, match="golden"):
            load_rules(f, sections=sections)


def _ls_boxes() -> dict[int, dict[str, list[tuple[str, tuple[float, float, float, float]]]]]:
    out: dict[int, dict[str, list[tuple[str, tuple[float, float, float, float]]]]] = {}
    for t in json.loads(LS_BBOX.read_text()):
        for a in t["annotations"]:
            for r in a["result"]:
                v, w, h = r["value"], r["original_width"], r["original_height"]
                box = (v["x"] * w / 100, v["y"] * h / 100, v["width"] * w / 100, v["height"] * h / 100)
                out.setdefault(t["id"], {}).setdefault(str(a["completed_by"]["id"]), []).append(
                    (v["rectanglelabels"][0], box)
                )
    return out


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def test_label_studio_export_with_three_annotators() -> None:
    """label-studio-evalme's test_bbox.json: 5 tasks, each labelled by annotators 1, 2 and 3.
    With quorum 2 each annotator's reference is what the two others agree on (same class,
    IoU >= 0.5), so: an annotator's true positives are their boxes both others confirm, and
    their reference size is the number of one-to-one same-class pairs of the other two."""
    if not LS_BBOX.is_file():
        pytest.skip(f"third-party data absent: {LS_BBOX}")
    boxes = _ls_boxes()
    names = sorted({w for by in boxes.values() for w in by})
    confirmed = dict.fromkeys(names, 0)
    reference = dict.fromkeys(names, 0)
    for by in boxes.values():
        for x in names:
            others = [o for o in names if o != x]
            for c, b in by[x]:
                confirmed[x] += all(any(c == c2 and _iou(b, b2) >= 0.5 for c2, b2 in by[o]) for o in others)
            cand = sorted(
                (
                    (_iou(a, b), i, j)
                    for i, (ca, a) in enumerate(by[others[0]])
                    for j, (cb, b) in enumerate(by[others[1]])
                    if ca == cb and _iou(a, b) >= 0.5
                ),
                reverse=True,
            )
            used_i: set[int] = set()
            used_j: set[int] = set()
            for _, i, j in cand:
                if i not in used_i and j not in used_j:
                    used_i.add(i)
                    used_j.add(j)
                    reference[x] += 1
    batch = load_batch(LS_BBOX)
    assert sorted(batch.annotators) == names
    res = run(golden, batch, {"reference": "consensus", "quorum": 2, "min_precision": 0.6})
    per = res.metrics["per_annotator"]
    assert {x: per[x]["tp"] for x in names} == confirmed
    assert {x: per[x]["tp"] + per[x]["mislabelled"] + per[x]["missing"] for x in names} == reference
    assert res.metrics["reference"]["judged_images"] == 5 * len(names)
    # the annotator the others least agree with is the one whose precision fails
    worst = min(names, key=lambda x: confirmed[x] / max(1, per[x]["batch_objects"]))
    assert {c.scope for c in res.failed_checks if c.scope.startswith("annotator:")} == {f"annotator:{worst}"}
