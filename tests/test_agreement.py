"""Gate 5, agreement: small COCO batches with two or three annotators.

Every batch goes through the real reader (``load_batch``) so that annotators,
lines and ids come from a file, as in use. Alpha is checked against the
``krippendorff`` package computed here, independently, on the units the test
itself knows (one unit per true object).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.checks.agreement import (
    ANNOTATOR_COLUMNS,
    GATE,
    RULES_SCHEMA,
    analyse,
    consensus,
)
from annogate.findings import GateResult
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.model import Batch
from annogate.stats import wilson_interval

krippendorff = pytest.importorskip("krippendorff")

DATA = Path(__file__).resolve().parent / "data"
CLASSES = ("cat", "dog", "bird")

Obj = tuple[str, str, str, Sequence[float]]  # annotator, image file name, class, bbox


def coco(
    objects: Sequence[Obj], *, images: Sequence[str] = (), extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A COCO dict: images in order of first use, ids from 1, ``annotator_id`` per object."""
    names = list(dict.fromkeys([*images, *(o[1] for o in objects)]))
    img_id = {n: i + 1 for i, n in enumerate(names)}
    cat_id = {c: i + 1 for i, c in enumerate(CLASSES)}
    anns = []
    for k, (who, img, cls, box) in enumerate(objects):
        a: dict[str, Any] = {
            "id": 100 + k,
            "image_id": img_id[img],
            "category_id": cat_id[cls],
            "bbox": [float(v) for v in box],
            "area": float(box[2]) * float(box[3]),
            "iscrowd": 0,
            "annotator_id": who,
        }
        a.update((extra or {}).get(str(100 + k), {}))
        anns.append(a)
    return {
        "images": [{"id": img_id[n], "file_name": n, "width": 200, "height": 200} for n in names],
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "animal"} for c in CLASSES],
        "annotations": anns,
    }


def peer_alpha(data: Any) -> float:
    """The krippendorff package's nominal alpha; its refusals and 0/0 are nan."""
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except ValueError:
        return math.nan


