"""Label Studio JSON export (the full "JSON" export: a list of tasks).

Each task has ``data`` (the image URL/path) and ``annotations[].result[]``; a result of
type ``rectanglelabels`` has ``value{x, y, width, height, rotation, rectanglelabels}`` in
percent of ``original_width``/``original_height`` (rotation in degrees about the top-left
corner); ``polygonlabels`` has ``value.points`` in percent; ``ellipselabels`` has centre
``x, y`` and ``radiusX, radiusY``. Unlabelled ``rectangle``/``polygon``/``ellipse`` results
take the label of the ``labels`` result with the same region ``id``.

Per task one annotation is imported: the ``ground_truth`` one, else the most recently
updated. Cancelled annotations, the other annotations of the task and model
``predictions`` are reported as skipped, never silently dropped. The image is found by the
file name in ``data`` (``/data/upload/<project>/<8 hex>-<name>``: the upload prefix is
tried stripped too; ``/data/local-files/?d=<path>``; URLs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from synspill.coco.dataset import read_json
from synspill.coco.importers._common import (
    CANCELLED,
    MALFORMED_BOX,
    NOT_A_BOX,
    PREDICTION,
    SUPERSEDED,
    RawItem,
    RawShape,
    basename,
    ellipse_bounds,
    negative_size,
    num,
    opt_int,
    rotated_rect_bounds,
)
from synspill.errors import DatasetError
from synspill.io import IMAGE_SUFFIXES

NAME = "labelstudio"
SUFFIXES = (".json",)
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_AREA_TYPES = {"rectanglelabels": "rectangle", "rectangle": "rectangle", "polygonlabels": "polygon", "polygon": "polygon", "ellipselabels": "ellipse", "ellipse": "ellipse"}


def sniff(obj: Any) -> bool:
    """True for a parsed Label Studio JSON export (a task list, or one task)."""
    tasks = obj if isinstance(obj, list) else [obj]
    return bool(tasks) and all(
        isinstance(t, dict) and isinstance(t.get("data"), dict) and any(k in t for k in ("annotations", "predictions", "completions"))
        for t in tasks[:20]
    )


def _image_ref(data: dict) -> str | None:
    """The image URL/path of a task: ``data.image``, else the first value that looks like an image."""
    v = data.get("image")
    if isinstance(v, str) and v:
        return v
    strs = [v for v in data.values() if isinstance(v, str) and v]
    for v in strs:
        if Path(urlparse(v).path).suffix.lower() in IMAGE_SUFFIXES or "?d=" in v:
            return v
    return strs[0] if strs else None


def _names(ref: str) -> tuple[str | None, list[str]]:
    """(relative path to try, alternative file names) for a Label Studio image reference."""
    u = urlparse(ref)
    if "d" in parse_qs(u.query):  # /data/local-files/?d=folder/frame.jpg
        rel = unquote(parse_qs(u.query)["d"][0])
        return rel, [basename(rel)]
    name = basename(unquote(u.path))
    alts = [name]
    if _UPLOAD_PREFIX.match(name):
        alts.append(_UPLOAD_PREFIX.sub("", name, count=1))
    return None, alts


def _shape(r: dict, labels_by_id: dict[str, list[str]], path: Path, where: str) -> list[RawShape]:
    rtype = r.get("type") or ""
    v = r.get("value")
    if not isinstance(v, dict):
        raise DatasetError(f"{path}: {where} has no 'value' object; re-export the project as JSON")
    labels = v.get(rtype) if rtype.endswith("labels") else labels_by_id.get(str(r.get("id")), [])
    if isinstance(labels, str):
        labels = [labels]
    labels = [str(x) for x in labels or []] or [""]
    extra: dict[str, Any] = {}
    if r.get("origin") == "prediction":
        extra["auto"] = True
    if r.get("id") is not None:
        extra["region_id"] = str(r["id"])
    kind = _AREA_TYPES.get(rtype)
    ow, oh = opt_int(r.get("original_width")), opt_int(r.get("original_height"))
    shapes = []
    for label in labels:
        sh = RawShape(label, where, extra=dict(extra))
        if kind is None:
            sh.skip = (NOT_A_BOX, f"Label Studio result type {rtype!r} is not a box; use RectangleLabels or PolygonLabels")
        elif kind == "polygon":
            pts = v.get("points")
            if not isinstance(pts, list) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in pts):
                raise DatasetError(f"{path}: {where} ({label!r}) has points {pts!r}; expected [[x%, y%], ...]")
            if len(pts) < 3:
                sh.skip = (NOT_A_BOX, f"polygon with {len(pts)} point(s)")
            else:
                sh.polygon = [num(c, path, where, "point") / 100.0 for p in pts for c in p]
                sh.normalized = True
        else:
            x, y = num(v.get("x"), path, where, "x"), num(v.get("y"), path, where, "y")
            rot = num(v.get("rotation") or 0, path, where, "rotation")
            if kind == "rectangle":
                w, h = num(v.get("width"), path, where, "width"), num(v.get("height"), path, where, "height")
                why = negative_size(w, h)
                if why:
                    sh.skip = (MALFORMED_BOX, f"x={x:g}% y={y:g}% width={w:g}% height={h:g}%: {why}")
                if rot and ow and oh:  # rotate in pixels of the original image, about the top-left corner
                    b = rotated_rect_bounds(x * ow / 100, y * oh / 100, w * ow / 100, h * oh / 100, rot, "topleft")
                    sh.xyxy = (b[0] / ow, b[1] / oh, b[2] / ow, b[3] / oh)
                else:
                    sh.xyxy = (x / 100, y / 100, (x + w) / 100, (y + h) / 100)
            else:
                rx, ry = num(v.get("radiusX"), path, where, "radiusX"), num(v.get("radiusY"), path, where, "radiusY")
                if ow and oh:
                    b = ellipse_bounds(x * ow / 100, y * oh / 100, rx * ow / 100, ry * oh / 100, rot)
                    sh.xyxy = (b[0] / ow, b[1] / oh, b[2] / ow, b[3] / oh)
                else:
                    sh.xyxy = ((x - rx) / 100, (y - ry) / 100, (x + rx) / 100, (y + ry) / 100)
            if rot:
                sh.extra["rotation"] = rot
                if not (ow and oh):
                    sh.extra["rotation_ignored"] = True
            sh.normalized = True
        shapes.append(sh)
    return shapes


def _count_boxes(results: Any) -> int:
    return sum(1 for r in results or [] if isinstance(r, dict) and r.get("type") in _AREA_TYPES)


def read(path: Path, obj: Any = None) -> list[RawItem]:
    """Parse a Label Studio JSON export into one :class:`RawItem` per task.

    Coordinates are kept normalised (percent / 100), so they apply to the real image size.

    Raises:
        DatasetError: Malformed JSON, not a Label Studio export, or bad values (naming the task).
    """
    obj = read_json(path, "Label Studio") if obj is None else obj
    if not sniff(obj):
        raise DatasetError(
            f"{path}: not a Label Studio JSON export (expected a list of tasks with 'data' and 'annotations'); "
            "export the project as 'JSON' (not JSON-MIN) or pick the right --format"
        )
    tasks = obj if isinstance(obj, list) else [obj]
    items = []
    for t_i, task in enumerate(tasks):
        tid = task.get("id", f"#{t_i}")
        twhere = f"task {tid}"
        ref = _image_ref(task["data"])
        if ref is None:
            raise DatasetError(f"{path}: {twhere} has no image in 'data'; every task needs an image URL or path")
        rel, alts = _names(ref)
        if task.get("file_upload"):
            alts.append(str(task["file_upload"]))
        item = RawItem(source_file=path, where=twhere, image_ref=rel, alt_names=alts, search=[path.parent, path.parent / "images"])
        anns = [a for a in (task.get("annotations") or task.get("completions") or []) if isinstance(a, dict)]
        live = []
        for a in anns:
            if a.get("was_cancelled"):
                item.skipped.append((CANCELLED, f"annotation {a.get('id')} was cancelled (skipped) in Label Studio", _count_boxes(a.get("result"))))
            else:
                live.append(a)
        chosen = None
        if live:
            gt = [a for a in live if a.get("ground_truth")]
            chosen = (gt or sorted(live, key=lambda a: str(a.get("updated_at") or a.get("created_at") or "")))[-1]
            for a in live:
                if a is not chosen:
                    item.skipped.append((SUPERSEDED, f"annotation {a.get('id')} not used; annotation {chosen.get('id')} is the ground truth / latest", _count_boxes(a.get("result"))))
        for p in task.get("predictions") or []:
            if isinstance(p, dict) and _count_boxes(p.get("result")):
                item.skipped.append((PREDICTION, f"prediction of model {p.get('model_version')!r}; review it in Label Studio to make it an annotation", _count_boxes(p.get("result"))))
        if chosen is not None:
            results = [r for r in chosen.get("result") or [] if isinstance(r, dict)]
            labels_by_id = {str(r.get("id")): list((r.get("value") or {}).get("labels") or []) for r in results if r.get("type") == "labels"}
            for k, r in enumerate(results):
                if r.get("type") == "labels" and str(r.get("id")) in labels_by_id and any(
                    str(o.get("id")) == str(r.get("id")) and o.get("type") in _AREA_TYPES for o in results
                ):
                    continue  # the label half of a Rectangle + Labels pair
                item.shapes += _shape(r, labels_by_id, path, f"result {k}")
                if item.width is None:
                    item.width, item.height = opt_int(r.get("original_width")), opt_int(r.get("original_height"))
            item.where = f"{twhere} annotation {chosen.get('id')}"
        # normalised shapes apply to the real image; the tool size only guards against a wrong file
        items.append(item)
    return items
