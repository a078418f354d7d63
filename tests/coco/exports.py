"""Small exports in the exact shape each annotation tool writes (field names, nesting, types).

Scene images are 64x48 PNG/JPEG files made by ``make_image``. Each writer returns the export
path; expected boxes (COCO xywh, absolute px) are computed by hand in the tests.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from tests.conftest import make_image

W, H = 64, 48


def scenes(folder: Path, names=("frame_001.jpg", "frame_002.jpg", "frame_003.png")) -> Path:
    for i, n in enumerate(names):
        make_image(folder / n, W, H, seed=10 + i)
    return folder


def png_bytes(w: int = W, h: int = H, seed: int = 5) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _lm_shape(label, points, shape_type, description="", group_id=None, flags=None):
    return {"label": label, "points": points, "group_id": group_id, "description": description, "shape_type": shape_type, "flags": flags or {}, "mask": None}


def labelme(folder: Path) -> Path:
    """LabelMe 5.x: one JSON per image; imagePath relative (Windows separators) and embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes(folder.parent / "images")
    a = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            _lm_shape("oil", [[40.2, 30.7], [10.5, 8.0]], "rectangle"),  # corners in any order
            _lm_shape("Puddle", [[50, 10], [60, 12], [58, 25], [48, 20]], "polygon", description="near valve"),
            _lm_shape("coolant", [[5, 40], [70, 47]], "rectangle"),  # sticks out on the right
            _lm_shape("rust", [[30, 30], [30, 35]], "rectangle"),  # zero width
            _lm_shape("oil", [[3, 3]], "point"),
            _lm_shape("steam", [[1, 1], [9, 9]], "rectangle", flags={"checked": True}),
            _lm_shape("grease", [[20, 20], [23, 24]], "circle"),  # centre + rim point: r = 5
        ],
        "imagePath": "..\\images\\frame_001.jpg",
        "imageData": None,
        "imageHeight": H,
        "imageWidth": W,
    }
    b = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [_lm_shape("stain", [[2, 2], [12, 14]], "rectangle")],
        "imagePath": "lost_on_annotator_pc.png",
        "imageData": base64.b64encode(png_bytes()).decode(),
        "imageHeight": H,
        "imageWidth": W,
    }
    (folder / "frame_001.json").write_text(json.dumps(a, indent=2))
    (folder / "embedded.json").write_text(json.dumps(b, indent=2))
    return folder


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>plant-spills</name>
      <size>3</size>
      <mode>annotation</mode>
      <overlap>0</overlap>
      <bugtracker></bugtracker>
      <created>2025-03-01 10:00:00.000000+00:00</created>
      <updated>2025-03-02 11:00:00.000000+00:00</updated>
      <subset>default</subset>
      <start_frame>0</start_frame>
      <stop_frame>2</stop_frame>
      <frame_filter></frame_filter>
      <segments>
        <segment>
          <id>9</id>
          <start>0</start>
          <stop>2</stop>
          <url>http://localhost:8080/api/jobs/9</url>
        </segment>
      </segments>
      <owner>
        <username>expert</username>
        <email></email>
      </owner>
      <assignee></assignee>
      <labels>
        <label>
          <name>Oil Spill</name>
          <color>#fa3253</color>
          <type>rectangle</type>
          <attributes>
            <attribute>
              <name>severity</name>
              <mutable>False</mutable>
              <input_type>select</input_type>
              <default_value>low</default_value>
              <values>low