def grid_box(k: int, shift: float = 0.0) -> list[float]:
    """Object slot ``k`` of an image: 20x20 boxes far apart, so slots never overlap."""
    return [10.0 + 40.0 * (k % 4) + shift, 10.0 + 40.0 * (k // 4), 20.0, 20.0]


def run_gate(batch: Batch, **section: Any) -> GateResult:
    ctx = GateContext(section=section, rules={}, base_dir=batch.path.parent, load=load_batch)
    return GATE.run(batch, ctx)


def annotation_line(path: Path, ann_id: int) -> int:
    """1-based line of the opening brace of annotation ``ann_id`` in a file written with indent=1."""
    lines = path.read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if t.strip().startswith('"annotations"'))
    k = next(i for i in range(start, len(lines)) if lines[i].strip() == f'"id": {ann_id},')
    return k  # the brace is on the line before, and lines are 1-based


def truth(n_images: int = 4, per_image: int = 3) -> list[tuple[str, int, str]]:
    """The true objects: (image, slot, class), classes cycling so that all three occur."""
    return [(f"im{i}.jpg", k, CLASSES[(i + k) % 3]) for i in range(n_images) for k in range(per_image)]


FLIP = {"cat": "dog", "dog": "bird", "bird": "cat"}


@pytest.fixture
def flip_batch(write_coco: Callable[..., Path]) -> tuple[Batch, Path, list[tuple[str, int, str]]]:
    """alice and bob agree; carol draws every object (shifted by 2 px) but relabels slot 0."""
    t = truth()
    objs: list[Obj] = []
    for who in ("alice", "bob", "carol"):
        for img, k, cls in t:
            if who == "carol":
                objs.append((who, img, FLIP[cls] if k == 0 else cls, grid_box(k, 2.0)))
            else:
                objs.append((who, img, cls, grid_box(k)))
    p = write_coco(coco(objs))
    return load_batch(p), p, t


# ------------------------------------------------------------------ verdicts


def test_identical_annotators_agree_perfectly(write_coco: Callable[..., Path]) -> None:
    objs = [(who, img, cls, grid_box(k)) for who in ("alice", "bob", "carol") for img, k, cls in truth()]
    batch = load_batch(write_coco(coco(objs)))
    r = run_gate(batch)
    assert r.verdict == "passed"
    assert r.metrics["alpha"] == 1.0
    assert r.metrics["mean_iou"] == 1.0
    assert r.findings == []
    assert r.population == 36
    assert r.metrics["units"] == r.metrics["units_decided"] == r.metrics["consensus_objects"] == 12
    pairs = r.tables["pairs"]
    assert pairs[0][:2] == ["annotator_a", "annotator_b"] and len(pairs) == 4
    assert all(row[5] == 12 and row[8] == 1.0 and row[9] == 1.0 for row in pairs[1:])
    per = r.metrics["per_annotator"]
    assert {k: v["defect_rate"] for k, v in per.items()} == {"alice": 0.0, "bob": 0.0, "carol": 0.0}


def test_class_flipping_annotator(flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]]) -> None:
    batch, path, t = flip_batch
    r = run_gate(batch)

    # Alpha, independently: one unit per true object, coders alice, bob, carol.
    code = {c: i for i, c in enumerate(CLASSES)}
    data = np.array(
        [
            [code[c] for _, _, c in t],
            [code[c] for _, _, c in t],
            [code[FLIP[c] if k == 0 else c] for _, k, c in t],
        ],
        dtype=float,
    )
    expected = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    assert r.metrics["alpha"] == pytest.approx(expected, abs=1e-12)
    assert expected < 0.8
    assert r.verdict == "failed"
    assert [c.metric for c in r.failed_checks] == ["alpha"]

    # Mean IoU of the matched pairs: alice/bob 1.0; with carol a 2 px shift of a 20 px box.
    shifted = (18 * 20) / (2 * 400 - 18 * 20)
    assert r.metrics["mean_iou"] == pytest.approx((12 * 1.0 + 24 * shifted) / 36)
    pairs = {(row[0], row[1]): row for row in r.tables["pairs"][1:]}
    assert pairs[("alice", "carol")][7] == pytest.approx(8 / 12)  # class agreement
    assert pairs[("alice", "carol")][8] == pytest.approx(shifted)

    # carol has the highest defect rate, with its Wilson interval.
    per = r.metrics["per_annotator"]
    assert max(per, key=lambda k: per[k]["defect_rate"]) == "carol"
    assert (per["carol"]["defects"], per["carol"]["trials"]) == (4, 12)
    lo, hi = wilson_interval(4, 12)
    assert (per["carol"]["wilson_low"], per["carol"]["wilson_high"]) == pytest.approx((lo, hi))
    assert per["alice"]["defect_rate"] == per["bob"]["defect_rate"] == 0.0

    # Findings: carol's four relabelled objects, with id, image, line and annotator.
    assert {f.rule for f in r.findings} == {"disagreement_class"}
    assert len(r.findings) == 4
    for f in r.findings:
        assert f.annotator == "carol" and f.gate == "agreement" and f.severity == "error"
        assert f.annotation_id is not None and f.line == annotation_line(path, f.annotation_id)
        assert f.image is not None and f.image.startswith("im")
        assert "consensus" in f.message and f.file == str(path)
    by_id = {int(i): k for k, i in enumerate(batch.annotations.id)}
    assert all(batch.annotator_name(by_id[f.annotation_id or -1]) == "carol" for f in r.findings)


def test_result_is_plain_serialisable(flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]]) -> None:
    r = run_gate(flip_batch[0], max_annotator_defect_rate=0.1)
    d = r.to_dict()
    text = json.dumps(d)
    assert json.loads(text)["metrics"]["per_annotator"]["carol"]["defects"] == 4

    def plain(x: Any) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool))

    assert plain(d)


