"""Importers: each tool's real export shape -> exact boxes (hand-computed), skips with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synspill import taxonomy
from synspill.coco.importers import import_annotations, sniff_file
from synspill.coco.importers._common import ellipse_bounds, rotated_rect_bounds
from synspill.coco.tools import parse_label_map
from synspill.errors import DatasetError
from tests.coco import exports

CID = {n: taxonomy.BY_NAME[n].id for n in taxonomy.NAMES}


def boxes(ds):
    """{(image basename, class name): [sorted bboxes]} with bboxes rounded to 2 decimals."""
    names = ds.category_names()
    ims = ds.image_by_id()
    out: dict = {}
    for a in ds.annotations:
        key = (Path(ims[a.image_id].file_name).name, names[a.category_id])
        out.setdefault(key, []).append([round(v, 2) for v in a.bbox])
    return {k: sorted(v) for k, v in out.items()}


def reasons(rep):
    return rep.skipped_by_reason()


def test_labelme(tmp_path):
    src = exports.labelme(tmp_path / "lm")
    res = import_annotations([src], embed_dir=tmp_path / "out" / "images")
    ds, rep = res.dataset, res.report
    assert rep.format == "labelme" and rep.files == 2 and rep.images == 2
    b = boxes(ds)
    assert b[("frame_001.jpg", "oil-spill")] == [[10.5, 8.0, 29.7, 22.7]]
    assert b[("frame_001.jpg", "water-leak")] == [[48.0, 10.0, 12.0, 15.0]]  # polygon bounds; "Puddle" alias
    assert b[("frame_001.jpg", "coolant-leak")] == [[5.0, 40.0, 59.0, 7.0]]  # clipped at x=64
    assert b[("frame_001.jpg", "grease-smear")] == [[15.0, 15.0, 10.0, 10.0]]  # circle: centre (20, 20), rim (23, 24) -> r = 5
    poly = next(a for a in ds.annotations if a.category_id == CID["water-leak"])
    assert poly.area == pytest.approx(122.0)  # shoelace by hand
    assert poly.segmentation == [[50, 10, 60, 12, 58, 25, 48, 20]]
    assert poly.extra["source"] == "labelme" and poly.extra["auto"] is False and poly.extra["source_label"] == "Puddle"
    assert poly.extra["description"] == "near valve" and poly.extra["source_file"] == "frame_001.json"
    assert reasons(rep) == {"degenerate box": 1, "not a box shape": 1, "unknown label": 1}
    assert rep.unknown_labels() == {("frame_001.json", "steam"): 1}
    assert len(rep.clipped) == 1 and "coolant" == rep.clipped[0].label
    # embedded imageData written as a real PNG and used
    emb = [im for im in ds.images if "lost_on_annotator_pc" in im.file_name]
    assert len(emb) == 1 and Path(emb[0].file_name).read_bytes() == exports.png_bytes()
    assert Path(emb[0].file_name).suffix == ".png"
    assert b[(Path(emb[0].file_name).name, "floor-stain")] == [[2.0, 2.0, 10.0, 12.0]]


def test_labelme_circle_bounds_exact(tmp_path):
    # (20,20) centre, rim (23,24): r = 5 -> box [15, 15, 10, 10]
    src = exports.labelme(tmp_path / "lm")
    ds = import_annotations([src / "frame_001.json"]).dataset
    g = [a.bbox for a in ds.annotations if a.category_id == CID["grease-smear"]]
    assert g == [pytest.approx([15.0, 15.0, 10.0, 10.0])]


def test_embedded_image_without_embed_dir_is_reported(tmp_path):
    src = exports.labelme(tmp_path / "lm")
    rep = import_annotations([src / "embedded.json", src / "frame_001.json"]).report
    assert reasons(rep)["image not found"] == 1


def test_cvat(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    ds, rep = (r := import_annotations([xml])).dataset, r.report
    assert rep.format == "cvat" and rep.images == 3  # the image without shapes is kept (a negative)
    b = boxes(ds)
    assert b[("frame_001.jpg", "oil-spill")] == [[4.5, 6.0, 20.0, 10.0]]
    # rotated 90 deg about the centre (20, 15): 20x10 -> 10x20; and the polygon's bounds
    assert b[("frame_001.jpg", "water-leak")] == [[15.0, 5.0, 10.0, 20.0], [40.0, 5.0, 20.0, 15.0]]
    oil = next(a for a in ds.annotations if a.category_id == CID["oil-spill"])
    assert oil.extra["attributes"] == {"severity": "high"} and oil.extra["auto"] is False
    rot = next(a for a in ds.annotations if a.extra.get("rotation"))
    assert rot.extra["auto"] is True and rot.extra["occluded"] is True
    assert reasons(rep) == {"not a box shape": 3, "unknown label": 1}
    assert rep.unknown_labels() == {("annotations.xml", "smoke"): 1}
    assert {Path(im.file_name).name for im in ds.images} == {"frame_001.jpg", "frame_002.jpg", "frame_003.png"}


def test_cvat_video_export_is_explained(tmp_path):
    p = tmp_path / "video.xml"
    p.write_text('<?xml version="1.0"?><annotations><version>1.1</version><meta/><track id="0" label="oil"><box frame="0" xtl="1" ytl="1" xbr="5" ybr="5" outside="0" occluded="0" keyframe="1"/></track></annotations>')
    with pytest.raises(DatasetError, match=r"video.xml: this is a 'CVAT for video' export"):
        import_annotations([p])


def test_labelstudio(tmp_path):
    p = exports.labelstudio(tmp_path / "ls")
    imgs = exports.scenes(tmp_path / "scenes")
    res = import_annotations([p], images=imgs)
    ds, rep = res.dataset, res.report
    assert rep.format == "labelstudio" and rep.images == 2
    b = boxes(ds)
    assert b[("frame_001.jpg", "oil-spill")] == [[6.4, 9.6, 16.0, 24.0]]  # % of 64x48
    assert b[("frame_001.jpg", "chemical-discoloration")] == [[32.0, 24.0, 16.0, 24.0]]
    assert b[("frame_001.jpg", "rust-stain")] == [[0.0, 0.0, 8.0, 12.0]]  # Rectangle + Labels pair by id
    # rotated 90 deg about its top-left corner (32, 12): 16x12 -> x 20..32, y 12..28
    assert b[("frame_001.jpg", "coolant-leak")] == [[20.0, 12.0, 12.0, 16.0]]
    # task 2: the ground-truth annotation wins over the newer one
    assert b[("frame_002.jpg", "water-leak")] == [[0.0, 0.0, 32.0, 24.0]]
    assert reasons(rep) == {"cancelled annotation": 1, "model prediction": 1, "other annotation of the task": 1}
    assert all(a.extra["source"] == "labelstudio" for a in ds.annotations)


def test_labelstudio_local_files_and_real_size(tmp_path):
    # local storage reference, image twice the exported size: percentages apply to the real file
    from tests.conftest import make_image

    make_image(tmp_path / "imgs" / "sub" / "cam 1.jpg", 128, 96)
    task = {"id": 4, "data": {"img": "/data/local-files/?d=sub/cam%201.jpg"}, "annotations": [{"id": 1, "result": [
        {"original_width": 128, "original_height": 96, "value": {"x": 25, "y": 50, "width": 50, "height": 25, "rectanglelabels": ["Oil"]}, "id": "x", "type": "rectanglelabels", "from_name": "l", "to_name": "i"}]}]}
    p = tmp_path / "export.json"
    p.write_text(json.dumps([task]))
    ds = import_annotations([p], images=tmp_path / "imgs").dataset
    assert [a.bbox for a in ds.annotations] == [pytest.approx([32.0, 48.0, 64.0, 24.0])]


def test_voc(tmp_path):
    ann = exports.voc(tmp_path / "VOC")
    res = import_annotations([ann])
    ds, rep = res.dataset, res.report
    assert rep.format == "voc" and rep.images == 2
    b = boxes(ds)
    assert b[("frame_001.jpg", "oil-spill")] == [[5.0, 6.0, 20.0, 24.0]]
    assert b[("frame_001.jpg", "powder-spill")] == [[30.0, 10.0, 34.0, 10.0]]  # clipped from xmax=66
    assert b[("frame_002.jpg", "water-leak")] == [[1.0, 2.0, 10.0, 10.0]]
    assert next(a for a in ds.annotations if a.category_id == CID["oil-spill"]).extra["difficult"] is True
    assert len(rep.clipped) == 1 and not rep.skipped


def test_yolo(tmp_path):
    root = exports.yolo(tmp_path / "ds")
    res = import_annotations([root / "labels"])
    ds, rep = res.dataset, res.report
    assert rep.format == "yolo" and rep.images == 3  # the empty label file is a negative image
    b = boxes(ds)
    assert b[("frame_001.jpg", "oil-spill")] == [[24.0, 12.0, 16.0, 24.0]]
    assert b[("frame_001.jpg", "water-leak")] == [[3.2, 2.4, 6.4, 4.8]]
    assert b[("frame_002.jpg", "water-leak")] == [[16.0, 12.0, 16.0, 24.0]]  # polygon line
    assert rep.unknown_labels() == {("train/frame_001.txt", "smoke"): 1}  # relative to SRC
    neg = next(im for im in ds.images if im.file_name.endswith("frame_003.png"))
    assert not [a for a in ds.annotations if a.image_id == neg.id]


def test_yolo_without_names_maps_indices(tmp_path):
    exports.scenes(tmp_path / "d")
    (tmp_path / "d" / "frame_001.txt").write_text("3 0.5 0.5 0.5 0.5\n")
    res = import_annotations([tmp_path / "d" / "frame_001.txt"], fmt="yolo", label_map=parse_label_map(["3=rust"]))
    assert boxes(res.dataset) == {("frame_001.jpg", "rust-stain"): [[16.0, 12.0, 32.0, 24.0]]}


def test_yolo_malformed_line_names_file_and_line(tmp_path):
    root = exports.yolo(tmp_path / "ds")
    (root / "labels" / "train" / "frame_002.txt").write_text("1 0.5 0.5 0.1 0.1\n1 0.5 oops 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"frame_002.txt:2: '1 0.5 oops 0.1 0.1' is not a YOLO label line"):
        import_annotations([root / "labels" / "train" / "frame_002.txt"], fmt="yolo")


def test_coco_merge_by_name(tmp_path):
    p = exports.coco(tmp_path / "c")
    res = import_annotations([p])
    ds, rep = res.dataset, res.report
    assert rep.format == "coco"
    b = boxes(ds)
    assert b == {("frame_001.jpg", "oil-spill"): [[1.0, 2.0, 10.0, 20.0]], ("frame_002.jpg", "water-leak"): [[60.0, 40.0, 4.0, 8.0]]}
    assert rep.unknown_labels() == {("_annotations.coco.json", "person"): 1}
    assert len(rep.clipped) == 1


def test_same_image_from_two_files_is_one_image(tmp_path):
    a = exports.coco(tmp_path / "c")
    b = tmp_path / "c" / "second.json"
    b.write_text(a.read_text())
    ds = import_annotations([a, b]).dataset
    assert len(ds.images) == 2 and len(ds.annotations) == 4


@pytest.mark.parametrize(
    "writer,fmt",
    [(exports.labelme, "labelme"), (exports.cvat, "cvat"), (exports.labelstudio, "labelstudio"), (exports.voc, "voc"), (exports.coco, "coco")],
)
def test_sniff(tmp_path, writer, fmt):
    p = writer(tmp_path / "x")
    f = p if p.is_file() else sorted(q for q in p.iterdir() if q.suffix in (".json", ".xml"))[0]
    assert sniff_file(f)[0] == fmt


def test_sniff_yolo_and_unknown(tmp_path):
    root = exports.yolo(tmp_path / "y")
    assert sniff_file(root / "labels" / "train" / "frame_001.txt")[0] == "yolo"
    (tmp_path / "notes.json").write_text('{"categories": []}')
    assert sniff_file(tmp_path / "notes.json")[0] is None


def test_mixed_formats_need_format(tmp_path):
    exports.labelme(tmp_path / "mix")
    exports.cvat(tmp_path / "mix")
    with pytest.raises(DatasetError, match=r"found several formats: .*labelme.*cvat|found several formats: .*cvat.*labelme"):
        import_annotations([tmp_path / "mix"])
    res = import_annotations([tmp_path / "mix"], fmt="cvat")
    assert res.report.format == "cvat" and res.report.files == 1


def test_strict_lists_unknown_labels(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    with pytest.raises(DatasetError, match=r"--strict: 1 problem\(s\): annotations.xml image 'frame_003.png' box 0: unknown label 'smoke'"):
        import_annotations([xml], strict=True)


def test_missing_image_is_reported_and_strict_fails(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    (tmp_path / "cvat" / "images" / "frame_002.jpg").unlink()
    rep = import_annotations([xml]).report
    assert any(s.reason == "image not found" and "frame_002.jpg" in s.detail for s in rep.skipped)
    assert rep.images_skipped_by_reason() == {"image not found": 1}  # a negative image: 0 boxes, still counted
    assert rep.images == 2
    with pytest.raises(DatasetError, match=r"image not found"):
        import_annotations([xml], strict=True, label_map={"smoke": "powder-spill"})


def test_size_mismatch_rescales_same_aspect_and_skips_other(tmp_path):
    from tests.conftest import make_image

    xml = exports.cvat(tmp_path / "cvat")
    make_image(tmp_path / "cvat" / "images" / "frame_001.jpg", 128, 96)  # same aspect, 2x
    make_image(tmp_path / "cvat" / "images" / "frame_003.png", 64, 64)  # other aspect
    res = import_annotations([xml], label_map={"smoke": "powder-spill"})
    b = boxes(res.dataset)
    assert b[("frame_001.jpg", "oil-spill")] == [[9.0, 12.0, 40.0, 20.0]]
    assert res.report.skipped_by_reason().get("image size mismatch") == 2  # smoke box + tag
    assert ("frame_003.png", "powder-spill") not in b


def test_ambiguous_image_name_is_not_guessed(tmp_path):
    p = exports.labelstudio(tmp_path / "ls")
    exports.scenes(tmp_path / "imgs" / "cam1")
    exports.scenes(tmp_path / "imgs" / "cam2", names=("frame_002.jpg",))
    res = import_annotations([p], images=tmp_path / "imgs")
    assert res.report.skipped_by_reason()["ambiguous image name"] == 1  # task 2's box; task 1 imported
    assert res.report.images == 1
    exports.scenes(tmp_path / "imgs" / "cam2")
    with pytest.raises(DatasetError, match=r"nothing imported .*ambiguous image name: 5.*; 2 files named 'frame_001.jpg'"):
        import_annotations([p], images=tmp_path / "imgs")


def test_box_outside_image_and_min_size(tmp_path):
    exports.scenes(tmp_path)
    (tmp_path / "frame_001.txt").write_text("0 1.5 0.5 0.1 0.1\n0 0.5 0.5 0.01 0.5\n0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("oil\n")
    rep = import_annotations([tmp_path / "frame_001.txt"]).report
    assert rep.skipped_by_reason() == {"box outside image": 1, "degenerate box": 1} and rep.imported == 1
    (tmp_path / "frame_001.txt").write_text("0 1.5 0.5 0.1 0.1\n0 0.5 0.5 0.01 0.5\n")
    with pytest.raises(DatasetError, match=r"0 of 2 boxes imported .*box outside image: 1, degenerate box: 1"):
        import_annotations([tmp_path / "frame_001.txt"])  # keeping nothing is an error, not an empty dataset


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("bad.json", '{"shapes": [', r"bad.json: malformed JSON at line 1"),
        ("bad.xml", "<annotations><image></annotations>", r"bad.xml: malformed XML at line 1"),
        ("what.json", '{"hello": 1}', r"what.json: cannot tell the format"),
        ("what.xml", "<root/>", r"what.xml: XML with root <root>"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DatasetError, match=match):
        import_annotations([p])


def test_bad_coordinates_name_the_shape(tmp_path):
    exports.cvat(tmp_path / "c")
    p = tmp_path / "c" / "annotations.xml"
    p.write_text(p.read_text().replace('xtl="4.50"', 'xtl="left"'))
    with pytest.raises(DatasetError, match=r"annotations.xml: image 'frame_001.jpg' box 0 \('Oil Spill'\) has xtl='left'"):
        import_annotations([p])


def test_geometry_helpers():
    assert rotated_rect_bounds(0, 0, 10, 4, 0) == (0, 0, 10, 4)
    b = rotated_rect_bounds(0, 0, 10, 4, 180, "center")
    assert b == pytest.approx((0, 0, 10, 4))
    assert rotated_rect_bounds(0, 0, 10, 4, 90, "topleft") == pytest.approx((-4, 0, 0, 10))
    assert ellipse_bounds(10, 10, 5, 2, 90) == pytest.approx((8, 5, 12, 15))


def test_every_line_is_imported_or_reported_and_boxes_stay_inside(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    d = tmp_path_factory.mktemp("prop")
    exports.scenes(d, names=("frame_001.jpg",))
    (d / "classes.txt").write_text("oil\nwater\nsmoke\n")
    coord = st.floats(-0.5, 1.5, allow_nan=False)
    line = st.tuples(st.integers(0, 2), coord, coord, st.floats(0, 1.2), st.floats(0, 1.2))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(line, max_size=12))
    def check(lines):
        (d / "frame_001.txt").write_text("".join(f"{c} {x:.4f} {y:.4f} {w:.4f} {h:.4f}\n" for c, x, y, w, h in lines))
        try:
            res = import_annotations([d / "frame_001.txt"], fmt="yolo")
        except DatasetError as e:  # nothing kept of a non-empty file is an error (issue #14 row 15)
            assert lines and f"0 of {len(lines)} boxes imported" in str(e)
            return
        rep = res.report
        assert rep.imported + sum(rep.skipped_by_reason().values()) == len(lines)
        assert rep.skipped_by_reason().get("unknown label", 0) == sum(c == 2 for c, *_ in lines)
        for a in res.dataset.annotations:
            x, y, w, h = a.bbox
            assert x >= 0 and y >= 0 and x + w <= exports.W + 1e-6 and y + h <= exports.H + 1e-6
            assert w >= 1 and h >= 1
        res.dataset.validate("prop")

    check()
