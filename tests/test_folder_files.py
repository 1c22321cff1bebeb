"""Folder readers find their files wherever the folder lives, hidden folders inside skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from annogate.formats.labelme import load_labelme
from annogate.formats.voc import load_voc

VOC = """<annotation><filename>a.jpg</filename><size><width>20</width><height>10</height></size>
<object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>
</annotation>
"""
LABELME = {
    "imagePath": "a.jpg",
    "imageWidth": 20,
    "imageHeight": 10,
    "imageData": None,
    "shapes": [{"label": "cat", "points": [[1, 2], [3, 4]], "shape_type": "rectangle"}],
}


def test_a_folder_below_a_hidden_folder_is_read(tmp_path: Path) -> None:
    # e.g. a dataset cached in ~/.cache or checked out under .ci/: only hidden folders
    # *inside* the batch are skipped, not the ones the batch itself lies in
    voc = tmp_path / ".cache" / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(VOC)
    (voc / "Annotations" / ".trash").mkdir()
    shutil.copy(voc / "Annotations" / "a.xml", voc / "Annotations" / ".trash" / "b.xml")
    assert len(load_voc(voc).annotations) == 1
    lm = tmp_path / ".cache" / "labelme"
    (lm / ".hidden").mkdir(parents=True)
    (lm / "a.json").write_text(json.dumps(LABELME))
    (lm / ".hidden" / "b.json").write_text(json.dumps(LABELME))
    assert len(load_labelme(lm).annotations) == 1


def test_reads_are_bounded_by_the_read_not_by_the_reported_size(tmp_path: Path) -> None:
    from annogate.formats._builder import read_capped

    # /dev/zero reports size 0 and never ends: the cap still holds
    assert read_capped(Path("/dev/zero"), 1 << 16) is None
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10)
    assert read_capped(f, 10) == b"x" * 10
    assert read_capped(f, 9) is None
