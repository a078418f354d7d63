"""Images in (query images; solved examples with their boxes) and results out (COCO results + sidecar meta).

The sidecar next to ``preds.json`` is ``preds.meta.json``:
``{"model": ..., "backend": "vlm", "unscored": false, "parse_dropped": {reason: count}, ...}``
-- the same shape ``synspill predict`` writes, so ``eval`` can report parse drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synspill import detections
from synspill.errors import DatasetError
from synspill.io import IMAGE_SUFFIXES, list_images


@dataclass
class SolvedImage:
    """An image with its boxes (an ICL example, a training example).

    Attributes:
        path: The image file.
        width, height: Its size (from the COCO record).
        xyxy: ``(N, 4)`` float64 absolute pixels of the original image.
        class_ids: ``(N,)`` int64 taxonomy ids (``N = 0``: an image without spills).
    """

    path: str
    width: int
    height: int
    xyxy: Any
    class_ids: Any


def solved_images(coco: str | Path) -> list[SolvedImage]:
    """The images of a COCO file with their boxes; every image file must exist.

    Raises:
        DatasetError: A missing or invalid file, or a missing image.
    """
    import numpy as np

    from synspill.boxes import xywh_to_xyxy
    from synspill.coco.dataset import load_coco

    ds = load_coco(coco, check_images=True)
    by_img = ds.anns_by_image()
    out = []
    for im in ds.images:
        anns = by_img.get(im.id, [])
        out.append(SolvedImage(str(ds.image_path(im)), im.width, im.height, xywh_to_xyxy([a.bbox for a in anns]),
                               np.array([a.category_id for a in anns], dtype=np.int64)))
    return out


def list_queries(images: str | Path) -> tuple[list[tuple[int, str]], bool]:
    """``(image_id, path)`` pairs from a COCO file (its ids) or a folder (sorted names, ids 1..N).

    Returns:
        ``(pairs, from_coco)``.

    Raises:
        DatasetError: Nothing to predict on.
    """
    p = Path(images)
    if p.is_file() and p.suffix.lower() == ".json":
        from synspill.coco.dataset import load_coco

        ds = load_coco(p, check_images=True)
        pairs = [(im.id, str(ds.image_path(im))) for im in ds.images]
        from_coco = True
    elif p.is_dir():
        pairs = [(i + 1, str(f)) for i, f in enumerate(list_images(p))]
        from_coco = False
    else:
        raise DatasetError(f"--images {images}: not a folder of images or a COCO .json file; check the path")
    if not pairs:
        raise DatasetError(f"--images {images}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return pairs, from_coco


def write_sidecar(results: str | Path, model: str, dropped: Mapping[str, int], **extra: Any) -> Path:
    """Write the sidecar meta file next to a results file (atomically)."""
    meta = {"model": model, "backend": "vlm", "unscored": False,
            "parse_dropped": {k: int(v) for k, v in sorted(dropped.items()) if v}, **extra}
    return detections.write_sidecar(results, meta)
