"""The YOLO reader: layouts, tasks, image sizes from headers, hostile folders, and third-party conformance.

Fixtures are folders under ``tests/data/{valid,invalid}/yolo/`` with an ``expected.json``
written by hand (boxes worked out from the normalised rows and the image sizes);
hostile inputs too big or too odd to commit (10 MB rows, symlink loops, EXIF
rotation) are built in ``tmp_path``.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import annogate.formats.yolo as yolo
from annogate.formats import LoadError, detect_format, load_batch
from annogate.formats._imagesize import ImageSizeError, read_image_size
from annogate.formats.yolo import FORMAT, load_yolo, sniff_yolo
from annogate.model import Batch

DATA = Path(__file__).parent / "data"
VALID = sorted(p for p in (DATA / "valid" / "yolo").iterdir() if p.is_dir())
INVALID = sorted(p for p in (DATA / "invalid" / "yolo").iterdir() if p.is_dir() and not p.name.startswith("unreadable"))
UNREADABLE = sorted((DATA / "invalid" / "yolo").glob("unreadable__*"))
THIRDPARTY = Path(__file__).resolve().parents[1].parent / "shared" / "thirdparty"
DATUMARO = THIRDPARTY / "cvat-ai-datumaro" / "tests" / "assets" / "yolo_dataset"


def _expected(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((folder / "expected.json").read_text())
    return out


def _rel(file: str | None, folder: Path) -> str | None:
    return None if file is None else Path(file).relative_to(folder).as_posix()


def _problems(b: Batch, folder: Path) -> list[tuple[str, str | None, int | None]]:
    return sorted(((p.rule, _rel(p.file, folder), p.line) for p in b.problems), key=repr)


@pytest.mark.parametrize("folder", VALID, ids=[p.name for p in VALID])
def test_valid_layouts_convert_to_pixels(folder: Path) -> None:
    exp = _expected(folder)
    assert sniff_yolo(folder, b"")
    b = load_yolo(folder)
    assert b.format == "yolo"
    assert b.problems == []
    sizes = {str(n): [w, h] for n, w, h in zip(b.images.file_name, b.images.width, b.images.height, strict=True)}
    assert sizes == exp["images"]
    a = b.annotations
    assert len(a) == len(exp["annotations"])
    for i, e in enumerate(exp["annotations"]):
        assert b.image_name(i) == e["image"]
        assert b.category_name(i) == e["category"]
        assert _rel(b.source_file(i), folder) == e["file"]
        assert a.line[i] == e["line"]
        assert a.bbox[i] == pytest.approx(e["bbox"], abs=1e-9)
        if "polygon" in e:
            assert [r.tolist() for r in a.rings(i)] == [pytest.approx(e["polygon"])]
        else:
            assert a.rings(i) == []
        if "keypoints" in e:
            assert a.keypoints_of(i).ravel().tolist() == pytest.approx(e["keypoints"])
        if "rotation" in e:
            assert a.rotation is not None and a.rotation[i] == pytest.approx(e["rotation"], abs=1e-9)
    for cls, names in exp.get("keypoint_names", {}).items():
        k = b.categories.index_by_name()[cls]
        assert list(b.categories.keypoints[k]) == names
    if exp.get("skip"):
        assert b.skip_reason is not None and "classification" in b.skip_reason
        assert b.meta["image_class"] == exp["image_class"]
    else:
        assert b.skip_reason is None
    assert len(b.sha256) == 64


@pytest.mark.parametrize("folder", INVALID, ids=[p.name for p in INVALID])
def test_hostile_folders_become_problems_with_file_and_line(folder: Path) -> None:
    exp = _expected(folder)
    b = load_yolo(folder)
    assert _problems(b, folder) == sorted(((p["rule"], p["file"], p["line"]) for p in exp["problems"]), key=repr)
    assert [[int(a), b.category_name(i)] for i, a in enumerate(b.annotations.line)] == exp["objects"]
    for key in ("bbox_line_1", "bbox_line_10"):
        if key in exp:
            i = b.annotations.line.tolist().index(int(key.rsplit("_", 1)[1]))
            assert b.annotations.bbox[i].tolist() == exp[key]


@pytest.mark.parametrize("folder", UNREADABLE, ids=[p.name for p in UNREADABLE])
def test_unreadable_dataset_yaml_is_a_load_error_with_line(folder: Path) -> None:
    with pytest.raises(LoadError) as ei:
        load_yolo(folder)
    assert ei.value.path == folder / "data.yaml"
    assert ei.value.line == _expected(folder)["error_line"]


def test_alias_bomb_is_never_expanded() -> None:
    """names/path/kpt_shape point at a 9**9-element alias tree: reported by type, never turned into text."""
    b = load_yolo(DATA / "invalid" / "yolo" / "alias_bomb")
    assert all(len(p.message) < 300 for p in b.problems)


def test_outside_paths_are_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    folder = DATA / "invalid" / "yolo" / "outside"
    load_yolo(folder)
    root = folder.resolve()
    assert opened and all(Path(f).resolve().is_relative_to(root) for f in opened)


def test_empty_folder_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no YOLO label files or images"):
        load_yolo(tmp_path)
    with pytest.raises(LoadError, match="no such file"):
        load_yolo(tmp_path / "absent")
    with pytest.raises(LoadError, match="unknown YOLO task"):
        load_yolo(tmp_path, task="nope")


def _png(path: Path, w: int = 20, h: int = 10) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (w, h)).save(path)


def _dataset(tmp_path: Path, rows: str | bytes, *, names: str = "car\n") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "classes.txt").write_text(names)
    _png(tmp_path / "images" / "a.png")
    lbl = tmp_path / "labels" / "a.txt"
    lbl.parent.mkdir(parents=True, exist_ok=True)
    lbl.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
    return lbl


def test_ten_megabyte_row_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    _dataset(tmp_path, "0 0.5 0.5 0.5 0.2\n0" + " 0.5" * (10 << 18) + "\n0 0.5 0.5 0.5 0.2\n")
    b = load_yolo(tmp_path)
    assert [(p.rule, p.line) for p in b.problems] == [("line_too_long", 2)]
    assert b.annotations.line.tolist() == [1, 3]


def test_oversized_label_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yolo, "MAX_LABEL_BYTES", 64)
    _dataset(tmp_path, "0 0.5 0.5 0.5 0.2\n" * 10)
    b = load_yolo(tmp_path)
    assert [p.rule for p in b.problems] == ["file_too_large"]
    assert len(b.annotations) == 0 and len(b.images) == 1


def test_oversized_yaml_is_a_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yolo, "MAX_CONFIG_BYTES", 100)
    (tmp_path / "data.yaml").write_text("names: [" + ", ".join(f"c{i}" for i in range(100)) + "]\ntrain: images\n")
    with pytest.raises(LoadError, match="cannot be read"):
        load_yolo(tmp_path)


def test_symlink_loops_and_escapes_are_not_followed(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    _dataset(ds, "0 0.5 0.5 0.5 0.2\n")
    (ds / "labels" / "loop").symlink_to(ds, target_is_directory=True)
    (ds / "images" / "self").symlink_to(ds / "images", target_is_directory=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("0 0.5 0.5 0.5 0.2\n")
    (ds / "labels" / "b.txt").symlink_to(secret)
    (ds / "labels" / "dangling.txt").symlink_to(tmp_path / "nowhere")
    (ds / "labels" / "cycle.txt").symlink_to(ds / "labels" / "cycle.txt")
    b = load_yolo(ds)
    assert b.annotations.line.tolist() == [1]
    assert [(p.rule, Path(p.file or "").name) for p in b.problems] == [("outside_dataset", "b.txt")]


def test_huge_claimed_dimensions_stay_numbers(tmp_path: Path) -> None:
    """A 33-byte PNG claiming 10**9 × 10**9 pixels: read as numbers, nothing allocated."""
    size = read_image_size(DATA / "invalid" / "yolo" / "huge_header" / "images" / "h.png")
    assert (size.width, size.height) == (10**9, 10**9)


def test_non_images_and_garbage_headers_are_image_unreadable(tmp_path: Path) -> None:
    (tmp_path / "x.svg").write_text('<svg width="10" height="10"/>')
    (tmp_path / "g.jpg").write_bytes(b"\xff\xd8" + b"\x00" * (3 << 20))
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for name in ("x.svg", "g.jpg", "t.png"):
        with pytest.raises(ImageSizeError):
            read_image_size(tmp_path / name)
    _dataset(tmp_path / "ds", "0 0.5 0.5 0.5 0.2\n")
    (tmp_path / "ds" / "images" / "a.png").write_bytes(b"not an image")
    b = load_yolo(tmp_path / "ds")
    assert [p.rule for p in b.problems] == ["image_unreadable"]
    assert "1 object(s) not converted" in b.problems[0].message


def test_exif_orientation_gives_the_displayed_size(tmp_path: Path) -> None:
    """Normalised coordinates refer to the displayed image: EXIF 6 swaps width and height."""
    from PIL import Image

    _dataset(tmp_path, "0 0.5 0.5 0.5 0.2\n")
    img = tmp_path / "images" / "a.jpg"
    (tmp_path / "images" / "a.png").unlink()
    im = Image.new("RGB", (20, 10))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(img, exif=exif)
    b = load_yolo(tmp_path)
    assert (b.images.width[0], b.images.height[0]) == (10, 20)
    assert b.annotations.bbox[0].tolist() == pytest.approx([2.5, 8, 5, 4])


def test_image_size_option_for_absent_images(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("car\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.2\n")
    b = load_yolo(tmp_path)
    assert len(b.annotations) == 0 and [p.rule for p in b.problems] == ["missing_image"]
    b = load_yolo(tmp_path, image_size=(640, 329))
    assert b.annotations.bbox[0].tolist() == pytest.approx([160, 131.6, 320, 65.8])
    assert [(p.rule, p.severity) for p in b.problems] == [("missing_image", "warning")]


def test_task_option_settles_nine_field_rows(tmp_path: Path) -> None:
    _dataset(tmp_path, "0 0.2 0.2 0.6 0.2 0.6 0.4 0.2 0.4\n")
    auto = load_yolo(tmp_path)
    assert auto.annotations.rotation is None or auto.annotations.rotation[0] == 0
    assert auto.annotations.rings(0) == []
    seg = load_yolo(tmp_path, task="segment")
    assert [r.tolist() for r in seg.annotations.rings(0)] == [pytest.approx([4, 2, 12, 2, 12, 4, 4, 4])]
    det = load_yolo(tmp_path, task="pose")
    assert [p.rule for p in det.problems] == ["field_count"]


def test_obb_rotation_round_trips_through_corners() -> None:
    """Corners built from (box, angle) by rotating clockwise (y down) come back as the same box and angle."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        x, y = rng.uniform(-50, 50, 2)
        w, h = rng.uniform(0.5, 40, 2)
        ang = float(rng.uniform(0, 360))
        t = math.radians(ang)
        cx, cy = x + w / 2, y + h / 2
        rel = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
        pts = [(cx + dx * math.cos(t) - dy * math.sin(t), cy + dx * math.sin(t) + dy * math.cos(t)) for dx, dy in rel]
        bbox, rot, rect = yolo._obb(pts)
        assert rect
        assert bbox == pytest.approx((x, y, w, h), abs=1e-9)
        assert (rot - ang + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)


