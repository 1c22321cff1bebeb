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
import re
import shutil
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


# -- the pre-commit hook matches exactly what the readers accept (issue 13) ---------------------


def test_pre_commit_files_pattern_is_the_readers_suffixes_plus_yolo_configs() -> None:
    yaml = pytest.importorskip("yaml")
    from annogate.formats import _builtin_formats
    from annogate.formats.yolo import _CONFIG_YAML

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    files = re.compile(hook["files"])
    suffixes = {s for f in _builtin_formats() for s in f.suffixes}
    m = re.search(r"\\\.\(([a-z|]+)\)", hook["files"])
    assert m is not None and {"." + s for s in m.group(1).split("|")} == suffixes
    for s in suffixes:
        assert files.search(f"labels/batch{s}")
    for name in (*_CONFIG_YAML, "obj.data"):
        assert files.search(f"ds/{name}") and files.search(name)
    for other in ("ci.yaml", ".github/workflows/ci.yml", "x.py", "README.md", "annogate.toml", "mydata.yaml"):
        assert not files.search(other), other
    assert "--annogate-allow-empty" in hook["args"]


# -- acceptance: sessions (pytester) ------------------------------------------------------------


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--annogate", "-p", "no:cacheprovider", *args)


def _items(res: pytest.RunResult) -> list[str]:
    return [ln.strip() for ln in res.stdout.lines if "::" in ln and not ln.startswith(("FAILED", "ERROR", "SKIPPED"))]


@pytest.fixture
def labels(pytester: pytest.Pytester) -> Path:
    """A label repository: the example rules and golden file, a COCO batch, and the
    YOLO, VOC and LabelMe example folders."""
    root = pytester.path
    shutil.copy(EXAMPLES / "annogate.toml", root / "annogate.toml")
    for sub in ("golden", "clean", "yolo", "voc", "labelme"):
        shutil.copytree(EXAMPLES / sub, root / sub)
    return root


def test_a_folder_batch_is_one_node_with_one_item_per_gate(pytester: pytest.Pytester, labels: Path) -> None:
    res = _run(pytester, "--co", "-q", ".")
    items = _items(res)
    gates = [g.name for g in Engine().gates]
    for folder in ("yolo", "voc", "labelme"):
        assert [i for i in items if i.startswith(folder)] == [f"{folder}::{g}" for g in gates], items
    assert not any(i.endswith((".txt", ".xml")) or "/alice/" in i for i in items), items  # files not again
    assert "clean/batch.json::schema" in items
    assert res.ret == 0


def test_folder_batch_findings_name_the_file_inside(pytester: pytest.Pytester, labels: Path) -> None:
    out = pytester.path.parent / f"{pytester.path.name}-report.json"
    res = _run(pytester, "yolo", "-k", "schema", "--annogate-report", str(out))
    assert res.ret == 1
    text = out.read_text()
    assert re.search(r'"file": "[^"]*labels/\w+/street_\d+\.txt"', text), text[:3000]


def test_format_table_in_rules_decides_before_sniffing(pytester: pytest.Pytester) -> None:
    root = pytester.path
    shutil.copytree(EXAMPLES / "labelme" / "alice", root / "work" / "alice")
    (root / "annogate.toml").write_text('[format]\n"work/**" = "voc"\n')
    res = _run(pytester, "--co", "-q", "work")
    assert _items(res)[:1] == ["work::schema"], res.stdout.str()
    run = _run(pytester, "work", "-q", "-k", "schema")
    assert run.ret == 1 and "Pascal VOC folder" in run.stdout.str()  # read as VOC: no .xml files