high</values>
            </attribute>
          </attributes>
        </label>
        <label>
          <name>water</name>
          <color>#33ddff</color>
          <type>any</type>
          <attributes>
          </attributes>
        </label>
      </labels>
    </task>
    <dumped>2025-03-02 11:05:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="frame_001.jpg" width="64" height="48">
    <box label="Oil Spill" source="manual" occluded="0" xtl="4.50" ytl="6.00" xbr="24.50" ybr="16.00" z_order="0">
      <attribute name="severity">high</attribute>
    </box>
    <box label="water" source="auto" occluded="1" xtl="10.00" ytl="10.00" xbr="30.00" ybr="20.00" z_order="0" rotation="90.0">
    </box>
    <polygon label="water" source="manual" occluded="0" points="40.00,5.00;60.00,8.00;52.00,20.00" z_order="0">
    </polygon>
    <polyline label="water" source="manual" occluded="0" points="1.00,1.00;5.00,5.00" z_order="0">
    </polyline>
    <points label="water" source="manual" occluded="0" points="7.00,7.00" z_order="0">
    </points>
  </image>
  <image id="1" name="frame_002.jpg" width="64" height="48">
  </image>
  <image id="2" name="frame_003.png" width="64" height="48">
    <box label="smoke" source="manual" occluded="0" xtl="1.00" ytl="1.00" xbr="9.00" ybr="9.00" z_order="0">
    </box>
    <tag label="water" source="manual">
    </tag>
  </image>
</annotations>
"""


def cvat(folder: Path) -> Path:
    """CVAT for images 1.1 export: annotations.xml + images/ (the export zip, unpacked)."""
    scenes(folder / "images")
    (folder / "annotations.xml").write_text(CVAT_XML)
    return folder / "annotations.xml"


def _ls_rect(x, y, w, h, label, rid, rotation=0, origin="manual"):
    return {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
        "id": rid,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": origin,
    }


def _ls_ann(aid, result, cancelled=False, gt=False, updated="2025-03-01T10:00:00.000000Z"):
    return {
        "id": aid,
        "completed_by": 1,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": gt,
        "created_at": "2025-03-01T09:00:00.000000Z",
        "updated_at": updated,
        "draft_created_at": None,
        "lead_time": 12.5,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"u{aid}",
        "import_id": None,
        "last_action": None,
        "task": 1,
        "project": 3,
        "updated_by": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _ls_task(tid, image, annotations, predictions=(), file_upload=None):
    return {
        "id": tid,
        "annotations": annotations,
        "file_upload": file_upload,
        "drafts": [],
        "predictions": list(predictions),
        "data": {"image": image},
        "meta": {},
        "created_at": "2025-03-01T08:00:00.000000Z",
        "updated_at": "2025-03-01T10:00:00.000000Z",
        "inner_id": tid,
        "total_annotations": len(annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
        "total_predictions": len(predictions),
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    }


def labelstudio(folder: Path) -> Path:
    """Label Studio "JSON" export (list of tasks) of uploaded images (8-hex upload prefix)."""
    folder.mkdir(parents=True, exist_ok=True)
    poly = {
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {"points": [[50.0, 50.0], [75.0, 50.0], [75.0, 100.0]], "closed": True, "polygonlabels": ["chemical"]},
        "id": "p1",
        "from_name": "poly",
        "to_name": "image",
        "type": "polygonlabels",
        "origin": "manual",
    }
    pair_rect = {"original_width": W, "original_height": H, "image_rotation": 0, "value": {"x": 0.0, "y": 0.0, "width": 12.5, "height": 25.0, "rotation": 0}, "id": "r9", "from_name": "box", "to_name": "image", "type": "rectangle", "origin": "manual"}
    pair_label = {"original_width": W, "original_height": H, "image_rotation": 0, "value": {"x": 0.0, "y": 0.0, "width": 12.5, "height": 25.0, "rotation": 0, "labels": ["rust"]}, "id": "r9", "from_name": "lbl", "to_name": "image", "type": "labels", "origin": "manual"}
    t1 = _ls_task(
        1,
        "/data/upload/3/1a2b3c4d-frame_001.jpg",
        [
            _ls_ann(11, [_ls_rect(10.0, 20.0, 25.0, 50.0, "oil", "a1"), poly, pair_rect, pair_label, _ls_rect(50.0, 25.0, 25.0, 25.0, "coolant", "a2", rotation=90)]),
            _ls_ann(12, [_ls_rect(1.0, 1.0, 5.0, 5.0, "oil", "c1")], cancelled=True),
        ],
        predictions=[{"id": 5, "model_version": "yolo-v1", "score": 0.5, "result": [_ls_rect(60.0, 60.0, 10.0, 10.0, "oil", "m1", origin="prediction")]}],
        file_upload="1a2b3c4d-frame_001.jpg",
    )
    t2 = _ls_task(
        2,
        "/data/upload/3/9f8e7d6c-frame_002.jpg",
        [
            _ls_ann(21, [_ls_rect(0.0, 0.0, 50.0, 50.0, "water", "b1")], gt=True, updated="2025-03-01T09:30:00.000000Z"),
            _ls_ann(22, [_ls_rect(0.0, 0.0, 10.0, 10.0, "water", "b2")], updated="2025-03-01T11:00:00.000000Z"),
        ],
        file_upload="9f8e7d6c-frame_002.jpg",
    )
    path = folder / "project-3-at-2025-03-02-11-05-1a2b3c4d.json"
    path.write_text(json.dumps([t1, t2], indent=2))
    return path


VOC_TMPL = """<annotation>
	<folder>JPEGImages</folder>
	<filename>{name}</filename>
	<path>C:\\Users\\expert\\plant\\JPEGImages\\{name}</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>64</width>
		<height>48</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
{objects}</annotation>
"""

VOC_OBJ = """	<object>
		<name>{label}</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>{difficult}</difficult>
		<bndbox>
			<xmin>{x1}</xmin>
			<ymin>{y1}</ymin>
			<xmax>{x2}</xmax>
			<ymax>{y2}</ymax>
		</bndbox>
	</object>