def test_single_label_file_and_sniffing(tmp_path: Path) -> None:
    lbl = _dataset(tmp_path, "0 0.5 0.5 0.5 0.2\n")
    (tmp_path / "labels" / "other.txt").write_text("0 0.1 0.1 0.1 0.1\n")
    assert sniff_yolo(lbl, lbl.read_bytes())
    assert detect_format(lbl, formats=[FORMAT]) is FORMAT
    b = load_batch(lbl, formats=[FORMAT])
    assert b.images.file_name.tolist() == ["a.png"] and b.categories.name.tolist() == ["car"]
    assert b.annotations.bbox[0].tolist() == [5, 4, 10, 2]
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n2 apples\n")
    assert not sniff_yolo(notes, notes.read_bytes())
    assert not sniff_yolo(tmp_path / "classes.txt", b"car\n")
    assert not sniff_yolo(tmp_path / "labels", b"")


def test_several_dataset_yamls_are_ambiguous(tmp_path: Path) -> None:
    _dataset(tmp_path, "0 0.5 0.5 0.5 0.2\n")
    (tmp_path / "a.yaml").write_text("names: [car]\n")
    (tmp_path / "b.yaml").write_text("names: [car]\n")
    with pytest.raises(LoadError, match="several dataset yaml"):
        load_yolo(tmp_path)
    assert len(load_yolo(tmp_path / "a.yaml").annotations) == 1