def test_per_annotator_and_pair_limits(flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]]) -> None:
    batch = flip_batch[0]
    r = run_gate(batch, min_alpha=0.0, max_annotator_defect_rate=0.2, min_pair_alpha=0.9, min_pair_mean_iou=0.9)
    failed = sorted((c.metric, c.scope) for c in r.failed_checks)
    assert failed == [
        ("defect_rate", "annotator:carol"),
        ("pair_alpha", "pair:alice/carol"),
        ("pair_alpha", "pair:bob/carol"),
        ("pair_mean_iou", "pair:alice/carol"),
        ("pair_mean_iou", "pair:bob/carol"),
    ]
    # The Wilson lower bound of 4/12 (0.138) is below 0.2: "low" fails only the confidently bad.
    r = run_gate(batch, min_alpha=0.0, max_annotator_defect_rate=0.2, defect_rate_bound="low")
    assert r.verdict == "passed"
    assert {c.scope for c in r.checks if c.metric == "defect_rate.wilson_low"} == {
        "annotator:alice",
        "annotator:bob",
        "annotator:carol",
    }
    r = run_gate(batch, min_alpha=0.0, min_mean_iou=0.95)
    assert [c.metric for c in r.failed_checks] == ["mean_iou"]
    r = run_gate(batch, min_alpha=0.0, thresholds={"disagreement_class": {"max_count": 3}})
    assert [(c.metric, c.value) for c in r.failed_checks] == [("disagreement_class.count", 4.0)]


def test_missed_and_extra_objects(write_coco: Callable[..., Path]) -> None:
    """carol misses slot 1 of im0 and draws an object nobody else saw on im1."""
    objs: list[Obj] = []
    for who in ("alice", "bob", "carol"):
        for img, k, cls in truth(2):
            if who == "carol" and (img, k) == ("im0.jpg", 1):
                continue
            objs.append((who, img, cls, grid_box(k)))
    objs.append(("carol", "im1.jpg", "bird", grid_box(6)))
    path = write_coco(coco(objs))
    batch = load_batch(path)
    r = run_gate(batch, min_alpha=0.0)
    rules = sorted((f.rule, f.annotator) for f in r.findings)
    assert rules == [("extra_object", "carol"), ("missed_object", "carol")]
    missed = next(f for f in r.findings if f.rule == "missed_object")
    # The missed object is located at the consensus object (alice's or bob's, same geometry).
    assert missed.image == "im0.jpg" and missed.category == CLASSES[1]
    assert missed.annotation_id in (101, 107)
    assert missed.line == annotation_line(path, missed.annotation_id or 0)
    assert "carol did not label" in missed.message
    extra = next(f for f in r.findings if f.rule == "extra_object")
    assert extra.annotation_id == 100 + len(objs) - 1 and extra.image == "im1.jpg"
    per = r.metrics["per_annotator"]
    assert (per["carol"]["missed_object"], per["carol"]["extra_object"]) == (1, 1)
    assert (per["carol"]["defects"], per["carol"]["trials"]) == (2, 7)
    assert (per["alice"]["defects"], per["alice"]["trials"]) == (0, 7)
    # Under "missing", alpha ignores who drew what: every matched class agrees.
    assert r.metrics["alpha"] == 1.0


def test_two_annotators_disagreeing_is_no_consensus(write_coco: Callable[..., Path]) -> None:
    objs: list[Obj] = [
        ("alice", "a.jpg", "cat", grid_box(0)),
        ("bob", "a.jpg", "dog", grid_box(0)),
        ("alice", "a.jpg", "bird", grid_box(1)),
        ("bob", "a.jpg", "bird", grid_box(1)),
    ]
    r = run_gate(load_batch(write_coco(coco(objs))), min_alpha=0.0)
    nc = [f for f in r.findings if f.rule == "no_consensus"]
    assert len(r.findings) == len(nc) == 2
    assert all(f.severity == "warning" for f in nc)
    assert {f.annotator for f in nc} == {"alice", "bob"}
    assert "alice: cat" in nc[0].message and "bob: dog" in nc[0].message
    # Undecided units are not trials: one decided unit each, no defect.
    per = r.metrics["per_annotator"]
    assert (per["alice"]["trials"], per["alice"]["defects"], per["alice"]["no_consensus"]) == (1, 0, 1)
    assert r.metrics["units_decided"] == 1


