"""YOLO datasets (Darknet and Ultralytics layouts): detection, segmentation, oriented boxes, pose.

A YOLO batch is a folder: one ``.txt`` per image, one object per row, coordinates
normalised to the image's displayed size. This reader finds the layout, pairs each
label file with its image, reads the image's size from its header (see
``_imagesize``: EXIF orientation applied, no pixels decoded) and converts rows to
pixels with :class:`~annogate.formats._builder.BatchBuilder`.

Layouts understood
    * Ultralytics: ``data.yaml`` (``names`` as list or dict, ``path``, ``train`` /
      ``val`` / ``test`` each a folder, an image, a ``.txt`` image list or a list of
      those; ``kpt_shape``; optional ``kpt_names``), ``images/<split>/`` mirrored by
      ``labels/<split>/`` (the last ``images`` path component becomes ``labels``).
    * Darknet / CVAT: ``obj.data`` (``names``, ``train``, ``valid``), ``obj.names``,
      ``train.txt``, ``obj_<split>_data/`` with the label beside its image; the
      ``data/`` prefix CVAT writes in those files is the dataset folder itself.
    * Label Studio's export and bare folders: ``classes.txt`` (or ``obj.names``),
      ``labels/``, ``images/``; with no class list, class names are the indices.
    * Classification (``<split>/<class>/<image>``, no label files): there are no
      objects to gate, so the batch carries the classes and images, the image-level
      class per image in ``meta["image_class"]``, and a ``skip_reason``.

Rows (fields after the class index): 4 = box (cx, cy, w, h); ``4 + K*D`` with
``kpt_shape: [K, D]`` = box plus K keypoints (D = 2: visibility 2; D = 3:
Ultralytics 0/1/2, which is COCO's scale); 8 = an oriented box (four corners, the
first the rotated top-left) unless the batch is a segmentation batch (any polygon
row of another length) or ``task="segment"``; any other even count >= 6 = polygon.
Oriented boxes become the unrotated box plus a clockwise (y down) rotation in
degrees about its centre, as the model says.

Everything wrong in the source is a :class:`~annogate.model.SourceProblem` naming
the label file and 1-based line; :class:`~annogate.formats.LoadError` only when the
dataset cannot be read at all. Every path the dataset names is confined to the
dataset folder (no ``data.yaml`` may send the reader to ``/etc``); symlinked folders
are not followed; sizes and counts are capped.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from annogate.formats import Format, LoadError, read_head, sample_files
from annogate.formats._builder import AnnotatorFrom, BatchBuilder, read_capped, sha256_of_files
from annogate.formats._imagesize import IMAGE_SUFFIXES, ImageSizeError, read_image_size
from annogate.model import Batch

__all__ = ["FORMAT", "TASKS", "load_yolo", "sniff_yolo"]

FORMAT_NAME = "yolo"
TASKS = ("detect", "segment", "obb", "pose")
MAX_LABEL_BYTES = 64 << 20  # one label file; a larger one is a problem, not read
MAX_LINE_CHARS = 1 << 20  # one row (a polygon of ~50k points); longer rows are a problem
MAX_CONFIG_BYTES = 1 << 20  # data.yaml, obj.data, names files, image lists
MAX_WALK_ENTRIES = 2_000_000  # directory entries visited in one dataset
MAX_DEPTH = 32
MAX_CLASSES = 100_000
MAX_KEYPOINTS = 1000
_CONFIG_YAML = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
_NAMES_FILES = ("classes.txt", "obj.names", "names.txt")
_LIST_NAMES = frozenset({"train.txt", "val.txt", "valid.txt", "test.txt", "readme.txt", "license.txt"})
_SPLIT_KEYS = ("train", "val", "test")
_DARKNET_SPLIT_KEYS = ("train", "valid", "test")
_ROW_RE = re.compile(r"^\s*\d+(\s+[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?){4,}\s*$")
_NAMES_KEY_RE = re.compile(rb"^names\s*:", re.MULTILINE)
_YAML_DATA_KEY_RE = re.compile(rb"^(train|val|test|path|kpt_shape|nc)\s*:", re.MULTILINE)


# -- discovery helpers ----------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies in ``root``; loops and errors count as outside."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


class _Walk:
    """A bounded walk: symlinked folders are not entered, hidden folders skipped, entries capped."""

    def __init__(self) -> None:
        self.entries = 0
        self.truncated = False

    def files(self, top: Path, depth: int = 0) -> Iterator[Path]:
        if depth > MAX_DEPTH:
            self.truncated = True
            return
        try:
            with os.scandir(top) as it:
                entries = sorted(islice(it, MAX_WALK_ENTRIES - self.entries + 1), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            self.entries += 1
            if self.entries > MAX_WALK_ENTRIES:
                self.truncated = True
                return
            try:
                if e.is_dir(follow_symlinks=False):
                    if not e.name.startswith("."):
                        yield from self.files(Path(e.path), depth + 1)
                elif e.is_file(follow_symlinks=True):
                    yield Path(e.path)
            except OSError:
                continue


def _mirror(path: Path, src: str, dst: str) -> Path | None:
    """``path`` with its last component equal to ``src`` (or starting with it) replaced by ``dst``."""
    parts = list(path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == src or (src == "labels" and parts[i].startswith("labels")):
            parts[i] = dst
            return Path(*parts)
    return None


def _strip_data(ref: str) -> str | None:
    """CVAT's Darknet export prefixes paths with ``data/`` (the folder the dataset is unpacked as)."""
    for p in ("data/", "./data/"):
        if ref.startswith(p):
            return ref[len(p) :]
    return None


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