# -- third-party conformance ------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"third-party data not present at {path}")
    return path


def _objects(b: Batch) -> list[tuple[str | None, list[float]]]:
    return [(b.category_name(i), np.round(b.annotations.bbox[i], 2).tolist()) for i in range(len(b.annotations))]


DETECTION = [
    "yolo",
    *(f"yolov8_detection{s}" for s in ("", "_with_list_of_imgs", "_with_list_of_names", "_with_subset_txt")),
]


@pytest.mark.parametrize("name", DETECTION)
def test_datumaro_detection_layouts(name: str) -> None:
    b = load_yolo(_need(DATUMARO / name))
    assert b.problems == []
    assert (b.images.width.tolist(), b.images.height.tolist()) == ([15], [10])
    assert b.categories.name.tolist() == [f"label_{i}" for i in range(10)]
    assert _objects(b) == [("label_2", [0, 2, 4, 2]), ("label_4", [3, 3, 2, 3])]


def test_datumaro_segmentation_obb_pose_classification() -> None:
    seg = load_yolo(_need(DATUMARO / "yolov8_segmentation"))
    assert [b.tolist() for i in range(2) for b in seg.annotations.rings(i)] == [
        pytest.approx([1.5, 1.0, 6.0, 1.0, 6.0, 5.0]),
        pytest.approx([3.0, 1.5, 6.0, 1.5, 6.0, 7.5, 4.5, 7.5, 3.75, 3.0]),
    ]
    obb = load_yolo(DATUMARO / "yolov8_oriented_boxes")
    assert obb.annotations.rotation is not None
    assert [obb.category_name(i) for i in range(2)] == ["label_2", "label_4"]
    assert obb.annotations.bbox.tolist() == [
        pytest.approx([1, 2, 3, 4], abs=1e-4),
        pytest.approx([3, 2, 6, 2], abs=1e-4),
    ]
    assert obb.annotations.rotation.tolist() == pytest.approx([30, 120], abs=1e-3)
    for name in ("yolov8_pose", "yolov8_pose_two_values_per_point"):
        pose = load_yolo(DATUMARO / name)
        assert pose.categories.keypoints[0] == tuple(f"skeleton_label_point_{j}" for j in range(3))
        assert pose.annotations.keypoints_of(0).ravel().tolist() == pytest.approx([1.5, 2, 2, 4.5, 4, 2, 7.5, 6, 2])
    cls = load_yolo(DATUMARO / "yolov8_classification")
    assert cls.skip_reason is not None and len(cls.annotations) == 0
    assert cls.meta["image_class"] == {
        "train/label_0/1.jpg": "label_0",
        "train/label_0/2.jpg": "label_0",
        "train/label_1/3.jpg": "label_1",
    }


