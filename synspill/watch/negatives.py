"""Hard negatives: crops of false alarms, as background images for the next model.

:func:`export_negative` crops an event's clean frame (written by ``watch --snapshots``,
column ``frame`` of the event log) around the event's box and adds it to a COCO dataset
folder ``out_dir/`` (``images/<camera>-event<id>.jpg`` + ``annotations.json``, the eight
taxonomy categories) as an image with no boxes. ``synspill finetune yolo|detr --negatives
out_dir`` adds those images to the training split as background images.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synspill.errors import StorageError

log = logging.getLogger(__name__)

#: The crop is the event box enlarged this many times around its centre ...
CROP_SCALE = 2.0
#: ... and at least this many pixels per side (both clipped to the frame).
CROP_MIN = 160


def crop_box(box: tuple[float, float, float, float], frame_wh: tuple[int, int], scale: float = CROP_SCALE,
             min_side: int = CROP_MIN) -> tuple[int, int, int, int]:
    """The crop around a box: ``scale`` times its size around its centre, at least ``min_side`` px per side.

    Args:
        box: Absolute ``xyxy`` pixels.
        frame_wh: The frame's ``(width, height)``.
        scale: Enlargement around the centre.
        min_side: Smallest crop width/height before clipping.

    Returns:
        Integer absolute ``xyxy`` pixels, clipped to the frame (``x2``/``y2`` exclusive).
    """
    w, h = frame_wh
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    cw, ch = max(scale * (x2 - x1), min_side), max(scale * (y2 - y1), min_side)
    return (max(0, round(cx - cw / 2)), max(0, round(cy - ch / 2)), min(w, round(cx + cw / 2)), min(h, round(cy + ch / 2)))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "camera"


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out/.annotations.lock`` while the body runs (waits up to a minute for another process)."""
    from filelock import FileLock, Timeout

    from synspill.io import storage_error

    path = out / ".annotations.lock"
    lock = FileLock(str(path), timeout=60)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise StorageError(f"{path}: another process has held this lock for a minute; if none is running, delete the file") from None
    except OSError as e:
        raise storage_error(e, path) or e from None
    try:
        yield
    finally:
        lock.release()


def export_negative(event_row: dict[str, Any], out_dir: str | Path) -> Path | None:
    """Add the crop of a false alarm to the hard-negative dataset in ``out_dir``.

    Idempotent: the same event again replaces its image and keeps one record. Both the
    image and ``annotations.json`` are written atomically, and ``annotations.json`` is read,
    changed and written under a lock file (``.annotations.lock``), so the dashboard, ``events
    false-alarm`` and other processes can export into one folder at the same time without
    losing a record.

    Args:
        event_row: An events row (:meth:`EventStore.event`): ``id``, ``camera``,
            ``class_name``, the box ``x1 y1 x2 y2`` (absolute pixels) and ``frame``.
        out_dir: The dataset folder (created when missing).

    Returns:
        The image written, or None when the event has no clean frame (``watch`` ran
        without ``--snapshots``, or the file is gone).

    Raises:
        DatasetError: ``out_dir/annotations.json`` exists but is not a COCO file.
        StorageError: The folder cannot be written.
    """
    import cv2

    from synspill.coco.dataset import CocoDataset, ImageRecord, load_coco, save_coco
    from synspill.io import write_bytes

    frame = event_row.get("frame")
    img = cv2.imread(str(frame)) if frame and Path(frame).is_file() else None
    if img is None:
        return None
    out = Path(out_dir)
    h, w = img.shape[:2]
    x1, y1, x2, y2 = crop_box((event_row["x1"], event_row["y1"], event_row["x2"], event_row["y2"]), (w, h))
    crop = img[y1:y2, x1:x2]
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    name = f"images/{_safe(str(event_row['camera']))}-event{int(event_row['id'])}.jpg"
    write_bytes(out / name, buf.tobytes())
    coco = out / "annotations.json"
    extra = {"event_id": int(event_row["id"]), "camera": event_row["camera"], "false_alarm_class": event_row.get("class_name"),
             "source_frame": str(frame), "crop_xyxy": [x1, y1, x2, y2]}
    with _locked(out):
        ds = load_coco(coco) if coco.is_file() else CocoDataset(
            root=out, info={"description": "synspill hard negatives: crops of false alarms, background images (no boxes)"})
        rec = next((im for im in ds.images if im.file_name == name), None)
        if rec is None:
            ds.images.append(ImageRecord(ds.next_image_id(), name, int(x2 - x1), int(y2 - y1), extra))
        else:
            rec.width, rec.height, rec.extra = int(x2 - x1), int(y2 - y1), extra
        save_coco(ds, coco, indent=1)
    log.info("hard negative of event %s: %s", event_row["id"], out / name)
    return out / name


def remove_negative(event_id: int, out_dir: str | Path) -> Path | None:
    """Take an event's crop back out of the hard-negative dataset (the event was a spill after all).

    Training on a real spill as a background image would teach the next model to miss it, so
    undoing a false alarm removes its record from ``annotations.json`` (written atomically) and
    then its image.

    Args:
        event_id: The event whose crop :func:`export_negative` added.
        out_dir: The dataset folder.

    Returns:
        The image removed, or None when the dataset holds no crop of that event.

    Raises:
        DatasetError: ``out_dir/annotations.json`` exists but is not a COCO file.
    """
    from synspill.coco.dataset import load_coco, save_coco

    coco = Path(out_dir) / "annotations.json"
    if not coco.is_file():
        return None
    with _locked(Path(out_dir)):
        ds = load_coco(coco)
        gone = [im for im in ds.images if im.extra.get("event_id") == int(event_id)]
        if not gone:
            return None
        ds.images = [im for im in ds.images if im not in gone]
        save_coco(ds, coco, indent=1)
    for im in gone:
        (Path(out_dir) / im.file_name).unlink(missing_ok=True)
    log.info("hard negative of event %s removed: %s", event_id, gone[0].file_name)
    return Path(out_dir) / gone[0].file_name
