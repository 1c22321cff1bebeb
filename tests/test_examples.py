"""The bundled examples: one scene, one defective batch per format, the same verdicts.

Why: ``annogate examples/`` is the README's first command and the issue's promise
that every gate runs on every format. These tests regenerate the examples
(byte-identical: the committed files are what the generator writes), load each
format's batch with its reader, and run every gate through the engine, comparing
with what the scene's planted defects imply: expectations come from
``examples/generate.py``'s scene definition, never from a previous run.

Where a reader or the engine does not yet do what the plan says, the single assertion
is listed in ``KNOWN`` and marked ``xfail(strict=True)`` with the reason, so that it
turns red the day it passes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from annogate.engine import Engine
from annogate.findings import GateResult
from annogate.formats import detect_format
from annogate.model import Batch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("annogate_examples_generate", EXAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gen = _generator()
SCENE = gen.build_scene()
FORMATS = ("coco", *gen.FORMATS)
PATHS = {
    "coco": EXAMPLES / "defective" / "batch.json",
    "yolo": EXAMPLES / "yolo",
    "voc": EXAMPLES / "voc",
    "labelme": EXAMPLES / "labelme",
    "cvat": EXAMPLES / "cvat" / "annotations.xml",
    "labelstudio": EXAMPLES / "labelstudio" / "export.json",
}
FOLDER = set(gen.FOLDER_FORMATS)
# (format, aspect) -> why the current code differs from the plan (none today; keep for the next gap)
KNOWN: dict[tuple[str, str], str] = {}


def cases(aspect: str, formats: tuple[str, ...] = FORMATS) -> list[Any]:
    """One parameter per format, xfail(strict) where KNOWN says the code is not there yet."""
    out = []
    for f in formats:
        why = KNOWN.get((f, aspect))
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        out.append(pytest.param(f, id=f, marks=marks))
    return out


# -- expectations from the scene ------------------------------------------------------------------


def can(fmt: str, what: str) -> bool:
    return what not in gen.CANNOT_EXPRESS[fmt]


def defects(kind: str) -> list[Any]:
    return [o for o in SCENE.defective if o.defect == kind]


def multi_annotated(fmt: str) -> int:
    """Images drawn on by two or more annotators, as the format records who drew what."""
    if fmt == "cvat":  # an image is in one task; its assignee is credited with every object on it
        return 0
    by_image: dict[int, set[str]] = {}
    for o in SCENE.defective:
        by_image.setdefault(o.image, set()).add(o.annotator)
    return sum(1 for s in by_image.values() if len(s) > 1)


def expected_annotators(fmt: str) -> tuple[str, ...]:
    names = sorted({o.annotator for o in SCENE.defective})
    if fmt == "labelstudio":
        return tuple(str(gen.LS_USER[a]) for a in names)
    return tuple(names)


def expected_schema_rules(fmt: str) -> set[str]:
    assert defects("dangling"), "the scene plants a dangling category"
    return {
        "coco": {"dangling_category_id"},
        "yolo": {"class_out_of_range"},
        "cvat": {"undeclared_label", "unknown_class"},  # not declared in <meta>, and outside the taxonomy
    }.get(fmt, {"unknown_class"})


def expected_geometry(fmt: str) -> Counter[str]:
    want: Counter[str] = Counter(
        {"box_outside_image": len(defects("past_edge")), "box_nonpositive": len(defects("zero_width"))}
    )
    if can(fmt, "bowtie"):
        want["polygon_invalid"] = len(defects("bowtie"))
    return want


def expected_golden() -> Counter[str]:
    """Missed objects, flipped classes, and every whole-object defect drawn on a honeypot (nothing matches it)."""
    golden = set(gen.GOLDEN)
    extra = [o for o in SCENE.defective if o.defect and o.image in golden]
    return Counter({"missing": len(SCENE.missed), "mislabelled": len(SCENE.flipped), "extra": len(extra)})


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


_BATCHES: dict[str, Batch] = {}


def batch_of(fmt: str) -> Batch:
    """The batch as a session reads it: through the engine, so the folder's rules apply
    (``annotator_from = "parent_dir"`` for the per-annotator folders)."""
    if fmt not in _BATCHES:
        _BATCHES[fmt] = Engine().load(PATHS[fmt])
    return _BATCHES[fmt]


_RESULTS: dict[tuple[str, str], GateResult] = {}


def gate(engine: Engine, fmt: str, name: str) -> GateResult:
    if (fmt, name) not in _RESULTS:
        _RESULTS[(fmt, name)] = engine.run_gate(PATHS[fmt], name)
    return _RESULTS[(fmt, name)]


# -- the files --------------------------------------------------------------------------------------


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    gen.main(tmp_path)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert made, "the generator wrote nothing"
    for rel in made:
        assert (EXAMPLES / rel).read_bytes() == (tmp_path / rel).read_bytes(), f"examples/{rel} is stale"
    # and no generated folder holds a file the generator no longer writes
    for sub in ("golden", "clean", "defective", *gen.FORMATS):
        committed = {p.relative_to(EXAMPLES) for p in (EXAMPLES / sub).rglob("*") if p.is_file()}
        assert committed <= set(made), f"examples/{sub} has files the generator does not write"


@pytest.mark.parametrize("fmt", gen.FORMATS)
def test_each_format_is_small(fmt: str) -> None:
    root = EXAMPLES / fmt
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 100_000


def test_tiny_png_is_a_real_image_of_the_right_size() -> None:
    import zlib

    from annogate.formats._imagesize import read_image_size

    png = gen.tiny_png(gen.W, gen.H)
    idat = png.index(b"IDAT")
    n = int.from_bytes(png[idat - 4 : idat], "big")
    raw = zlib.decompress(png[idat + 4 : idat + 4 + n])
    assert raw == bytes(gen.H * (1 + (gen.W + 7) // 8))
    one = next((EXAMPLES / "yolo" / "images").rglob("*.png"))
    size = read_image_size(one)
    assert (size.width, size.height) == (gen.W, gen.H)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(one) as im:
        im.load()  # decodes: the pixels are valid, not just the header
        assert im.size == (gen.W, gen.H)


# -- loading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_loads_every_object(fmt: str) -> None:
    b = batch_of(fmt)
    assert b.format == fmt
    assert len(b.annotations) == len(SCENE.defective)


@pytest.mark.parametrize("fmt", cases("images"))
def test_batch_has_each_image_once_by_its_golden_name(fmt: str) -> None:
    names = sorted(str(n) for n in batch_of(fmt).images.file_name.tolist())
    assert names == sorted(SCENE.images)


@pytest.mark.parametrize("fmt", cases("annotators"))
def test_batch_knows_who_drew_each_object(fmt: str) -> None:
    assert tuple(sorted(batch_of(fmt).annotators)) == expected_annotators(fmt)


@pytest.mark.parametrize("fmt", cases("detect", tuple(FOLDER)))
def test_folder_batch_is_detected(fmt: str) -> None:
    found = detect_format(PATHS[fmt])
    assert found is not None and found.name == fmt


# -- gates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_schema_fails(engine: Engine, fmt: str) -> None:
    assert gate(engine, fmt, "schema").verdict == "failed"


@pytest.mark.parametrize("fmt", cases("schema_rules"))
def test_schema_fails_for_the_dangling_category_only(engine: Engine, fmt: str) -> None:
    assert set(gate(engine, fmt, "schema").counts_by_rule()) == expected_schema_rules(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_geometry_fails_for_the_planted_shapes(engine: Engine, fmt: str) -> None:
    r = gate(engine, fmt, "geometry")
    assert r.verdict == "failed"
    assert r.counts_by_rule() == expected_geometry(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_fails_on_bobs_drift(engine: Engine, fmt: str) -> None:
    r = gate(engine, fmt, "golden")
    assert r.verdict == "failed"
    assert SCENE.shifted > 0
    failed = {c.metric for c in r.failed_checks}
    # bob's boxes moved right: left and right edges drift, top and bottom do not
    assert {"drift.left", "drift.right"} <= failed
    assert not failed & {"drift.top", "drift.bottom"}


@pytest.mark.parametrize("fmt", cases("golden_findings"))
def test_golden_finds_missed_flipped_and_phantom(engine: Engine, fmt: str) -> None:
    assert gate(engine, fmt, "golden").counts_by_rule() == expected_golden()


@pytest.mark.parametrize("fmt", FORMATS)
def test_confusion_fails_on_cyclist_pedestrian(engine: Engine, fmt: str) -> None:
    r = gate(engine, fmt, "confusion")
    assert r.verdict == "failed"
    # the pair overall, and one annotator's own pair (alice's habit; see test_confusion)
    scopes = {c.scope for c in r.failed_checks}
    assert "pair:cyclist->pedestrian" in scopes
    assert [s.endswith("|pair:cyclist->pedestrian") for s in scopes - {"pair:cyclist->pedestrian"}] == [True]


@pytest.mark.parametrize("fmt", cases("confusion_count"))
def test_confusion_counts_each_flipped_cyclist(engine: Engine, fmt: str) -> None:
    r = gate(engine, fmt, "confusion")
    assert r.counts_by_rule() == Counter({"confusion": len(SCENE.flipped)})


@pytest.mark.parametrize("fmt", cases("agreement"))
def test_agreement_per_format(engine: Engine, fmt: str) -> None:
    """Objects another annotator drew alone on an image have no consensus: agreement fails
    wherever the format can say that two people drew on one image; it skips where it cannot."""
    r = gate(engine, fmt, "agreement")
    n = multi_annotated(fmt)
    if n:
        assert r.verdict == "failed"
        assert r.metrics["images_multi_annotated"] == n
    else:
        assert r.verdict == "skipped"