def test_datumaro_exif_rotated_image(tmp_path: Path) -> None:
    """Upstream adds EXIF orientation 6 to 1.jpg: the same rows give boxes on a 10×15 image."""
    import shutil

    from PIL import Image

    src = _need(DATUMARO / "yolo")
    ds = tmp_path / "yolo"
    shutil.copytree(src, ds)
    img = ds / "obj_train_data" / "1.jpg"
    with Image.open(src / "obj_train_data" / "1.jpg") as im:
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(img, exif=exif)
    b = load_yolo(ds)
    assert (b.images.width.tolist(), b.images.height.tolist()) == ([10], [15])
    assert _objects(b) == [("label_2", [0, 3, 2.67, 3.0]), ("label_4", [2, 4.5, 1.33, 4.5])]


DAGSHUB = THIRDPARTY / "dagshub-annotation-converter" / "tests" / "fs_import" / "yolo" / "res"


@pytest.mark.parametrize(
    ("yaml", "labels", "kind"),
    [
        ("bbox_and_segmentation.yaml", "labels_bbox", "bbox"),
        ("bbox_and_segmentation.yaml", "labels_segmentation", "segmentation"),
        ("pose_2dim.yaml", "labels_pose_2dim", "pose2"),
        ("pose_3dim.yaml", "labels_pose_3dim", "pose3"),
        ("bbox_and_segmentation.yaml", "empty", "empty"),
    ],
)
def test_dagshub_yolo(yaml: str, labels: str, kind: str) -> None:
    b = load_yolo(_need(DAGSHUB / yaml), labels_dir=labels)
    assert b.problems == []
    assert (b.images.file_name.tolist(), b.images.width.tolist(), b.images.height.tolist()) == (
        ["testimg.png"],
        [640],
        [480],
    )
    a = b.annotations
    norm = [(b.category_name(i), (a.bbox[i] / [640, 480, 640, 480]).tolist()) for i in range(len(a))]
    if kind == "empty":
        assert norm == []
        return
    if kind == "segmentation":
        rings = [(r.reshape(-1, 2) / [640, 480]).ravel().tolist() for i in range(len(a)) for r in a.rings(i)]
        assert rings == [[0, 0, 0.5, 0, 0.5, 0.5, 0, 0.5], [0.5, 0.5, 1, 0.5, 1, 1, 0.5, 1], [0, 0, 0.5, 0, 0, 0.5]]
        assert [b.category_name(i) for i in range(3)] == ["dog", "cat", "dog"]
        return
    assert norm == [("dog", [0, 0, 0.5, 0.5]), ("cat", [0.5, 0.5, 0.5, 0.5])]
    if kind.startswith("pose"):
        kp = [a.keypoints_of(i) for i in range(2)]
        xy = [(k[:, :2] / [640, 480]).ravel().round(6).tolist() for k in kp]
        assert xy == [[0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4], [0.6, 0.6, 0.7, 0.7, 0.8, 0.8, 0.9, 0.9]]
        vis = [k[:, 2].tolist() for k in kp]
        # 2 values per point: visible; 3 values: Ultralytics/COCO scale kept as written (1 = labelled, not visible)
        assert vis == ([[2] * 4] * 2 if kind == "pose2" else [[1, 0, 1, 0]] * 2)


