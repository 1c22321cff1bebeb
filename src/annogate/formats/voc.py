"""Pascal VOC XML: a folder of ``<annotation>`` files (``Annotations/`` or flat), one per image.

Why a folder batch: VOC keeps one XML file per image, so the batch a team hands
over is the directory; every finding names the file inside it and the line of the
element (``<object>``, or the field that is wrong, e.g. ``<xmax>``).

Conventions (those of datumaro, checked against its fixtures):

* boxes: ``x = xmin``, ``y = ymin``, ``w = xmax - xmin``, ``h = ymax - ymin`` (no
  ``+1``: VOC corners are read as continuous pixel coordinates);
* per-object flags go in ``attributes``: ``difficult``, ``truncated``,
  ``occluded`` (booleans, only when the tag is present), ``pose`` (string), every
  ``<actions>`` child as a boolean under its own name (as datumaro does), free
  ``<attributes><attribute><name/><value/>`` pairs, and ``parts``: a tuple of
  ``{"name", "bbox", "line"}`` dicts. Parts (head, hand, foot) are *not* extra
  objects, so object counts agree with the COCO/YOLO/CVAT versions of a dataset
  that never carry parts; ``difficult`` is not ``iscrowd`` (COCO's crowd changes the
  IoU, VOC's difficult only excludes the object from scoring);
* image size from ``<size>``; a missing, zero or non-numeric size is a problem
  (rule ``image_size``): without it no box can be checked against the image.

Parsing goes through :mod:`annogate.formats._xml` (defusedxml, no DTD or entities,
size/depth caps): a hostile or broken file is a problem naming its rule
(``xml_unsafe``, ``limit``, ``syntax``, ``encoding``); the batch fails to load
(:class:`~annogate.formats.LoadError`) only when no file in it can be read.
MIT LabelMe XML (also an ``<annotation>`` root, with ``<polygon><pt>`` lists and
``<imagesize>``) is recognised and refused with rule ``unsupported_format``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from annogate.formats import Format, LoadError, read_head, sample_files
from annogate.formats._builder import AnnotatorFrom, BatchBuilder, image_side_problem, label_files, read_label_files
from annogate.formats._xml import DEFAULT_LIMITS, XMLLimits, XMLProblem, child_text, line_of, parse_xml
from annogate.model import Batch

__all__ = ["FORMAT", "load_voc", "looks_like_voc"]

FORMAT_NAME = "voc"
_MAX_SNIFF_FILES = 8
# The first element after the prolog, comments and processing instructions is <annotation>.
# A DOCTYPE is allowed here so that a hostile VOC file is claimed and refused with its rule.
_ROOT_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--(?:[^-]|-(?!->))*-->\s*|<!DOCTYPE[^\[>]*(?:\[[^\]]*\])?\s*>\s*)*"
    rb"<annotation[\s>]"
)
_BOOL = {"0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}
_FLAGS = ("difficult", "truncated", "occluded")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _xml_files(folder: Path) -> list[Path]:
    """The XML files of a VOC folder: ``Annotations/`` when present, else the folder itself."""
    ann = folder / "Annotations"
    root = ann if ann.is_dir() else folder
    return label_files(root, ".xml")


def looks_like_voc(path: Path, head: bytes) -> bool:
    """A file whose root element is ``<annotation>``, or a folder holding such files.

    A folder is claimed when such a file lies in its ``Annotations/`` (or in the folder
    itself when there is none), directly or one level down (one sub-folder per
    annotator): a folder that merely *contains* a VOC dataset deeper down (a
    repository, ``examples/``) is not one, so the dataset is found as itself. Only a
    bounded sample is read (this runs for every folder a collection visits).
    """
    if path.is_dir():
        ann = path / "Annotations"
        root = ann if ann.is_dir() else path
        for p in sample_files(root, (".xml",), max_files=_MAX_SNIFF_FILES, max_depth=1):
            sample = read_head(p, 4096)
            if sample is not None and _ROOT_RE.match(sample):
                return True
        return False
    return bool(_ROOT_RE.match(head[:65536]))


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and abs(v) != float("inf") else None


class _Reader:
    def __init__(self, *, path: Path, root: Path, limits: XMLLimits, annotator_from: AnnotatorFrom | None) -> None:
        self.b = BatchBuilder(path=path, format=FORMAT_NAME)
        self.root = root
        self.limits = limits
        self.annotator_from = annotator_from
        self.who: str | None = None  # the annotator of the file being read
        self.described: set[tuple[str, str | None]] = set()  # (image, annotator) pairs seen

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def read_file(self, p: Path) -> str | None:
        """Add one XML file; returns why it could not be read at all (None when it was)."""
        rel = self.rel(p)
        b = self.b
        try:
            doc = parse_xml(p, limits=self.limits)
        except XMLProblem as e:
            b.problem(rule=e.rule, message=e.msg, file=rel, line=e.line)
            return f"{rel}:{e.line or 0}: {e.msg} [{e.rule}]"
        except OSError as e:
            b.problem(rule="io", message=f"cannot read: {e.strerror or e}", file=rel)
            return f"{rel}: cannot read [io]"
        if doc.tag != "annotation":
            msg = f"root element <{doc.tag}> is not a Pascal VOC <annotation>"
            b.problem(rule="schema", message=msg, file=rel, line=line_of(doc))
            return f"{rel}: {msg} [schema]"
        if doc.find("imagesize") is not None or doc.find("object/polygon/pt") is not None:
            msg = (
                "MIT LabelMe XML (<imagesize>, <polygon><pt>) is not read by annogate: "
                "export LabelMe JSON, Pascal VOC or COCO instead"
            )
            b.problem(rule="unsupported_format", message=msg, file=rel, line=line_of(doc))
            return f"{rel}: {msg} [unsupported_format]"
        b.file_index(rel)
        if self.annotator_from is not None:  # the path below Annotations/ when there is one
            ann = self.root / "Annotations"
            self.who = self.annotator_from.of(p.relative_to(ann) if p.is_relative_to(ann) else rel)
        image = self.image(doc, p, rel)
        for obj in doc.iterfind("object"):
            self.object(obj, image, rel)
        return None

    def image(self, doc: Any, p: Path, rel: str) -> str:
        b = self.b
        name, nline = child_text(doc, "filename")
        if not name:
            path_text, _ = child_text(doc, "path")
            fallback = path_text.replace("\\", "/").rsplit("/", 1)[-1] if path_text else ""
            name = fallback or p.stem + ".jpg"
            b.problem(
                rule="schema",
                message=f"no <filename>; the image is taken to be {name!r}",
                file=rel,
                line=nline,
                image=name,
            )
        if (name, self.who) in self.described:  # one image in two annotators' folders is no duplicate
            b.problem(
                rule="duplicate_image",
                message=f"image {name!r} is also described by another file of the batch",
                file=rel,
                line=nline,
                image=name,
            )
        size = doc.find("size")
        w = h = None
        if size is None:
            b.problem(
                rule="image_size",
                message="no <size>: image width and height unknown",
                file=rel,
                line=line_of(doc),
                image=name,
            )
        else:
            wt, wl = child_text(size, "width")
            ht, hl = child_text(size, "height")
            w, h = _number(wt), _number(ht)
            for tag, text, v, line in (("width", wt, w, wl), ("height", ht, h, hl)):
                # finite, positive and at most MAX_IMAGE_SIDE: 2**70 would make every box fit
                what = image_side_problem(v) if text is None or v is not None else f"{text!r:.40} is not a number"
                if what is not None:
                    b.problem(rule="image_size", message=f"<size><{tag}> {what}", file=rel, line=line, image=name)
            w = w if image_side_problem(w) is None else None
            h = h if image_side_problem(h) is None else None
        self.described.add((name, self.who))
        b.add_image(name, width=w, height=h, line=line_of(doc))
        return name

    def box(self, el: Any, rel: str, image: str, label: str | None) -> list[float] | None:
        """``[x, y, w, h]`` from ``el``'s ``<bndbox>``; a problem (and None) when it is missing or not numeric."""
        bnd = el.find("bndbox")
        if bnd is None:
            self.b.problem(
                rule="schema", message="no <bndbox>", file=rel, line=line_of(el), image=image, category=label
            )
            return None
        corners: list[float] = []
        for tag in _CORNERS:
            text, line = child_text(bnd, tag)
            v = _number(text)
            if v is None:
                what = "missing" if text is None else f"{text!r} is not a number"
                self.b.problem(
                    rule="schema",
                    message=f"<bndbox><{tag}> {what}",
                    file=rel,
                    line=line,
                    image=image,
                    category=label,
                )
                return None
            corners.append(v)
        x0, y0, x1, y1 = corners
        return [x0, y0, x1 - x0, y1 - y0]

    def object(self, obj: Any, image: str, rel: str) -> None:
        b = self.b
        line = line_of(obj)
        label, lline = child_text(obj, "name")
        if not label:
            b.problem(rule="schema", message="object without a <name>", file=rel, line=lline, image=image)
            label = None
        attrs: dict[str, Any] = {}
        for flag in _FLAGS:
            text, fline = child_text(obj, flag)
            if text is None:
                continue
            v = _BOOL.get(text.lower())
            if v is None:
                b.problem(
                    rule="schema",
                    message=f"<{flag}> {text!r} is not 0 or 1",
                    file=rel,
                    line=fline,
                    image=image,
                    category=label,
                )
                attrs[flag] = text
            else:
                attrs[flag] = v
        pose, _ = child_text(obj, "pose")
        if pose is not None:
            attrs["pose"] = pose
        actions = obj.find("actions")
        if actions is not None:
            for act in actions:
                text = (act.text or "").strip()
                done = _BOOL.get(text.lower())
                attrs[str(act.tag)] = text if done is None else done
        free = obj.find("attributes")
        if free is not None:
            for a in free.iterfind("attribute"):
                key, _ = child_text(a, "name")
                value, _ = child_text(a, "value")
                if key:
                    attrs[key] = value
        parts = []
        for part in obj.iterfind("part"):
            pname, _ = child_text(part, "name")
            pbox = self.box(part, rel, image, label)
            parts.append({"name": pname, "bbox": pbox, "line": line_of(part)})
        if parts:
            attrs["parts"] = tuple(parts)
        bbox = self.box(obj, rel, image, label)
        b.add_annotation(
            image=image, category=label, file=rel, line=line, bbox=bbox, attributes=attrs, annotator=self.who
        )


def load_voc(
    path: Path,
    *,
    limits: XMLLimits = DEFAULT_LIMITS,
    annotator_from: AnnotatorFrom | str | None = None,
    **_options: Any,
) -> Batch:
    """Read a Pascal VOC folder (or one VOC XML file) into a :class:`Batch`.

    ``annotator_from`` (see :class:`AnnotatorFrom`) takes each file's annotator from
    its path in the folder; an image then repeats only within one annotator's files.

    Each unreadable or hostile file is a problem of the batch; :class:`LoadError`
    only when there is no XML file or none can be read.
    """
    path = Path(path)
    if path.is_dir():
        root, files = path, _xml_files(path)
        if not files:
            raise LoadError("no .xml files in this Pascal VOC folder", path=path)
    else:
        root, files = path.parent, [path]
    r = _Reader(path=path, root=root, limits=limits, annotator_from=AnnotatorFrom.of_option(annotator_from))
    return read_label_files(path, root, files, r.read_file, r.b, kind="XML")


FORMAT = Format(name=FORMAT_NAME, suffixes=(".xml",), sniff=looks_like_voc, load=load_voc, folder=True)