def _brief(v: Any) -> str:
    """A YAML value for a message, never expanding a nested (possibly alias-bombed) structure."""
    return repr(str(v)[:200]) if _scalar(v) or v is None else f"a {type(v).__name__}"


# -- configuration ----------------------------------------------------------------------


@dataclass
class _Layout:
    root: Path  # the batch folder: every path must stay inside it
    data_root: Path  # data.yaml ``path``
    config: Path | None = None
    names: list[str] | None = None
    kpt_shape: tuple[int, int] | None = None
    kpt_names: dict[int, list[str]] = field(default_factory=dict)
    task: str | None = None
    splits: list[tuple[str, Path, int]] = field(default_factory=list)  # (ref, source file, line)
    meta_files: set[Path] = field(default_factory=set)


class _Reader:
    def __init__(
        self,
        path: Path,
        *,
        task: str | None,
        labels_dir: str | None,
        image_size: tuple[float, float] | None,
        images_dir: Path | None,
        annotator_from: AnnotatorFrom | None = None,
    ) -> None:
        self.path = path
        self.annotator_from = annotator_from
        self.task = task
        self.labels_dir = labels_dir
        self.image_size = image_size
        self.images_dir = images_dir
        self.b = BatchBuilder(path=path, format=FORMAT_NAME)
        self.walk = _Walk()
        self.read_files: list[Path] = []
        self.root = path if path.is_dir() else path.parent
        self.last_outside = False
        self._real_dirs: dict[Path, str] = {}
        self._sizes: dict[Path, tuple[float, float] | str] = {}

    # problems ------------------------------------------------------------------------
    def problem(self, rule: str, message: str, *, file: Path | None = None, line: int | None = None, **kw: Any) -> None:
        self.b.problem(rule=rule, message=message, file=None if file is None else str(file), line=line, **kw)

    # configuration --------------------------------------------------------------------
    def find_config(self, root: Path) -> Path | None:
        for n in (*_CONFIG_YAML, "obj.data"):
            if (root / n).is_file():
                return root / n
        yamls = []
        try:
            cands = sorted(p for p in root.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
        except OSError:
            cands = []
        for p in cands[:50]:
            try:
                head = read_capped(p, MAX_CONFIG_BYTES) or b""
            except OSError:
                continue
            if _NAMES_KEY_RE.search(head):
                yamls.append(p)
        if len(yamls) > 1:
            raise LoadError(
                "several dataset yaml files ("
                + ", ".join(p.name for p in yamls)
                + "): give the one to read as the batch path",
                path=root,
            )
        if yamls:
            return yamls[0]
        return None

    def read_text(self, path: Path, *, cap: int | None = None) -> str | None:
        """A text file (config, names, image list, label file) read up to ``cap`` bytes and
        decoded, or None with a problem; a file read is recorded for the batch's digest."""
        cap = MAX_CONFIG_BYTES if cap is None else cap
        try:
            data = read_capped(path, cap)
        except OSError as e:
            self.problem("unreadable", f"cannot read: {e.strerror or e}", file=path)
            return None
        if data is None:
            self.problem("file_too_large", f"larger than {cap} bytes; not read", file=path)
            return None
        text = self._decode(data, path)
        if text is not None:
            self.read_files.append(path)
        return text

    def _decode(self, data: bytes, path: Path) -> str | None:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            self.problem(
                "encoding", "UTF-16 text: YOLO trainers read UTF-8 and would reject this file; read anyway", file=path
            )
            try:
                return data.decode("utf-16")
            except UnicodeDecodeError:
                self.problem("encoding", "not valid UTF-16; not read", file=path)
                return None
        if b"\x00" in data:
            self.problem("encoding", "binary content (NUL bytes); not read", file=path)
            return None
        if data.startswith(b"\xef\xbb\xbf"):
            self.problem(
                "encoding",
                "UTF-8 byte-order mark: Ultralytics cannot parse the first row and drops the file; read anyway",
                file=path,
                line=1,
            )
            data = data[3:]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            self.problem("encoding", f"not UTF-8 (byte {e.start}); not read", file=path, line=line)
            return None

    def layout(self, root: Path, config: Path | None) -> _Layout:
        lay = _Layout(root=root, data_root=root, config=config)
        if config is not None:
            lay.meta_files.add(config)
            if config.suffix.lower() in (".yaml", ".yml"):
                self.read_yaml(lay, config)
            else:
                self.read_obj_data(lay, config)
        if lay.names is None:
            for n in _NAMES_FILES:
                p = lay.data_root / n
                if p.is_file():
                    lay.names = self.read_names(p)
                    lay.meta_files.add(p)
                    break
        return lay

    def resolve(self, ref: str, bases: Sequence[Path], lay: _Layout, *, src: Path, line: int | None) -> Path | None:
        """A path named by the dataset, tried against each base, confined to the batch folder."""
        self.last_outside = False
        refs = [ref]
        stripped = _strip_data(ref)
        if stripped is not None:
            refs.append(stripped)
        outside = None
        for r in refs:
            for base in bases:
                p = Path(r) if os.path.isabs(r) else base / r
                if not os.path.lexists(p):
                    continue
                if not _inside(p, lay.root):
                    outside = p
                    continue
                return p
        if outside is not None:
            self.problem(
                "outside_dataset", f"{ref[:200]!r} lies outside the dataset folder; not read", file=src, line=line
            )
            self.last_outside = True
        return None

    def read_yaml(self, lay: _Layout, config: Path) -> None:
        import yaml

        text = self.read_text(config)
        if text is None:
            raise LoadError("dataset yaml cannot be read (see its problem)", path=config)
        try:
            # safe_load builds only plain types (no Python object tags); aliases become shared
            # references, not copies, and only a fixed set of keys is looked at below, never
            # walked recursively, so an alias bomb costs no more than the 1 MB text itself.
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = None if mark is None else int(mark.line) + 1
            column = None if mark is None else int(mark.column) + 1
            msg = f"invalid YAML: {getattr(e, 'problem', None) or e}"
            raise LoadError(msg, path=config, line=line, column=column) from None
        except RecursionError:
            raise LoadError("invalid YAML: nested too deeply", path=config) from None
        if not isinstance(doc, dict):
            raise LoadError("dataset yaml is not a mapping", path=config)
        p = doc.get("path")
        if p is not None:
            if (
                isinstance(p, str)
                and not os.path.isabs(p)
                and (lay.root / p).is_dir()
                and _inside(lay.root / p, lay.root)
            ):
                lay.data_root = lay.root / p
            else:
                self.problem(
                    "outside_dataset",
                    f"path: {_brief(p)} is not a folder inside the dataset; reading from the yaml's folder",
                    file=config,
                    severity="warning",
                )
        lay.names = self._names_from_yaml(doc.get("names"), config)
        nc = doc.get("nc")
        if lay.names is not None and isinstance(nc, int) and nc != len(lay.names):
            self.problem("class_count", f"nc: {nc} but names lists {len(lay.names)} classes", file=config)
        ks = doc.get("kpt_shape")
        if ks is not None:
            if (
                isinstance(ks, list)
                and len(ks) == 2
                and all(type(v) is int for v in ks)
                and 1 <= ks[0] <= MAX_KEYPOINTS
                and ks[1] in (2, 3)
            ):
                lay.kpt_shape = (ks[0], ks[1])
            else:
                self.problem("kpt_shape", f"kpt_shape must be [K, 2] or [K, 3]; got {_brief(ks)}", file=config)
        kn = doc.get("kpt_names")
        if isinstance(kn, dict) and lay.kpt_shape is not None:
            for k, v in list(kn.items())[:MAX_CLASSES]:
                if type(k) is int and isinstance(v, list) and len(v) == lay.kpt_shape[0] and all(_scalar(x) for x in v):
                    lay.kpt_names[k] = [str(x) for x in v]
        t = doc.get("task")
        if isinstance(t, str) and t in TASKS:
            lay.task = t
        for key in _SPLIT_KEYS:
            v = doc.get(key)
            if v is None:
                continue
            vals = v if isinstance(v, list) else [v]
            for x in vals[:1000]:
                if isinstance(x, str):
                    lay.splits.append((x, config, 0))
                else:
                    self.problem("split", f"{key}: entries must be paths; got {type(x).__name__}", file=config)

    def _names_from_yaml(self, names: Any, config: Path) -> list[str] | None:
        if names is None:
            return None
        if isinstance(names, list):
            if len(names) > MAX_CLASSES:
                self.problem("names", f"more than {MAX_CLASSES} class names; not read", file=config)
                return None
            out = []
            for i, n in enumerate(names):
                if not _scalar(n):
                    self.problem("names", f"class {i} name is a {type(n).__name__}, not a string", file=config)
                out.append(str(n) if _scalar(n) else str(i))
            return out
        if isinstance(names, dict):
            idx: dict[int, str] = {}
            for k, v in list(names.items())[: MAX_CLASSES + 1]:
                try:
                    i = int(k)
                except (TypeError, ValueError):
                    self.problem("names", f"names key {_brief(k)} is not a class index", file=config)
                    continue
                if not 0 <= i < MAX_CLASSES:
                    self.problem("names", f"names key {i} is out of range", file=config)
                    continue
                if not _scalar(v):
                    self.problem("names", f"class {i} name is a {type(v).__name__}, not a string", file=config)
                idx[i] = str(v) if _scalar(v) else str(i)
            if not idx:
                return []
            out = []
            for i in range(max(idx) + 1):
                if i not in idx:
                    self.problem("names", f"names has no class {i}", file=config)
                out.append(idx.get(i, str(i)))
            return out
        self.problem("names", f"names must be a list or a mapping; got {type(names).__name__}", file=config)
        return None

    def read_names(self, path: Path) -> list[str] | None:
        text = self.read_text(path)
        if text is None:
            return None
        lines = [ln.strip() for ln in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if len(lines) > MAX_CLASSES:
            self.problem("names", f"more than {MAX_CLASSES} class names; not read", file=path)
            return None
        out = []
        for i, n in enumerate(lines):
            if not n:
                self.problem("names", f"class {i} has an empty name", file=path, line=i + 1)
            out.append(n or str(i))
        return out

    def read_obj_data(self, lay: _Layout, config: Path) -> None:
        text = self.read_text(config)
        if text is None:
            raise LoadError("obj.data cannot be read (see its problem)", path=config)
        kv: dict[str, tuple[str, int]] = {}
        for i, ln in enumerate(text.split("\n"), 1):
            if "=" in ln and not ln.lstrip().startswith("#"):
                k, _, v = ln.partition("=")
                kv[k.strip().lower()] = (v.strip(), i)
        if "names" in kv:
            ref, line = kv["names"]
            p = self.resolve(ref, [lay.root], lay, src=config, line=line)
            if p is None or not p.is_file():
                self.problem("missing_file", f"names = {ref[:200]!r} not found", file=config, line=line)
            else:
                lay.names = self.read_names(p)
                lay.meta_files.add(p)
        if "classes" in kv and lay.names is not None:
            v, line = kv["classes"]
            if v.isdigit() and int(v) != len(lay.names):
                self.problem(
                    "class_count", f"classes = {v} but the names file lists {len(lay.names)}", file=config, line=line
                )
        for key in _DARKNET_SPLIT_KEYS:
            if key in kv:
                ref, line = kv[key]
                lay.splits.append((ref, config, line))

    def allowed(self, path: Path) -> bool:
        """Whether the reader may open ``path``: inside the dataset folder (or ``images_dir``), symlinks resolved.

        Folder resolutions are cached, so this costs one ``lstat`` per file rather than one per path component.
        """
        try:
            parent = self._real_dirs.get(path.parent)
            if parent is None:
                parent = self._real_dirs[path.parent] = os.path.realpath(path.parent)
            real = os.path.realpath(path) if os.path.islink(path) else os.path.join(parent, path.name)
            bases = [self._real(self.root)]
            if self.images_dir is not None:
                bases.append(self._real(self.images_dir))
        except (OSError, RuntimeError, ValueError):
            return False
        return any(real == b or real.startswith(b.rstrip(os.sep) + os.sep) for b in bases)

    def _real(self, d: Path) -> str:
        got = self._real_dirs.get(d)
        if got is None:
            got = self._real_dirs[d] = os.path.realpath(d)
        return got

    # images ---------------------------------------------------------------------------
    def size_of(self, path: Path | None) -> tuple[float, float] | str:
        """(width, height) as displayed, or the reason there is none."""
        if path is None:
            return "image not found"
        if not self.allowed(path):
            return "image lies outside the dataset folder (a symlink?); not read"
        got = self._sizes.get(path)
        if got is None:
            try:
                s = read_image_size(path)
                got = (float(s.width), float(s.height))
            except ImageSizeError as e:
                got = str(e)
            except OSError as e:
                got = f"cannot read image: {e.strerror or e}"
            self._sizes[path] = got
        return got


@dataclass
class _Item:
    name: str
    image: Path | None  # the image file, when present
    label: Path | None  # its label file, when present
    source: tuple[Path, int] | None = None  # where the image was listed
    annotator: str | None = None  # from the layout (``annotator_from``)


def _label_for(image: Path, labels_dir: str | None) -> list[Path]:
    """Where ``image``'s label may be: the Ultralytics mirror first, then beside the image."""
    out = []
    m = _mirror(image, "images", labels_dir or "labels")
    if m is not None:
        out.append(m.with_suffix(".txt"))
    out.append(image.with_suffix(".txt"))
    return out


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def load_yolo(
    path: Path,
    *,
    task: str | None = None,
    labels_dir: str | None = None,
    image_size: tuple[float, float] | None = None,
    images_dir: Path | str | None = None,
    annotator_from: AnnotatorFrom | str | None = None,
) -> Batch:
    """Read a YOLO dataset folder (or its ``data.yaml`` / ``obj.data``, or one label file).

    Options: ``task`` (one of :data:`TASKS`) settles what a 9-field row is (``obb`` or
    a 4-point polygon) and requires pose rows; ``labels_dir`` names the label folder
    that mirrors ``images`` when it is not ``labels`` (DagsHub's ``labels_bbox``);
    ``image_size=(w, h)`` is the size of every image whose file is absent (Label
    Studio's YOLO import takes the same parameter); ``images_dir`` is a folder where
    images missing from the layout are looked up by file name; ``annotator_from`` (see
    :class:`AnnotatorFrom`) takes each label file's annotator from its path in the
    folder, and an image labelled in several annotators' folders is then one image
    (named by its file name) labelled by each.
    """
    path = Path(path)
    if task is not None and task not in TASKS:
        raise LoadError(f"unknown YOLO task {task!r} (expected one of {', '.join(TASKS)})", path=path)
    if not path.exists():
        raise LoadError("no such file or folder", path=path)
    r = _Reader(
        path,
        task=task,
        labels_dir=labels_dir,
        image_size=image_size,
        images_dir=None if images_dir is None else Path(images_dir),
        annotator_from=AnnotatorFrom.of_option(annotator_from),
    )
    only: Path | None = None
    if path.is_dir():
        root = path
        config = r.find_config(root)
    elif path.suffix.lower() in (".yaml", ".yml", ".data"):
        root, config = path.parent, path
    elif path.suffix.lower() == ".txt":
        only = path
        root = _root_of_label(path)
        config = r.find_config(root)
    else:
        raise LoadError("not a YOLO dataset: expected a folder, a data.yaml, an obj.data or a label .txt", path=path)
    r.root = root
    lay = r.layout(root, config)
    items, classification = _collect(r, lay, only)
    if classification is not None:
        return _classification_batch(r, lay, classification)
    if not items and only is None:
        raise LoadError("no YOLO label files or images found", path=path)
    _convert(r, lay, items)
    files = [p for p in r.read_files if p.is_relative_to(root)]
    return r.b.build(sha256=sha256_of_files(sorted(set(files)), root=root), pointer_base=None)


def _root_of_label(label: Path) -> Path:
    """The dataset folder of one label file: the nearest ancestor holding a config or class list."""
    p = label.parent
    for _ in range(4):
        if any((p / n).is_file() for n in (*_CONFIG_YAML, "obj.data", *_NAMES_FILES)):
            return p
        if p.parent == p:
            break
        p = p.parent
    m = _mirror(label, "labels", "images")
    return label.parent.parent if m is not None and label.parent.name.startswith("labels") else label.parent


# -- pairing images and labels --------------------------------------------------------------


def _collect(r: _Reader, lay: _Layout, only: Path | None) -> tuple[list[_Item], dict[str, list[Path]] | None]:
    """The (image, label) pairs of the batch; or the class folders of a classification layout."""
    images: list[tuple[Path, tuple[Path, int] | None]] = []  # nominal image path, where listed
    label_dirs: list[Path] = []  # folders whose .txt files are labels
    scan_txt: list[Path] = []
    if only is not None:
        candidates = [only]
    elif lay.splits:
        for ref, src, line in lay.splits:
            _split_images(r, lay, ref, src, line, images, label_dirs)
        candidates = []
        for d in dict.fromkeys(label_dirs):
            candidates.extend(p for p in r.walk.files(d) if p.suffix.lower() == ".txt")
    else:
        for p in r.walk.files(lay.data_root):
            if _is_image(p):
                images.append((p, None))
            elif p.suffix.lower() == ".txt" and p not in lay.meta_files:
                if p.parent == lay.data_root and p.name.lower() in _LIST_NAMES:
                    continue
                if r.labels_dir is not None and r.labels_dir not in p.relative_to(lay.data_root).parts[:-1]:
                    continue
                scan_txt.append(p)
        candidates = scan_txt
        if not scan_txt and images:
            cls = _classification_dirs(lay.data_root, [p for p, _ in images])
            if cls is not None:
                return [], cls
    if r.walk.truncated:
        r.problem(
            "too_many_files",
            f"the dataset folder has more than {MAX_WALK_ENTRIES} entries or is nested deeper than {MAX_DEPTH}; "
            "the rest is not read",
            severity="error",
        )
    by_stem: dict[tuple[Path, str], Path] = {}
    for nominal, _ in images:
        if nominal.exists():
            by_stem.setdefault((nominal.parent, nominal.stem), nominal)
    items: list[_Item] = []
    claimed: dict[Path, str] = {}
    if only is None:
        for img, listed in images:
            label = next((c for c in _label_for(img, r.labels_dir) if c.is_file()), None)
            real = img if img.is_file() else _lookup(r, img.stem, img.name)
            if real is None and label is None:
                r.problem(
                    "missing_image",
                    f"image {img.name!r} is listed but absent",
                    image=img.name,
                    file=None if listed is None else listed[0],
                    line=None if listed is None else listed[1],
                )
                continue
            if label is not None:
                if label in claimed:
                    continue
                claimed[label] = img.name
            items.append(_Item(name=img.name, image=real, label=label, source=listed))
    for txt in candidates:
        if txt in claimed:
            continue
        found = _image_for_label(r, txt, by_stem)
        name = found.name if found is not None else txt.stem
        claimed[txt] = name
        items.append(_Item(name=name, image=found, label=txt))
    return _dedupe(r, lay, items), None


def _split_images(
    r: _Reader,
    lay: _Layout,
    ref: str,
    src: Path,
    line: int,
    images: list[tuple[Path, tuple[Path, int] | None]],
    label_dirs: list[Path],
) -> None:
    """The images one ``train``/``val``/``test`` entry names, and the label folders beside them."""
    p = r.resolve(ref, [lay.data_root, lay.root], lay, src=src, line=line or None)
    if p is None:
        if r.last_outside:
            return
        r.problem("missing_split", f"{ref[:200]!r} not found", file=src, line=line or None, severity="warning")
        return
    if p.is_dir():
        found = [f for f in r.walk.files(p) if _is_image(f)]
        images.extend((f, None) for f in found)
        m = _mirror(p / "x", "images", r.labels_dir or "labels")
        label_dirs.append(m.parent if m is not None else p)
        return
    if _is_image(p):
        images.append((p, None))
        label_dirs.extend(c.parent for c in _label_for(p, r.labels_dir)[:1])
        return
    text = r.read_text(p)
    lay.meta_files.add(p)
    if text is None:
        return
    for i, ln in enumerate(text.split("\n"), 1):
        ref2 = ln.strip()
        if not ref2:
            continue
        bases = [p.parent] if ref2.startswith("./") else [lay.data_root, lay.root, p.parent]
        img = r.resolve(ref2, bases, lay, src=p, line=i)
        if img is None:
            # absent: keep the nominal place (its label may be there; the image may be in images_dir)
            stripped = _strip_data(ref2) or ref2
            img = lay.data_root / stripped if not os.path.isabs(stripped) else None
            if img is None or not _inside(img.parent, lay.root):
                r.problem("outside_dataset", f"{ref2[:200]!r} lies outside the dataset folder", file=p, line=i)
                continue
        images.append((img, (p, i)))
        label_dirs.append(_label_for(img, r.labels_dir)[0].parent)
        label_dirs.append(img.parent)


def _lookup(r: _Reader, stem: str, name: str | None) -> Path | None:
    """An image missing from the layout, looked up in ``images_dir`` by name, then by stem."""
    d = r.images_dir
    if d is None:
        return None
    if name is not None and (d / name).is_file():
        return d / name
    for ext in sorted(IMAGE_SUFFIXES):
        for e in (ext, ext.upper()):
            if (d / (stem + e)).is_file():
                return d / (stem + e)
    return None


def _image_for_label(r: _Reader, txt: Path, by_stem: dict[tuple[Path, str], Path]) -> Path | None:
    dirs = [txt.parent]
    m = _mirror(txt, "labels", "images")
    if m is not None:
        dirs.insert(0, m.parent)
    for d in dirs:
        hit = by_stem.get((d, txt.stem))
        if hit is not None:
            return hit
    for d in dirs:
        for ext in sorted(IMAGE_SUFFIXES):
            for e in (ext, ext.upper()):
                c = d / (txt.stem + e)
                if c.is_file():
                    return c
    return _lookup(r, txt.stem, None)


def _dedupe(r: _Reader, lay: _Layout, items: list[_Item]) -> list[_Item]:
    """One label file per image; image names are file names, or relative paths where those clash."""
    seen: dict[Path, _Item] = {}
    out: list[_Item] = []
    if r.annotator_from is not None:
        for it in items:
            p = it.label or it.image
            if p is not None and p.is_relative_to(lay.root):
                it.annotator = r.annotator_from.of(p.relative_to(lay.root))
    for it in items:
        if it.image is not None and it.image in seen:
            first = seen[it.image]
            if it.label is not None:
                r.problem(
                    "duplicate_label_file",
                    f"image {it.name!r} already has labels in {first.label}; this file is not read "
                    "(pass labels_dir= to choose a label folder)",
                    file=it.label,
                    image=it.name,
                )
            continue
        if it.image is not None:
            seen[it.image] = it
        out.append(it)
    # an image name may repeat across annotators (one image, labelled by each), not within one
    counts: dict[tuple[str, str | None], int] = {}
    for it in out:
        counts[(it.name, it.annotator)] = counts.get((it.name, it.annotator), 0) + 1
    for it in out:
        if counts[(it.name, it.annotator)] > 1:
            p = it.image or it.label
            assert p is not None
            try:
                it.name = p.relative_to(lay.data_root).as_posix()
            except ValueError:
                it.name = p.as_posix()
    return out


# -- classification ---------------------------------------------------------------------------


def _classification_dirs(root: Path, images: list[Path]) -> dict[str, list[Path]] | None:
    """``<split>/<class>/<image>`` (or ``<class>/<image>``) with every image two or one level down."""
    classes: dict[str, list[Path]] = {}
    for p in images:
        rel = p.relative_to(root).parts
        if len(rel) == 3:
            cls = rel[1]
        elif len(rel) == 2:
            cls = rel[0]
        else:
            return None
        classes.setdefault(cls, []).append(p)
    return classes or None


def _classification_batch(r: _Reader, lay: _Layout, classes: dict[str, list[Path]]) -> Batch:
    image_class: dict[str, str] = {}
    for cls in sorted(classes):
        r.b.add_category(cls)
    for cls in sorted(classes):
        for p in classes[cls]:
            name = p.relative_to(lay.data_root).as_posix()
            size = r.size_of(p)
            if isinstance(size, str):
                r.problem("image_unreadable", size, file=p, image=name)
                size_wh: tuple[float | None, float | None] = (None, None)
            else:
                size_wh = size
            r.b.add_image(name, width=size_wh[0], height=size_wh[1])
            image_class[name] = cls
    # the labels are the folder names: the digest covers every (image path, class) pair
    digest = hashlib.sha256("".join(f"{n}\0{c}\n" for n, c in sorted(image_class.items())).encode()).hexdigest()
    batch = r.b.build(sha256=digest, pointer_base=None)
    from dataclasses import replace

    return replace(
        batch,
        meta={"image_class": image_class, "layout": "classification"},
        skip_reason="YOLO classification layout (one folder per class): image-level classes, no objects to gate",
    )


# -- rows -------------------------------------------------------------------------------------


@dataclass
class _Row:
    line: int
    cls: int
    v: list[float]


def _parse(r: _Reader, label: Path) -> list[_Row] | None:
    if not r.allowed(label):
        r.problem("outside_dataset", "label file lies outside the dataset folder (a symlink?); not read", file=label)
        return None
    text = r.read_text(label, cap=MAX_LABEL_BYTES)
    if text is None:
        return None
    rows: list[_Row] = []
    for i, ln in enumerate(text.split("\n"), 1):
        if len(ln) > MAX_LINE_CHARS:
            r.problem(
                "line_too_long", f"row of {len(ln)} characters (limit {MAX_LINE_CHARS}); not read", file=label, line=i
            )
            continue
        fields = ln.split()
        if not fields:
            continue
        c = _class_index(fields[0])
        if c is None:
            r.problem("not_a_number", f"class index {fields[0][:40]!r} is not an integer", file=label, line=i)
            continue
        try:
            vals = [float(t) for t in fields[1:]]
        except ValueError:
            bad = next(t for t in fields[1:] if not _is_float(t))
            r.problem("not_a_number", f"{bad[:40]!r} is not a number", file=label, line=i)
            continue
        if not all(math.isfinite(x) for x in vals):
            r.problem("non_finite", "nan or infinite coordinate", file=label, line=i)
            continue
        rows.append(_Row(line=i, cls=c, v=vals))
    return rows


def _class_index(tok: str) -> int | None:
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        f = float(tok)
    except ValueError:
        return None
    return int(f) if math.isfinite(f) and f.is_integer() else None


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _kind(n: int, task: str | None, kpt: tuple[int, int] | None, seg_batch: bool) -> str | None:
    """What a row with ``n`` numbers after the class is: box, pose, obb, polygon, or None."""
    if task == "pose":
        return "pose" if kpt is not None and n == 4 + kpt[0] * kpt[1] else None
    if kpt is not None and n == 4 + kpt[0] * kpt[1]:
        return "pose"
    if task == "obb":
        return "obb" if n == 8 else None
    if n == 4:
        return "box"
    if n == 8 and task is None and not seg_batch:
        return "obb"
    if n >= 6 and n % 2 == 0:
        return "polygon"
    return None


def _expected(task: str | None, kpt: tuple[int, int] | None) -> str:
    if task == "pose" or kpt is not None:
        return f"class + 4 box values + {kpt[0]}×{kpt[1]} keypoint values" if kpt else "a kpt_shape in data.yaml"
    if task == "obb":
        return "class + 8 corner values"
    return "class + 4 (box), class + 8 (oriented box) or class + an even number >= 6 (polygon)"


def _convert(r: _Reader, lay: _Layout, items: list[_Item]) -> None:
    b = r.b
    task = r.task or lay.task
    kpt = lay.kpt_shape
    names = lay.names
    for i, n in enumerate(names or []):
        kp: tuple[str, ...] = ()
        if kpt is not None:
            kp = tuple(lay.kpt_names.get(i) or [f"{n}_point_{j}" for j in range(kpt[0])])
        if b.has_category(n):
            r.problem("duplicate_class", f"class {i} repeats the name {n!r}", file=lay.config, category=n)
        b.add_category(n, keypoints=kp)
    parsed: list[tuple[_Item, list[_Row] | None]] = []
    for it in items:
        parsed.append((it, _parse(r, it.label) if it.label is not None else []))
    seg_batch = any(
        len(row.v) >= 6
        and len(row.v) % 2 == 0
        and len(row.v) != 8
        and (kpt is None or len(row.v) != 4 + kpt[0] * kpt[1])
        for _, rows in parsed
        for row in rows or ()
    )
    for it, rows in parsed:
        if rows is None and it.image is None:
            continue  # the label file was not read (its problem says why) and has no image: nothing to add
        size = r.size_of(it.image)
        if isinstance(size, str):
            if r.image_size is not None:
                size = (float(r.image_size[0]), float(r.image_size[1]))
                if it.image is None:
                    r.problem(
                        "missing_image",
                        f"image of this label file not found; image_size {size[0]:g}×{size[1]:g} assumed",
                        file=it.label,
                        image=it.name,
                        severity="warning",
                    )
                else:
                    r.problem(
                        "image_unreadable",
                        f"{size}; image_size assumed",
                        file=it.image,
                        image=it.name,
                        severity="warning",
                    )
            else:
                nobj = len(rows or ())
                rule = "missing_image" if it.image is None else "image_unreadable"
                msg = "image of this label file not found" if it.image is None else f"image {it.image}: {size}"
                src = it.label if it.label is not None else (it.source[0] if it.source else None)
                r.problem(rule, f"{msg}; {nobj} object(s) not converted to pixels", file=src, image=it.name)
                continue
        w, h = size
        b.add_image(it.name, width=w, height=h)
        if not rows:
            continue
        assert it.label is not None
        for row in rows:
            _add_row(r, lay, it, row, w, h, task, kpt, names, seg_batch)


def _add_row(
    r: _Reader,
    lay: _Layout,
    it: _Item,
    row: _Row,
    w: float,
    h: float,
    task: str | None,
    kpt: tuple[int, int] | None,
    names: list[str] | None,
    seg_batch: bool,
) -> None:
    label = it.label
    assert label is not None
    v = row.v
    kind = _kind(len(v), task, kpt, seg_batch)
    if kind is None:
        r.problem(
            "field_count",
            f"{len(v) + 1} fields; expected {_expected(task, kpt)}",
            file=label,
            line=row.line,
            image=it.name,
        )
        return
    category: str | None
    if names is None:
        category = str(row.cls) if row.cls >= 0 else None
    elif 0 <= row.cls < len(names):
        category = names[row.cls]
    else:
        category = None
    if category is None:
        rng = f"0..{len(names) - 1}" if names else "0 or more"
        r.problem("class_out_of_range", f"class index {row.cls} not in {rng}", file=label, line=row.line, image=it.name)
    common: dict[str, Any] = {
        "image": it.name,
        "category": category,
        "file": label,
        "line": row.line,
        "annotator": it.annotator,
    }
    if kind in ("box", "pose"):
        cx, cy, bw, bh = v[0] * w, v[1] * h, v[2] * w, v[3] * h
        bbox = (cx - bw / 2, cy - bh / 2, bw, bh)
        if kind == "box":
            r.b.add_annotation(bbox=bbox, **common)
            return
        assert kpt is not None
        k, d = kpt
        trip: list[float] = []
        for j in range(k):
            x, y = v[4 + j * d] * w, v[4 + j * d + 1] * h
            vis = v[4 + j * d + 2] if d == 3 else 2.0
            if vis not in (0.0, 1.0, 2.0):
                r.problem(
                    "keypoint_visibility",
                    f"keypoint {j} visibility {vis:g} is not 0, 1 or 2",
                    file=label,
                    line=row.line,
                    image=it.name,
                )
            trip.extend((x, y, vis))
        r.b.add_annotation(bbox=bbox, keypoints=trip, **common)
        return
    pts = [(v[j] * w, v[j + 1] * h) for j in range(0, len(v), 2)]
    if kind == "polygon":
        r.b.add_annotation(polygons=[[c for p in pts for c in p]], **common)
        return
    bbox, rot, rect = _obb(pts)
    if not rect:
        r.problem(
            "obb_not_rectangle",
            "the four corners do not form a rectangle; read as the rectangle of its first two sides",
            file=label,
            line=row.line,
            image=it.name,
            severity="warning",
        )
    r.b.add_annotation(bbox=bbox, rotation=rot, **common)


def _obb(pts: list[tuple[float, float]]) -> tuple[tuple[float, float, float, float], float, bool]:
    """Four corners (rotated top-left first, clockwise on screen) -> unrotated box, rotation, is-rectangle.

    Width is the first side, height the second; the rotation is the first side's angle
    from the x axis, clockwise because y points down; the centre is the corners' mean.
    """
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts
    bw = math.hypot(x1 - x0, y1 - y0)
    bh = math.hypot(x2 - x1, y2 - y1)
    rot = math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0
    if rot >= 360.0 - 1e-9:
        rot = 0.0
    cx, cy = (x0 + x1 + x2 + x3) / 4, (y0 + y1 + y2 + y3) / 4
    tol = 1e-3 * max(bw, bh, 1e-9)
    rect = (
        abs(math.hypot(x3 - x2, y3 - y2) - bw) <= tol
        and abs(math.hypot(x0 - x3, y0 - y3) - bh) <= tol
        and abs(math.hypot(x2 - x0, y2 - y0) - math.hypot(x3 - x1, y3 - y1)) <= tol
    )
    return (cx - bw / 2, cy - bh / 2, bw, bh), rot, rect


# -- detection ---------------------------------------------------------------------------------


def sniff_yolo(path: Path, head: bytes) -> bool:
    """A YOLO dataset folder, data.yaml / obj.data, or a label file whose rows are YOLO rows."""
    try:
        if path.is_dir():
            return _folder_is_yolo(path)
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return bool(_NAMES_KEY_RE.search(head) and _YAML_DATA_KEY_RE.search(head))
    if suffix == ".data":
        return re.search(rb"^\s*names\s*=", head, re.MULTILINE) is not None
    if suffix != ".txt" or path.name.lower() in _NAMES_FILES:
        return False
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    lines = [ln for ln in text.split("\n")[: -1 if len(head) >= (1 << 20) else None] if ln.strip()][:50]
    return bool(lines) and all(_ROW_RE.match(ln) for ln in lines)


def _folder_is_yolo(root: Path) -> bool:
    """A dataset folder: a config that reads as one at its top, a ``labels/`` folder holding
    ``.txt`` files beside ``images/`` or a class list, a Darknet ``obj_*`` layout, or a
    classification layout. A folder that merely holds a ``data.yaml`` of another kind,
    or a dataset deeper down, is not one."""
    for n in (*_CONFIG_YAML, "obj.data"):
        head = read_head(root / n, MAX_CONFIG_BYTES)
        if head is not None and sniff_yolo(root / n, head):
            return True
    if (
        (root / "labels").is_dir()
        and ((root / "images").is_dir() or any((root / n).is_file() for n in _NAMES_FILES))
        and sample_files(root / "labels", (".txt",), max_files=1)
    ):
        return True
    try:
        children = sorted(root.iterdir())[:200]
    except OSError:
        return False
    for p in children:
        if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
            try:
                head = read_capped(p, MAX_CONFIG_BYTES) or b""
            except OSError:
                continue
            if _NAMES_KEY_RE.search(head) and _YAML_DATA_KEY_RE.search(head):
                return True
    if (root / "obj.names").is_file() and any(p.is_dir() and p.name.startswith("obj_") for p in children):
        return True
    # classification: train/val/test folders holding class folders of images, nothing else
    dirs = [p for p in children if p.is_dir() and not p.name.startswith(".")]
    splits = [p for p in dirs if p.name in ("train", "val", "valid", "test")]
    if not splits or len(splits) != len(dirs):
        return False
    for s in splits:
        classes = [c for c in sorted(s.iterdir())[:50]]
        if not classes or not all(c.is_dir() for c in classes):
            return False
        if not any(_is_image(f) for c in classes for f in sorted(c.iterdir())[:20]):
            return False
    return True


FORMAT = Format(name=FORMAT_NAME, suffixes=(".txt",), sniff=sniff_yolo, load=load_yolo, folder=True)
