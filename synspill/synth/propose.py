"""Automatic spill-box proposals: where a leak would plausibly show, at a plausible size.

Two sources of places, both in the scene's own geometry:

* **beneath equipment** (valves, flanges, pipe joints, pumps, tanks, drums): the floor
  point where a drip would land (``layout["equipment"][k]["drip"]``), for liquids that
  leak (oil, water, coolant, grease, chemicals); rust streaks start *on* the equipment
  and run down from it;
* **on the floor plane** anywhere (``layout["floor"]`` polygon), for every class.

Sizes come from real spill sizes in metres (per class) turned into pixels with the floor's
perspective: a floor patch ``w`` m wide and ``d`` m deep at image row ``y`` spans
``w * ppm`` by ``d * ppm * (y - horizon) / focal`` pixels, where
``ppm = (y - horizon) / cam_height``. For real photos without a layout, the lower part of
the image is taken as floor with a generic camera (horizon at 45 % of the height).

Proposals are marked ``{"auto": true}`` in the COCO annotations. Boxes are absolute
``xyxy`` internally and COCO ``xywh`` in files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from synspill import taxonomy
from synspill.boxes import iou
from synspill.synth import MIN_BOX

# Real-world spill extent (metres): (width lo, hi), depth/width ratio (lo, hi).
SIZES: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    1: ((0.4, 2.8), (0.5, 1.6)),   # oil
    2: ((0.5, 3.5), (0.5, 1.8)),   # water
    3: ((0.3, 2.0), (0.6, 1.4)),   # chemical
    4: ((0.4, 2.0), (0.6, 1.5)),   # floor stain
    5: ((0.3, 1.8), (0.5, 1.6)),   # coolant
    6: ((0.2, 0.9), (0.7, 1.4)),   # rust (on the floor); streaks on equipment are tall
    7: ((0.15, 0.8), (0.5, 1.5)),  # grease
    8: ((0.4, 2.2), (0.6, 1.4)),   # powder
}
LEAKING = {1, 2, 3, 5, 6, 7}  # classes that come from a source above
SOURCES = {"valve", "flange", "joint", "pump", "tank", "drum"}


def default_layout(width: int, height: int) -> dict[str, Any]:
    """Generic layout for a photo without one: floor = lower 55 %, camera 2.5 m high."""
    hz = 0.45 * height
    return {"horizon": hz, "cam_height": 2.5, "focal": 0.8 * width,
            "floor": [[0, hz + 0.05 * height], [width, hz + 0.05 * height], [width, height], [0, height]],
            "equipment": [], "heuristic": True}


def _in_poly(poly: np.ndarray, x: float, y: float) -> bool:
    import cv2

    return cv2.pointPolygonTest(poly.astype(np.float32), (float(x), float(y)), False) >= 0


def _grid_fraction(grid: np.ndarray, box: tuple[float, ...], width: int, height: int) -> float:
    """Fraction of the grid cells under ``box`` (xyxy px) that are visible floor."""
    gh, gw = grid.shape
    c1, r1 = int(box[0] / width * gw), int(box[1] / height * gh)
    c2, r2 = max(c1 + 1, int(math.ceil(box[2] / width * gw))), max(r1 + 1, int(math.ceil(box[3] / height * gh)))
    cells = grid[r1:r2, c1:c2]
    return float(cells.mean()) if cells.size else 0.0


def propose_boxes(width: int, height: int, layout: dict[str, Any] | None, rng: np.random.Generator,
                  n: int, classes: list[int] | None = None, scale: float = 1.0,
                  min_size: float = MIN_BOX, close_up: float = 0.0) -> list[tuple[tuple[float, float, float, float], int]]:
    """Propose up to ``n`` non-overlapping spill boxes for one image.

    Args:
        width: Image width (px).
        height: Image height (px).
        layout: Scene layout from :meth:`ProceduralSceneBackend.render` (``horizon``,
            ``cam_height``, ``focal``, ``floor``, ``equipment``), or None for a photo.
        rng: Random generator (the caller seeds it per image).
        n: How many boxes to try for.
        classes: Taxonomy ids to draw from (default all eight).
        scale: Multiplier on the real-world spill sizes (1: life-size as CCTV sees them;
            2-3: close-up views like most photos of spills, and easier to learn quickly).
        min_size: Smallest box side as a fraction of the image's shorter side (at least 6 px);
            smaller spills are redrawn. Raise it (e.g. 0.08) for data a small detector learns fast.
        close_up: Probability that the first spill is seen close up, its box side
            (``sqrt(w * h)``) 35-95 % of the image's: the sizes of people's photos of spills and
            of cameras near a floor or desk, which CCTV-height views never show (0: off).

    Returns:
        ``[((x1, y1, x2, y2), class_id), ...]`` absolute pixels, inside the image, pairwise
        IoU below 0.1. Fewer than ``n`` when the floor is too small.
    """
    if layout and layout.get("room"):  # a ray-cast place: spills lie on its real surfaces
        from synspill.synth import room

        return room.propose(layout, width, height, rng, n, classes or [c.id for c in taxonomy.CLASSES], SIZES, scale,
                            max(6.0, min_size * min(width, height)), close_up)
    lay = dict(default_layout(width, height))
    if layout and layout.get("floor"):
        lay.update({k: v for k, v in layout.items() if v is not None})
    classes = classes or [c.id for c in taxonomy.CLASSES]
    hz = float(lay["horizon"])
    camh = float(lay["cam_height"])
    focal = float(lay.get("focal") or 0.8 * width)
    poly = np.array(lay["floor"], np.float64).reshape(-1, 2)
    ys_floor = poly[:, 1] if len(poly) else np.array([height])
    y_lo = max(hz + 0.04 * height, float(ys_floor.min()))
    sources = [e for e in lay.get("equipment", []) if e.get("kind") in SOURCES]
    min_px = max(6.0, min_size * min(width, height))
    grid = None
    if lay.get("floor_grid"):
        grid = np.array([[c == "1" for c in row] for row in lay["floor_grid"]], bool)
    out: list[tuple[tuple[float, float, float, float], int]] = []
    for k in range(n):
        # the class is drawn once per box, so classes that rarely fit (large spills) are
        # not crowded out by ones that always do; only after many misses is another tried
        cls = int(classes[int(rng.integers(len(classes)))])
        if k == 0 and close_up > 0 and rng.random() < close_up:  # no draw when off: same boxes as before
            b = _close_up_box(width, height, hz, grid, rng)
            if b is not None:
                out.append((b, cls))
                continue
        for attempt in range(40):
            if attempt == 30:
                cls = int(classes[int(rng.integers(len(classes)))])
            (wlo, whi), (rlo, rhi) = SIZES[cls]
            src = None
            if sources and cls in LEAKING and rng.random() < 0.6:
                src = sources[int(rng.integers(len(sources)))]
            if src is not None and cls == 6 and rng.random() < 0.6:
                # rust streak running down from the equipment: narrow and tall
                ex1, ey1, ex2, ey2 = src["box"]
                cx = rng.uniform(ex1, ex2)
                bw = max(min_px, (ex2 - ex1) * rng.uniform(0.3, 0.9))
                top = rng.uniform(ey1, ey2)
                bh = max(min_px, bw * rng.uniform(1.5, 4.0))
                box = (cx - bw / 2, top, cx + bw / 2, top + bh)
            else:
                if src is not None:
                    x, y = src["drip"]
                    y = float(y) + rng.uniform(-0.01, 0.04) * height
                else:
                    y = y_lo + (height - y_lo) * math.sqrt(rng.random())  # more floor area is near the camera
                    xs = poly[:, 0] if len(poly) else np.array([0, width])
                    x = rng.uniform(max(0, xs.min()), min(width, xs.max()))
                    if len(poly) >= 3 and not _in_poly(poly, x, y):
                        continue
                if y <= hz + 2:
                    continue
                ppm = (y - hz) / camh
                wm = scale * math.exp(rng.uniform(math.log(wlo), math.log(whi)))
                bw = wm * ppm
                bh = wm * rng.uniform(rlo, rhi) * ppm * (y - hz) / focal
                bh = max(bh, 0.12 * bw)
                # a drip lands at the object's foot and spreads toward the camera and sideways
                cy = y + bh * (0.45 if src is not None else 0.0)
                box = (x - bw / 2, cy - bh / 2, x + bw / 2, cy + bh / 2)
            x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])
            if x2 - x1 < min_px or y2 - y1 < min_px or (x2 - x1) > 0.6 * width or (y2 - y1) > 0.6 * height:
                continue
            b = (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))
            on_equipment = src is not None and cls == 6 and b[1] < float(src["drip"][1]) - 1
            if grid is not None and not on_equipment and _grid_fraction(grid, b, width, height) < 0.7:
                continue  # mostly hidden behind equipment or off the floor
            if any(iou(b, o[0]) > 0.1 for o in out):
                continue
            out.append((b, cls))
            break
    return out


def _close_up_box(width: int, height: int, horizon: float, grid: np.ndarray | None,
                  rng: np.random.Generator) -> tuple[float, float, float, float] | None:
    """A close-up spill's box in a photo or plant room: side 35-95 % of the image's, below the
    horizon, mostly on visible floor; None when none fits in a few tries."""
    from synspill.synth.room import CLOSE_UP_SIDE

    side = rng.uniform(*CLOSE_UP_SIDE)
    for _ in range(20):
        aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))  # width / height of the box in the image
        bw = min(0.99 * width, side * width * math.sqrt(aspect))
        bh = min(0.99 * height, side * height / math.sqrt(aspect))
        top = max(0.0, horizon + 0.02 * height)
        if height - top < bh * 0.9:
            side *= 0.85  # too big below this horizon: smaller
            continue
        x1 = rng.uniform(0.0, width - bw)
        y1 = rng.uniform(min(top, height - bh), height - bh) if height - bh > top else height - bh
        b = (round(x1, 1), round(max(0.0, y1), 1), round(min(float(width), x1 + bw), 1), round(min(float(height), y1 + bh), 1))
        if grid is None or _grid_fraction(grid, b, width, height) >= 0.6:
            return b
    return None


def check_options(per_image: tuple[int, int] = (1, 3), scale: float = 1.0, min_size: float = MIN_BOX,
                  close_up: float = 0.0) -> None:
    """Validate proposal options (the ones ``propose`` and ``inpaint --propose`` share).

    Raises:
        UsageError: ``min_size`` outside 0-0.5 (it is a fraction of the shorter image side,
            not pixels), ``scale`` outside 0.1-10, ``close_up`` outside 0-1, or a bad
            ``per_image`` range.
    """
    from synspill.errors import UsageError

    if not 0 <= close_up <= 1:
        raise UsageError(f"--close-up {close_up} must be within 0-1 (the share of images whose first spill is a close-up)")

    if not 0 <= min_size <= 0.5:
        raise UsageError(f"--min-box {min_size} must be within 0-0.5 (a fraction of the shorter image side, e.g. 0.08)")
    if not 0.1 <= scale <= 10:
        raise UsageError(f"--spill-scale {scale} must be within 0.1-10 (1 = life-size)")
    if not 0 <= per_image[0] <= per_image[1]:
        raise UsageError(f"--per-image {per_image[0]}:{per_image[1]}: need 0 <= LOW <= HIGH")


def propose_dataset(scenes: Any, per_image: tuple[int, int] = (1, 3), classes: list[int] | None = None,
                    seed: int = 0, scale: float = 1.0, min_size: float = MIN_BOX, close_up: float = 0.0) -> Any:
    """Proposals for every image of a scenes dataset.

    Args:
        scenes: :class:`~synspill.coco.dataset.CocoDataset` of scenes; an image's
            ``extra["layout"]`` (written by ``synspill scenes``) is used when present.
        per_image: ``(lo, hi)`` inclusive range of boxes per image.
        classes: Taxonomy ids to draw from (default all).
        seed: Base seed; image ``id`` gives each image its own stream.
        scale: Multiplier on real-world spill sizes (see :func:`propose_boxes`).
        min_size: Smallest box side, fraction of the shorter image side (see :func:`propose_boxes`).
        close_up: Share of images whose first spill is a close-up (see :func:`propose_boxes`).

    Returns:
        A new :class:`CocoDataset` over the same images with ``{"auto": true}`` boxes
        (COCO ``xywh`` absolute).

    Raises:
        UsageError: An option out of range (:func:`check_options`).
    """
    from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord

    check_options(per_image, scale, min_size, close_up)
    anns: list[Annotation] = []
    for im in scenes.images:
        rng = np.random.default_rng([seed, im.id, 7])
        k = int(rng.integers(per_image[0], per_image[1] + 1))
        for (x1, y1, x2, y2), cls in propose_boxes(im.width, im.height, im.extra.get("layout"), rng, k, classes, scale,
                                                   min_size, close_up):
            anns.append(Annotation(len(anns) + 1, im.id, cls, [x1, y1, x2 - x1, y2 - y1], extra={"auto": True}))
    images = [ImageRecord(im.id, im.file_name, im.width, im.height) for im in scenes.images]
    return CocoDataset(images=images, annotations=anns, root=scenes.root,
                       info={"description": "synspill automatic spill-box proposals", "seed": seed,
                             "per_image": list(per_image), "classes": classes or "all", "scale": scale,
                             "min_size": min_size, "close_up": close_up})


def propose_to_file(scenes: str | Path, out: str | Path, force: bool = False, **options: Any) -> Any:
    """Proposals for a scenes folder (see :func:`propose_dataset`), written as a COCO file.

    ``file_name`` s are relative to ``out``'s folder, so the file opens with its images.

    Args:
        scenes: Scenes folder (``synspill scenes`` output), COCO file/folder or image folder.
        out: The ``.json`` to write.
        force: Overwrite ``out``.
        **options: ``per_image``, ``classes``, ``seed``, ``scale``, ``min_size``, ``close_up`` of :func:`propose_dataset`.

    Returns:
        The proposals (a :class:`~synspill.coco.dataset.CocoDataset`).

    Raises:
        OutputExists: ``out`` exists and not ``force``.
        UsageError: ``out`` is not a ``.json`` file, or an option is out of range.
        DatasetError: No proposal fits any scene (nothing is written), or a scene image is missing
            or truncated (the message names it).
    """
    import os

    from synspill.coco.dataset import save_coco
    from synspill.errors import DatasetError, OutputExists, UsageError
    from synspill.io import check_image_file
    from synspill.synth.scenes import load_scenes

    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    if out.suffix.lower() != ".json":
        raise UsageError(f"--out {out}: write the proposals to a .json file")
    check_options(**{k: v for k, v in options.items() if k in ("per_image", "scale", "min_size", "close_up")})
    ds = load_scenes(scenes)
    for im in ds.images:  # as inpaint would: a missing or truncated scene stops here, named
        p = ds.image_path(im)
        if not p.is_file():
            from synspill.errors import DatasetError

            raise DatasetError(f"{scenes}: scene image {str(p)!r} (id {im.id}) does not exist; fix the scenes folder or its scenes.json")
        check_image_file(p)
    props = propose_dataset(ds, **options)
    if not props.annotations and ds.images and options.get("per_image", (1, 3))[1] > 0:
        sizes = sorted({(im.width, im.height) for im in ds.images})
        raise DatasetError(
            f"{scenes}: 0 proposals over {len(ds.images)} scene(s) ({sizes[0][0]}x{sizes[0][1]} px ...): no spill of the "
            f"asked size fits; lower --min-box (now {options.get('min_size', MIN_BOX):g}) or --spill-scale "
            f"(now {options.get('scale', 1.0):g}), or use larger scenes")
    for im, src in zip(props.images, ds.images, strict=True):
        im.file_name = os.path.relpath(ds.image_path(src).resolve(), out.resolve().parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_coco(props, out)
    return props