def test_quorum_as_count_requires_unanimity(flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]]) -> None:
    batch = flip_batch[0]
    r = run_gate(batch, min_alpha=0.0, quorum=3)
    assert r.counts_by_rule() == {"no_consensus": 12}  # 4 units x 3 annotators
    assert r.metrics["units_decided"] == 8
    assert consensus(batch, quorum=3).annotations.id.shape[0] == 8
    # A fraction: 1.0 is unanimity too; 0.6 of 3 voters needs 2 votes.
    assert consensus(batch, quorum=1.0).annotations.id.shape[0] == 8
    assert consensus(batch, quorum=0.6).annotations.id.shape[0] == 12


def test_unmatched_as_nothing_counts_detection_disagreement(write_coco: Callable[..., Path]) -> None:
    """carol misses two objects: alpha under 'nothing' equals the package with a 'nothing' code."""
    t = truth(3)
    objs: list[Obj] = []
    for who in ("alice", "bob", "carol"):
        for img, k, cls in t:
            if who == "carol" and k == 2:
                continue
            objs.append((who, img, cls, grid_box(k)))
    batch = load_batch(write_coco(coco(objs)))
    nothing = len(CLASSES)
    code = {c: i for i, c in enumerate(CLASSES)}
    data = np.array(
        [[code[c] for _, _, c in t], [code[c] for _, _, c in t], [nothing if k == 2 else code[c] for _, k, c in t]],
        dtype=float,
    )
    r = run_gate(batch, unmatched="nothing", min_alpha=0.0)
    assert r.metrics["alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    )
    assert r.metrics["alpha"] < 1.0
    coders = ["alice", "bob", "carol"]
    for row in r.tables["pairs"][1:]:
        two = data[[coders.index(row[0]), coders.index(row[1])]]
        assert row[9] == pytest.approx(peer_alpha(two), nan_ok=True, abs=1e-12)
    assert run_gate(batch, min_alpha=0.0).metrics["alpha"] == 1.0  # "missing": only classes count


@pytest.mark.parametrize("seed", range(15))
def test_alpha_matches_package_on_random_designs(seed: int, write_coco: Callable[..., Path]) -> None:
    """Random classes, random omissions, 2-4 annotators: the gate's units are the true objects."""
    rng = np.random.default_rng(seed)
    coders = [f"ann{i}" for i in range(int(rng.integers(2, 5)))]
    t = truth(int(rng.integers(2, 6)), int(rng.integers(1, 9)))
    data = np.full((len(coders), len(t)), np.nan)
    objs: list[Obj] = []
    p_keep = rng.uniform(0.6, 1.0)
    p_right = rng.uniform(0.3, 1.0)
    for ci, who in enumerate(coders):
        for u, (img, k, cls) in enumerate(t):
            if rng.random() > p_keep:
                continue
            label = cls if rng.random() < p_right else CLASSES[int(rng.integers(0, 3))]
            data[ci, u] = CLASSES.index(label)
            objs.append((who, img, label, grid_box(k, float(rng.uniform(-3, 3)))))
    batch = load_batch(write_coco(coco(objs)))
    r = run_gate(batch, min_alpha=0.0)
    if r.verdict == "skipped":
        return
    expected = peer_alpha(data)
    assert r.metrics["alpha"] == pytest.approx(expected, nan_ok=True, abs=1e-12)
    # Per pair: the package on the two coders' rows.
    for row in r.tables["pairs"][1:]:
        two = data[[coders.index(row[0]), coders.index(row[1])]]
        assert row[9] == pytest.approx(peer_alpha(two), nan_ok=True, abs=1e-12)


def test_chain_of_matches_keeps_one_object_per_annotator(write_coco: Callable[..., Path]) -> None:
    """A1-B1 (IoU .67), B1-C1 (.67), C1-A2 (.67): one component with two of alice's boxes."""
    objs: list[Obj] = [
        ("alice", "a.jpg", "cat", [0, 0, 10, 10]),
        ("bob", "a.jpg", "cat", [2, 0, 10, 10]),
        ("carol", "a.jpg", "cat", [4, 0, 10, 10]),
        ("alice", "a.jpg", "cat", [6, 0, 10, 10]),
    ]
    batch = load_batch(write_coco(coco(objs)))
    a = analyse(batch)
    assert a.edge_iou.shape[0] == 3
    units = a.unit_of_row
    assert units[0] == units[1] == units[2] != units[3]
    assert a.n_units == 2
    r = run_gate(batch)
    # The displaced box is alone: 1 vote of 3 against 2 for nothing -> an extra object.
    assert [(f.rule, f.annotation_id) for f in r.findings] == [("extra_object", 103)]


# ------------------------------------------------------------------ skipping


def test_skipped_without_images_shared_by_annotators(write_coco: Callable[..., Path]) -> None:
    objs: list[Obj] = [("alice", "a.jpg", "cat", grid_box(0)), ("bob", "b.jpg", "cat", grid_box(0))]
    r = run_gate(load_batch(write_coco(coco(objs))))
    assert r.verdict == "skipped"
    assert "two or more annotators" in r.reason
    assert r.to_dict()["verdict"] == "skipped"


def test_skipped_without_annotators(write_coco: Callable[..., Path]) -> None:
    data = coco([("x", "a.jpg", "cat", grid_box(0)), ("y", "a.jpg", "cat", grid_box(0))])
    for a in data["annotations"]:
        del a["annotator_id"]
    r = run_gate(load_batch(write_coco(data)))
    assert r.verdict == "skipped" and "no annotator" in r.reason


def test_rows_without_annotator_or_crowd_take_no_part(write_coco: Callable[..., Path]) -> None:
    objs: list[Obj] = [
        ("alice", "a.jpg", "cat", grid_box(0)),
        ("bob", "a.jpg", "cat", grid_box(0)),
        ("bob", "a.jpg", "dog", grid_box(1)),
        ("nobody", "a.jpg", "dog", grid_box(2)),
    ]
    data = coco(objs, extra={"102": {"iscrowd": 1}})
    del data["annotations"][3]["annotator_id"]
    r = run_gate(load_batch(write_coco(data)))
    assert r.population == 2 and r.findings == []
    assert r.metrics["objects_without_annotator"] == 1


# ------------------------------------------------------------------ consensus


def test_consensus_is_a_golden_batch(write_coco: Callable[..., Path]) -> None:
    """Majority classes, the representative's geometry (polygon too), multi-annotated images only."""
    objs: list[Obj] = [
        ("alice", "a.jpg", "cat", [10, 10, 20, 20]),
        ("bob", "a.jpg", "cat", [11, 10, 20, 20]),
        ("carol", "a.jpg", "cat", [12, 10, 20, 20]),
        ("dave", "a.jpg", "dog", [11, 10, 20, 20]),
        ("alice", "b.jpg", "bird", [50, 50, 20, 20]),
        ("bob", "b.jpg", "bird", [50, 50, 20, 20]),
        ("alice", "solo.jpg", "cat", [0, 0, 5, 5]),
    ]
    poly = {"segmentation": [[11, 10, 31, 10, 31, 30, 11, 30]]}
    path = write_coco(coco(objs, extra={"101": poly}))
    batch = load_batch(path)
    c = consensus(batch)
    assert [str(n) for n in c.images.file_name] == ["a.jpg", "b.jpg"]
    assert c.images.id.tolist() == [1, 2]
    ann = c.annotations
    assert len(ann) == 2
    # On a.jpg bob's box (the middle one) is closest to the other winners: his polygon
    # travels; on b.jpg the two winners tie and the first in the file is taken.
    assert ann.id.tolist() == [101, 104]
    assert [str(c.categories.name[k]) for k in ann.category] == ["cat", "bird"]
    assert ann.category_id.tolist() == [1, 3]
    assert ann.annotator.tolist() == [-1, -1]
    assert ann.score.tolist() == pytest.approx([3 / 4, 1.0])
    assert ann.image.tolist() == [0, 1]
    assert ann.bbox[0].tolist() == [11, 10, 20, 20]
    np.testing.assert_array_equal(ann.rings(0)[0], [11, 10, 31, 10, 31, 30, 11, 30])
    assert len(ann.rings(1)) == 0
    assert ann.line.tolist() == [annotation_line(path, 101), annotation_line(path, 104)]
    assert c.meta["consensus"]["votes"] == [3, 2] and c.meta["consensus"]["voters"] == [4, 2]
    assert c.annotators == batch.annotators
    every = consensus(batch, all_images=True)
    assert len(every.images) == 3 and every.annotations.image.tolist() == [0, 1]


def test_consensus_as_golden_reference_matches_the_majority(
    flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]],
) -> None:
    """The consensus pairs with alice's objects one-to-one and class for class."""
    from annogate.matching import match

    batch = flip_batch[0]
    gold = consensus(batch)
    alice = np.flatnonzero(batch.annotations.annotator == batch.annotators.index("alice"))
    res = match(batch, gold, batch_rows=alice)
    assert res.counts()["matched"] == 12 and res.counts()["mislabelled"] == 0