"""


def voc(folder: Path) -> Path:
    """Pascal VOC layout (LabelImg style): Annotations/*.xml + JPEGImages/."""
    scenes(folder / "JPEGImages")
    ann = folder / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    objs = VOC_OBJ.format(label="oil_spill", difficult=1, x1=5, y1=6, x2=25, y2=30) + VOC_OBJ.format(label="powder", difficult=0, x1=30, y1=10, x2=66, y2=20)
    (ann / "frame_001.xml").write_text(VOC_TMPL.format(name="frame_001.jpg", objects=objs))
    (ann / "frame_002.xml").write_text(VOC_TMPL.format(name="frame_002.jpg", objects=VOC_OBJ.format(label="leak", difficult=0, x1=1, y1=2, x2=11, y2=12)))
    return ann


def yolo(folder: Path) -> Path:
    """Ultralytics layout: data.yaml + images/train + labels/train."""
    scenes(folder / "images" / "train")
    lab = folder / "labels" / "train"
    lab.mkdir(parents=True, exist_ok=True)
    (folder / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames:\n  0: oil\n  1: water\n  2: smoke\n")
    (lab / "frame_001.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.1 0.1 0.1 0.1\n2 0.8 0.8 0.1 0.1\n")
    (lab / "frame_002.txt").write_text("1 0.25 0.25 0.5 0.25 0.5 0.75\n")  # a polygon line
    (lab / "frame_003.txt").write_text("")  # image without boxes
    return folder


def coco(folder: Path) -> Path:
    """A COCO file from another tool: own category ids and names, images/ beside it."""
    scenes(folder / "images")
    d = {
        "info": {"description": "other tool"},
        "licenses": [],
        "categories": [{"id": 3, "name": "Oil", "supercategory": ""}, {"id": 7, "name": "water_leak", "supercategory": ""}, {"id": 9, "name": "person", "supercategory": ""}],
        "images": [
            {"id": 10, "file_name": "frame_001.jpg", "width": W, "height": H},
            {"id": 11, "file_name": "frame_002.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0, "segmentation": []},
            {"id": 2, "image_id": 11, "category_id": 7, "bbox": [60, 40, 10, 10], "area": 100, "iscrowd": 0, "segmentation": []},
            {"id": 3, "image_id": 11, "category_id": 9, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 0, "segmentation": []},
        ],
    }
    (folder / "_annotations.coco.json").write_text(json.dumps(d))
    return folder / "_annotations.coco.json"