def test_dagshub_without_labels_dir_names_the_ambiguity() -> None:
    b = load_yolo(_need(DAGSHUB / "bbox_and_segmentation.yaml"))
    assert len(b.annotations) == 0
    assert {p.rule for p in b.problems} == {"duplicate_label_file", "missing_image"}
    assert all("labels_dir" in p.message for p in b.problems if p.rule == "duplicate_label_file")


def test_label_studio_yolo_import_with_uniform_dims() -> None:
    folder = _need(THIRDPARTY / "label-studio-sdk/tests/custom/converter/data/test_import_yolo_data_unif_dims")
    b = load_yolo(folder, image_size=(640, 329))
    assert b.categories.name.tolist() == ["closed_door", "opened_door", "bus", "number"]
    assert b.images.file_name.tolist() == [f"img_{i}" for i in range(1, 6)]
    assert {p.rule for p in b.problems} == {"missing_image"} and all(p.severity == "warning" for p in b.problems)
    first = (folder / "labels" / "img_1.txt").read_text().split("\n")[0].split()
    cx, cy, w, h = (float(v) for v in first[1:])
    assert b.annotations.bbox[0].tolist() == pytest.approx([(cx - w / 2) * 640, (cy - h / 2) * 329, w * 640, h * 329])


def test_review_object_detection_metrics_yolo_matches_coco() -> None:
    """Same boxes as the COCO v1 file of the same 100 images, within 1 px, by image file name and class name."""
    db = _need(THIRDPARTY / "review_object_detection_metrics/data/database")
    b = load_yolo(db / "gts" / "yolo_format", images_dir=db / "images")
    assert b.problems == []
    coco = load_batch(db / "gts" / "coco_format_v1" / "instances_default.json")
    assert len(b.images) == len(coco.images) == 100

    def by_key(x: Batch) -> dict[tuple[str | None, str | None], list[list[float]]]:
        out: dict[tuple[str | None, str | None], list[list[float]]] = defaultdict(list)
        for i in range(len(x.annotations)):
            out[(x.image_name(i), x.category_name(i))].append(x.annotations.bbox[i].tolist())
        return out

    got, ref = by_key(b), by_key(coco)
    assert got.keys() == ref.keys()
    for k, boxes in ref.items():
        mine = list(got[k])
        assert len(mine) == len(boxes)
        for box in boxes:  # nearest unmatched box, so equal-class neighbours cannot pair wrongly
            j = min(range(len(mine)), key=lambda t: max(abs(u - v) for u, v in zip(mine[t], box, strict=True)))
            assert max(abs(u - v) for u, v in zip(mine.pop(j), box, strict=True)) <= 1.0