def test_rules_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    v = jsonschema.Draft202012Validator(RULES_SCHEMA)
    assert v.is_valid({})
    assert v.is_valid({"iou": 0.7, "quorum": 2, "min_alpha": 0.667, "unmatched": "nothing"})
    assert v.is_valid({"quorum": 0.5, "max_annotator_defect_rate": 0.05, "defect_rate_bound": "high"})
    assert v.is_valid({"thresholds": {"missed_object": {"max_rate": 0.01}}})
    assert v.is_valid({"iou_type": "keypoints", "oks_sigmas": [0.05, 0.05, 0.1]})
    assert v.is_valid({"quorum": 1}) and v.is_valid({"quorum": 1.0})
    bad: dict[str, Any]
    for bad in (
        {"bogus": 1},
        {"iou": 0},
        {"iou": 1.5},
        {"quorum": 1.5},
        {"quorum": 0},
        {"unmatched": "zero"},
        {"min_alpha": 2},
        {"iou_type": "mask"},
        {"oks_sigmas": []},
        {"oks_sigmas": [0.1, -1]},
        {"thresholds": {"x": {"max_count": -1}}},
    ):
        assert not v.is_valid(bad), bad
    assert GATE.name == "agreement" and GATE.order == 50 and GATE.rules_schema is RULES_SCHEMA


