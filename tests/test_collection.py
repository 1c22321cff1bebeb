"""Which paths become batches, and how: folder batches, scope, unclaimed files, layouts.

Why these tests exist (issue 13, "nothing in scope passes unread"; issue 8, symlinks
and special files): a gate that goes green on what it cannot read is worse than no
gate. Each test here failed on the code before the change it guards: a YOLO/VOC/
LabelMe folder was collected file by file (one batch per label file), an empty or
UTF-16 ``.json`` beside good batches was silently skipped, zero batches exited 0
from the console script, and ``--annogate-rules`` naming a FIFO hung the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from annogate.engine import Engine
from annogate.formats import Format, detect_format, explain_unclaimed, load_batch
from annogate.formats._builder import AnnotatorFrom
from annogate.rules import RulesError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}],
    "categories": [{"id": 1, "name": "car"}],
}


# -- rules files are read only when they are regular files (issue 8) ----------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_rules_option_naming_a_special_file_is_refused_without_reading(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        target = tmp_path / "rules.toml"
        os.mkfifo(target)  # reading it would block forever (no writer)
    else:
        target = Path("/dev/zero")  # reading it would never end
    # in a subprocess with a timeout: before the fix, opening the FIFO blocked for ever
    code = (
        "import sys; from pathlib import Path; from annogate.engine import Engine; Engine(rules_path=Path(sys.argv[1]))"
    )
    try:
        run = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading rules from {target} hung")
    assert run.returncode != 0 and "not a regular file" in run.stderr, run.stderr[-2000:]


# -- annotator_from: the layout names the annotator (issue 13) ----------------------------------


def test_annotator_from_parses_parent_dir_and_named_group() -> None:
    assert AnnotatorFrom("parent_dir").of("alice/x.json") == "alice"
    assert AnnotatorFrom("parent_dir").of("x.json") is None
    assert AnnotatorFrom(r"^(?P<annotator>[^/]+)/").of("bob/sub/x.json") == "bob"
    assert AnnotatorFrom(r"by-(?P<annotator>\w+)").of("x.json") is None
    with pytest.raises(ValueError, match="annotator"):
        AnnotatorFrom(r"(\w+)/")
    with pytest.raises(ValueError, match="regular expression"):
        AnnotatorFrom("(")


@pytest.mark.parametrize("bad", ["(", r"(\w+)/x"])
def test_annotator_from_in_rules_is_validated(tmp_path: Path, bad: str) -> None:
    (tmp_path / "annogate.toml").write_text(f"annotator_from = {json.dumps(bad)}\n")
    with pytest.raises(RulesError, match="annotator_from"):
        Engine().rules_for(tmp_path / "x.json")


def _labelme(image: str, label: str = "car") -> dict[str, object]:
    pts = [[10, 10], [30, 30]]
    shape = {"label": label, "points": pts, "shape_type": "rectangle", "group_id": None, "flags": {}}
    return {"version": "5.0.1", "shapes": [shape], "imagePath": image, "imageWidth": 100, "imageHeight": 80}


def _voc(image: str) -> str:
    return (
        f"<annotation><filename>{image}</filename><size><width>100</width><height>80</height></size>"
        "<object><name>car</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>30</xmax><ymax>30</ymax></bndbox>"
        "</object></annotation>"
    )


@pytest.mark.parametrize("fmt", ["labelme", "voc"])
def test_one_image_in_two_annotators_folders_is_one_image_labelled_twice(tmp_path: Path, fmt: str) -> None:
    for who in ("alice", "bob"):
        d = tmp_path / who
        d.mkdir()
        if fmt == "labelme":
            (d / "x.json").write_text(json.dumps(_labelme("x.jpg")))
        else:
            (d / "x.xml").write_text(_voc("x.jpg"))
    plain = load_batch(tmp_path, format=fmt)
    assert "duplicate_image" in {p.rule for p in plain.problems}
    b = load_batch(tmp_path, format=fmt, annotator_from="parent_dir")
    assert "duplicate_image" not in {p.rule for p in b.problems}
    assert sorted(b.annotators) == ["alice", "bob"]
    assert b.images.file_name.tolist() == ["x.jpg"]
    names = [b.annotators[i] for i in b.annotations.annotator.tolist()]
    assert sorted(names) == ["alice", "bob"]
    # still a duplicate when one annotator describes the image twice
    d = tmp_path / "alice" / "again"
    d.mkdir()
    if fmt == "labelme":
        (d / "y.json").write_text(json.dumps(_labelme("x.jpg")))
    else:
        (d / "y.xml").write_text(_voc("x.jpg"))
    twice = load_batch(tmp_path, format=fmt, annotator_from=r"^(?P<annotator>[^/]+)/")
    assert "duplicate_image" in {p.rule for p in twice.problems}


def test_yolo_image_in_two_annotators_folders_keeps_its_file_name() -> None:
    plain = load_batch(EXAMPLES / "yolo", format="yolo")
    assert any("/" in str(n) for n in plain.images.file_name.tolist())  # renamed to keep names unique
    b = load_batch(EXAMPLES / "yolo", format="yolo", annotator_from="parent_dir")
    assert not any("/" in str(n) for n in b.images.file_name.tolist())
    assert sorted(b.annotators) == ["alice", "bob", "carol"]
    assert (b.annotations.annotator >= 0).all()


# -- folder sniffers claim dataset folders only (issue 13) --------------------------------------

FOLDER_FORMATS = ("yolo", "voc", "labelme")


def _fmt(name: str) -> Format:
    return next(f for f in Engine().formats if f.name == name)


@pytest.mark.parametrize("fmt", FOLDER_FORMATS)
@pytest.mark.parametrize(
    "folder", ["examples", "examples/cvat", "examples/golden", "examples/labelstudio", "tests", "."]
)
def test_folder_sniffers_do_not_claim_folders_that_merely_hold_datasets(fmt: str, folder: str) -> None:
    path = ROOT / folder
    assert not _fmt(fmt).sniff(path, b""), f"{fmt} claims {folder}/ as one batch"
    assert detect_format(path) is None


@pytest.mark.parametrize("fmt", FOLDER_FORMATS)
def test_each_example_folder_is_claimed_by_its_own_format_only(fmt: str) -> None:
    for other in FOLDER_FORMATS:
        assert _fmt(other).sniff(EXAMPLES / fmt, b"") == (other == fmt)
    found = detect_format(EXAMPLES / fmt)
    assert found is not None and found.name == fmt


def test_folder_mixing_batches_of_two_formats_is_not_one_batch(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps(_labelme("x.jpg")))
    assert detect_format(tmp_path) is not None
    (tmp_path / "coco.json").write_text(json.dumps(COCO))
    assert detect_format(tmp_path) is None  # each file is its own batch


def test_yolo_folder_needs_a_config_that_reads_as_one(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    assert not _fmt("yolo").sniff(tmp_path, b"")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images\nnames:\n  0: car\n")
    assert _fmt("yolo").sniff(tmp_path, b"")


def test_labels_and_images_folders_without_label_files_are_no_yolo_dataset(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels" / "en.json").write_text("{}")
    assert not _fmt("yolo").sniff(tmp_path, b"")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert _fmt("yolo").sniff(tmp_path, b"")


# -- why a file in scope is no batch (issue 13) -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("b.json", b"", "empty file"),
        ("b.json", b" \n\t ", "only whitespace"),
        ("b.json", json.dumps(COCO).encode("utf-16"), "UTF-16"),
        ("b.json", bytes(range(256)) * 8, "binary data"),
        ("b.json", b'{"a": "\xc3\x28"}', "not UTF-8 text"),
        ("b.json", b"{'images': []}", "not JSON"),
        ("b.json", b"[1, 2, 3]", "an array of numbers"),
        ("b.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("b.json", b'{"name": "x", "version": "1"}', "an object with keys 'name', 'version'"),
        ("b.xml", b"<?xml version='1.0'?><svg></svg>", "root element is <svg>"),
        ("b.txt", b"hello world\n", "text of no known label shape"),
    ],
)
def test_unclaimed_file_says_what_it_is_and_what_was_looked_for(
    tmp_path: Path, name: str, raw: bytes, says: str
) -> None:
    p = tmp_path / name
    p.write_bytes(raw)
    assert detect_format(p) is None
    why = explain_unclaimed(p)
    assert says in why, why
    if name == "b.json" and says not in ("UTF-16",):
        for shape in ("COCO object", "COCO results array", "Label Studio export", "LabelMe file"):
            assert shape in why, why