def test_unreadable_files_beside_good_batches_fail_with_why(pytester: pytest.Pytester) -> None:
    root = pytester.path
    (root / "b").mkdir()
    (root / "b" / "good.json").write_text(json.dumps(COCO))
    (root / "b" / "empty.json").write_bytes(b"")
    (root / "b" / "utf16.json").write_bytes(json.dumps(COCO).encode("utf-16"))
    (root / "b" / "numbers.json").write_text("[1, 2, 3]")
    (root / "b" / "package.json").write_text('{"name": "x"}')  # plainly something else
    (root / "b" / "notes.md").write_text("no reader handles .md")  # out of scope
    report = pytester.path.parent / f"{pytester.path.name}-report.json"
    res = _run(pytester, "b", "--annogate-report", str(report))
    assert res.ret == 1
    out = res.stdout.str()
    batches = {b["path"]: b for b in json.loads(report.read_text())["batches"]}
    for name, why in (("empty", "empty file"), ("utf16", "UTF-16"), ("numbers", "an array of numbers")):
        assert f"b/{name}.json::schema" in out
        assert why in json.dumps(batches[f"b/{name}.json"]), batches[f"b/{name}.json"]
    assert "COCO results array" in json.dumps(batches["b/numbers.json"])
    assert "Label Studio export" in json.dumps(batches["b/numbers.json"])
    assert "package.json" not in out and "notes.md" not in out
    assert res.parseoutcomes()["failed"] == 3


def test_rules_batches_and_exclude_decide_the_scope(pytester: pytest.Pytester) -> None:
    root = pytester.path
    (root / "annogate.toml").write_text('batches = ["labels/**"]\nexclude = ["labels/old/**"]\n')
    for rel in ("labels/a.json", "labels/old/b.json", "other/c.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(COCO))
    (root / "labels" / "notes.dat").write_text("in scope by the batches glob, read by no reader")
    res = _run(pytester, "--co", "-q", ".")
    paths = {i.split("::")[0] for i in _items(res)}
    assert paths == {"labels/a.json", "labels/notes.dat"}, res.stdout.str()


def test_zero_batches_is_exit_5_naming_the_paths(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty").mkdir()
    (pytester.path / "package.json").write_text("{}")
    res = _run(pytester, "empty", "package.json")
    assert res.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    res.stdout.fnmatch_lines(["annogate: no label batches under empty, package.json"])
    assert _run(pytester, "empty", "--annogate-allow-empty").ret == 0


def test_special_files_in_scope_fail_and_are_never_read(pytester: pytest.Pytester) -> None:
    root = pytester.path
    (root / "b").mkdir()
    (root / "b" / "good.json").write_text(json.dumps(COCO))
    os.mkfifo(root / "b" / "fifo.json")  # reading it would block for ever
    (root / "b" / "zero.json").symlink_to("/dev/zero")  # reading it would never end
    res = _run(pytester, "b", "-rf")
    out = res.stdout.str()
    assert res.ret == 1, out[-3000:]
    assert "b/fifo.json::schema" in out and "a FIFO, not a regular file" in out
    assert "b/zero.json::schema" in out and "a device, not a regular file" in out


def test_symlinked_batch_takes_the_rules_of_its_location(pytester: pytest.Pytester) -> None:
    """Issue 8: the nearest rules above the path as given, not above the link's target."""
    root = pytester.path
    bad = {**COCO, "annotations": [{**COCO["annotations"][0], "bbox": [10, 10, 0, 20]}]}  # type: ignore[dict-item]
    (root / "strict").mkdir()
    (root / "strict" / "annogate.toml").write_text("[geometry.thresholds]\ndefault = { max_count = 0 }\n")
    (root / "strict" / "b.json").write_text(json.dumps(bad))
    (root / "lax").mkdir()
    (root / "lax" / "annogate.toml").write_text("[geometry.thresholds]\ndefault = { max_count = 1000 }\n")
    (root / "lax" / "link.json").symlink_to(root / "strict" / "b.json")
    assert _run(pytester, "lax/link.json", "-k", "geometry").ret == 0
    assert _run(pytester, "strict/b.json", "-k", "geometry").ret == 1
    both = _run(pytester, ".", "--co", "-q", "-k", "geometry")  # one file, two rules: two batches
    assert {i.split("::")[0] for i in _items(both)} == {"lax/link.json", "strict/b.json"}


def test_directory_symlink_loop_is_collected_once(pytester: pytest.Pytester) -> None:
    root = pytester.path
    (root / "b").mkdir()
    (root / "b" / "good.json").write_text(json.dumps(COCO))
    (root / "b" / "loop").symlink_to(root / "b")
    res = _run(pytester, "b", "--co", "-q")
    assert [i for i in _items(res) if i.endswith("::schema")] == ["b/good.json::schema"]