def test_masks_and_keypoints_pair_by_their_own_similarity(write_coco: Callable[..., Path]) -> None:
    """Same boxes, different shapes: segm pairs by mask IoU; keypoints by OKS with given sigmas."""
    pytest.importorskip("pycocotools")
    box = [10, 10, 40, 40]
    tri_a = [10, 10, 50, 10, 10, 50]  # two opposite triangles in the same box: mask IoU 0
    tri_b = [50, 50, 50, 10, 10, 50]
    objs: list[Obj] = [("alice", "a.jpg", "cat", box), ("bob", "a.jpg", "cat", box)]
    seg = {"100": {"segmentation": [tri_a]}, "101": {"segmentation": [tri_b]}}
    batch = load_batch(write_coco(coco(objs, extra=seg)))
    assert run_gate(batch).metrics["matched_pairs"] == 1
    r = run_gate(batch, iou_type="segm", min_alpha=0.0)
    assert r.metrics["matched_pairs"] == 0 and r.counts_by_rule() == {"no_consensus": 2}

    kp = {
        "100": {"keypoints": [20, 20, 2, 30, 30, 2, 40, 20, 2], "num_keypoints": 3},
        "101": {"keypoints": [21, 20, 2, 30, 31, 2, 40, 21, 2], "num_keypoints": 3},
    }
    batch = load_batch(write_coco(coco(objs, extra=kp), name="kp.json"))
    r = run_gate(batch, iou_type="keypoints", oks_sigmas=[0.05, 0.05, 0.05])
    assert r.metrics["matched_pairs"] == 1 and 0.5 < r.metrics["mean_iou"] < 1.0
    assert r.verdict == "passed"


def test_unknown_rule_key_is_named(tmp_path: Path) -> None:
    """The rules schema (not the gate) refuses a misspelt key, naming it and the file."""
    from annogate.engine import Engine
    from annogate.rules import RulesError

    rules = tmp_path / "annogate.toml"
    rules.write_text("[agreement]\nmin_alfa = 0.5\n")
    with pytest.raises(RulesError, match=r"min_alfa") as e:
        Engine(rules_path=rules)
    assert "annogate.toml" in str(e.value)


# ------------------------------------------------------------------ fixture files


def test_fixture_files() -> None:
    valid = sorted((DATA / "valid" / "agreement").glob("*.json"))
    invalid = sorted((DATA / "invalid" / "agreement").glob("*.json"))
    assert valid and invalid
    for p in valid:
        r = run_gate(load_batch(p))
        assert r.verdict == "passed", (p, r.failed_checks)
    for p in invalid:
        r = run_gate(load_batch(p))
        assert r.verdict == "failed", p
        assert r.findings and all(f.line for f in r.findings)


def test_zero_overlap_fails(write_coco: Callable[..., Path]) -> None:
    """Two annotators who drew on the same images but never the same object disagree
    totally; alpha over matched objects alone is 0/0, which used to pass."""
    objs: list[Obj] = []
    for img in ("a.jpg", "b.jpg", "c.jpg"):
        for k in range(4):
            objs.append(("ann", img, "cat", grid_box(k)))
            objs.append(("bob", img, "cat", grid_box(k + 8)))
    batch = load_batch(write_coco(coco(objs)))
    res = run_gate(batch)
    assert res.verdict == "failed"
    assert [(c.metric, c.scope) for c in res.failed_checks] == [("alpha", "overall")]
    assert res.metrics["matched_pairs"] == 0 and res.metrics["alpha"] < 0.8
    assert res.metrics["alpha_basis"].startswith("nothing")


def test_keypoint_class_without_sigmas_is_a_failed_result(write_coco: Callable[..., Path]) -> None:
    kp = [10, 10, 2, 20, 10, 2, 30, 10, 2, 40, 10, 2, 50, 10, 2]
    objs: list[Obj] = [("ann", "a.jpg", "cat", grid_box(0)), ("bob", "a.jpg", "cat", grid_box(0))]
    data = coco(objs)
    for a in data["annotations"]:
        a["keypoints"] = kp
        a["num_keypoints"] = 5
    batch = load_batch(write_coco(data))
    res = run_gate(batch, iou_type="keypoints")
    assert res.verdict == "failed"
    assert "'cat' (5 keypoints)" in res.reason and "oks_sigmas" in res.reason and "agreement" in res.reason


_MEMORY_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import numpy as np
from builders import Obj, make_batch
from annogate.consensus import analyse

rng = np.random.default_rng(0)
n = 8000
xy = rng.uniform(0, 4000, (n, 2))
objs = []
for who, shift in (("ann", 0.0), ("bob", 1.0)):
    for x, y in xy.tolist():
        objs.append(Obj(image="a.jpg", category="cat", bbox=[x + shift, y, 20.0, 20.0], annotator=who))
batch = make_batch(objs, images={"a.jpg": (4100, 4100)}, categories=["cat"])
a = analyse(batch)
print(int(a.edge_iou.shape[0]))
"""


@pytest.mark.slow
def test_pairing_memory_is_bounded() -> None:
    """Two annotators with 8,000 boxes each on one image: all-pairs took 9 GB; under a
    2 GB address-space limit it must finish and pair every object with its twin."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) >= 7900


def test_cohort_rows_pool_their_annotators(flip_batch: tuple[Batch, Path, list[tuple[str, int, str]]]) -> None:
    """Cohorts from ``cost.cohorts``: a row per cohort in the annotators table with its
    annotators' trials and defects summed and the Wilson interval of the pooled rate."""
    batch, _, _ = flip_batch
    ctx = GateContext(
        section={},
        rules={"cost": {"cohorts": {"alice": "inhouse", "bob": "vendor", "carol": "vendor"}}},
        base_dir=Path("."),
        load=load_batch,
    )
    res = GATE.run(batch, ctx)
    per, coh = res.metrics["per_annotator"], res.metrics["per_cohort"]
    assert set(coh) == {"inhouse", "vendor"}
    v = coh["vendor"]
    assert v["trials"] == per["bob"]["trials"] + per["carol"]["trials"]
    assert v["defects"] == per["bob"]["defects"] + per["carol"]["defects"] > 0
    assert (v["wilson_low"], v["wilson_high"]) == wilson_interval(v["defects"], v["trials"])
    rows = {r[0]: r for r in res.tables["annotators"][1:]}
    assert rows["cohort:vendor"][ANNOTATOR_COLUMNS.index("defects")] == v["defects"]
