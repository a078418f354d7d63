"""Surface materials of the places spills happen: seamless colour textures and their optics.

Each material kind is a seamless ``(512, 512, 3)`` float32 RGB tile in [0, 1] (cached per
process and variant, so an image depends only on its own seed) plus what the renderer and
the liquid compositor need to know about it: how many metres one tile covers, how glossy
the dry surface is, and how porous it is (porous surfaces darken when wet, sealed ones
only get a water film). Colours are varied per image by :func:`recolour`.

Floors: polished tile, terrazzo, vinyl, wood planks, laminate, epoxy, concrete, carpet,
plus the plant floors of :mod:`synspill.synth.textures`. Walls, shelving with products,
desk tops and doors for the rooms of :mod:`synspill.synth.room`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from synspill.synth import textures as tx

TILE = 512


@dataclass(frozen=True)
class Optics:
    """How a dry surface reflects and how it takes a liquid.

    Attributes:
        tile_m: Metres covered by one texture tile ``(lo, hi)``.
        gloss: Dry specular reflectance factor ``(lo, hi)`` (0 matte, 1 mirror-like).
        rough: Dry reflection blur, fraction of the image height ``(lo, hi)``.
        porous: How much the surface darkens when wet (0 sealed tile .. 1 raw concrete, carpet).
    """

    tile_m: tuple[float, float]
    gloss: tuple[float, float]
    rough: tuple[float, float]
    porous: float


#: Floor materials and their optics.
FLOORS: dict[str, Optics] = {
    "tile": Optics((1.2, 3.6), (0.25, 0.9), (0.002, 0.02), 0.15),
    "terrazzo": Optics((1.5, 3.0), (0.3, 0.9), (0.002, 0.015), 0.2),
    "vinyl": Optics((2.0, 5.0), (0.2, 0.75), (0.004, 0.03), 0.1),
    "wood": Optics((2.0, 4.0), (0.1, 0.6), (0.006, 0.04), 0.6),
    "laminate": Optics((2.0, 4.0), (0.15, 0.6), (0.004, 0.03), 0.3),
    "epoxy": Optics((3.0, 6.0), (0.3, 0.9), (0.003, 0.02), 0.05),
    "concrete": Optics((2.5, 5.0), (0.0, 0.25), (0.02, 0.06), 1.0),
    "carpet": Optics((1.0, 2.5), (0.0, 0.03), (0.05, 0.08), 1.0),
    "checker-plate": Optics((1.5, 3.0), (0.1, 0.4), (0.01, 0.04), 0.05),
}
#: Typical base colours per floor (RGB 0-1), varied per image.
FLOOR_COLOURS: dict[str, list[list[float]]] = {
    "tile": [[0.85, 0.84, 0.8], [0.72, 0.7, 0.66], [0.55, 0.5, 0.46], [0.9, 0.88, 0.85], [0.42, 0.42, 0.44], [0.7, 0.6, 0.5]],
    "terrazzo": [[0.8, 0.78, 0.74], [0.62, 0.6, 0.58], [0.75, 0.7, 0.62], [0.5, 0.5, 0.52]],
    "vinyl": [[0.78, 0.78, 0.75], [0.6, 0.65, 0.6], [0.55, 0.6, 0.7], [0.75, 0.72, 0.62], [0.45, 0.47, 0.5]],
    "wood": [[0.62, 0.42, 0.24], [0.5, 0.32, 0.18], [0.75, 0.58, 0.38], [0.35, 0.22, 0.13], [0.7, 0.52, 0.3]],
    "laminate": [[0.72, 0.6, 0.45], [0.58, 0.45, 0.32], [0.8, 0.74, 0.62], [0.5, 0.48, 0.45]],
    "epoxy": [[0.55, 0.57, 0.58], [0.35, 0.5, 0.4], [0.4, 0.45, 0.55], [0.6, 0.35, 0.3], [0.7, 0.68, 0.6]],
    "concrete": [[0.62, 0.6, 0.56], [0.55, 0.55, 0.55], [0.66, 0.62, 0.55], [0.45, 0.45, 0.47]],
    "carpet": [[0.35, 0.37, 0.42], [0.45, 0.4, 0.36], [0.3, 0.33, 0.3], [0.5, 0.48, 0.46], [0.4, 0.25, 0.25]],
    "checker-plate": [[0.62, 0.63, 0.65], [0.5, 0.5, 0.52]],
}
WALL_KINDS = ("painted", "wall-tile", "blocks", "panel", "brick")
WALL_COLOURS = [[0.85, 0.85, 0.82], [0.7, 0.72, 0.74], [0.8, 0.76, 0.66], [0.6, 0.66, 0.72], [0.72, 0.8, 0.78],
                [0.62, 0.66, 0.56], [0.9, 0.88, 0.8], [0.55, 0.52, 0.5], [0.78, 0.7, 0.6]]


def _fbm(rng: np.random.Generator, cells: int, octaves: int, gain: float = 0.5) -> np.ndarray:
    return tx.fbm(rng, TILE, cells, octaves, gain)


def _rgb(grey: np.ndarray, colour: list[float] | np.ndarray) -> np.ndarray:
    return grey[..., None] * np.asarray(colour, np.float32)[None, None, :]


def _wood_grain(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Grain along x for a ``(h, w)`` plank: stretched noise and growth-ring bands."""
    import cv2

    n: np.ndarray = rng.normal(0, 1, (max(4, h // 3), max(4, w // 40))).astype(np.float32)
    n = cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC)
    rings = np.sin(np.linspace(0, rng.uniform(6, 20), h, dtype=np.float32)[:, None] * np.pi + n * 1.5)
    fine = cv2.resize(rng.normal(0, 1, (h, max(4, w // 8))).astype(np.float32), (w, h))
    return 0.07 * rings + 0.03 * fine + 0.04 * n


def _planks(rng: np.random.Generator, plank_px: int, length_px: int, seam: float, grain: float) -> np.ndarray:
    t = np.zeros((TILE, TILE), np.float32)
    rows = TILE // plank_px
    for r in range(rows):
        y0 = r * plank_px
        off = int(rng.integers(0, length_px))
        x = -off
        while x < TILE:
            ln = int(length_px * rng.uniform(0.6, 1.0))
            a, b = max(0, x), min(TILE, x + ln)
            if b > a:
                g = _wood_grain(rng, b - a, plank_px) * grain
                t[y0:y0 + plank_px, a:b] = 1.0 + rng.normal(0, 0.07) + g
                t[y0:y0 + plank_px, a:a + 1] *= seam  # butt joint
            x += ln
        t[y0:y0 + 1, :] *= seam  # long seam
    return 0.75 * t


def _terrazzo(rng: np.random.Generator) -> np.ndarray:
    base = 0.8 + 0.03 * _fbm(rng, 4, 3)
    img = np.repeat(base[..., None], 3, axis=2)
    n = 2500
    ys, xs = rng.integers(0, TILE, n), rng.integers(0, TILE, n)
    palette = np.array([[0.2, 0.2, 0.22], [0.95, 0.95, 0.93], [0.6, 0.45, 0.35], [0.45, 0.5, 0.55],
                        [0.75, 0.65, 0.5], [0.3, 0.35, 0.3]], np.float32)
    import cv2

    for y, x in zip(ys, xs, strict=True):
        c = palette[int(rng.integers(len(palette)))] / 0.8
        r = int(rng.integers(1, 5))
        for dy in (-TILE, 0, TILE):
            for dx in (-TILE, 0, TILE):
                cv2.circle(img, (int(x) + dx, int(y) + dy), r, c.tolist(), -1)
    return img


def _vinyl(rng: np.random.Generator, checker: bool) -> np.ndarray:
    t = 0.85 + 0.04 * _fbm(rng, 8, 4) + 0.02 * _fbm(rng, 64, 2)
    if checker:
        n = 8
        q = np.kron((np.indices((n, n)).sum(axis=0) % 2).astype(np.float32), np.ones((TILE // n, TILE // n), np.float32))
        t = t * (0.55 + 0.45 * q)
    return t


def _carpet(rng: np.random.Generator, tiles: bool) -> np.ndarray:
    t = 0.8 + 0.08 * rng.normal(0, 1, (TILE, TILE)).astype(np.float32) + 0.05 * _fbm(rng, 16, 3)
    if tiles:  # carpet tiles laid in alternating directions
        n, cell = 4, TILE // 4
        stripes = 0.04 * np.sin(np.arange(cell, dtype=np.float32) * 1.3)
        for i in range(n):
            for j in range(n):
                blk = t[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell]
                blk += stripes[None, :] if (i + j) % 2 else stripes[:, None]
    return t


def _ceramic(rng: np.random.Generator, n: int, grout: float) -> np.ndarray:
    cell = TILE // n
    t = 0.85 + 0.015 * _fbm(rng, 16, 3)
    t += np.kron(rng.normal(0, 0.025, (n, n)).astype(np.float32), np.ones((cell, cell), np.float32))
    g = max(2, cell // 30)
    for i in range(n):
        t[i * cell:i * cell + g, :] = grout
        t[:, i * cell:i * cell + g] = grout
    return t


def _products(rng: np.random.Generator) -> np.ndarray:
    """Shelving with products: rows of coloured packs/bottles on shelf boards (x along the aisle)."""
    import cv2

    img = np.full((TILE, TILE, 3), 0.15, np.float32)
    rows = int(rng.integers(4, 7))
    rh = TILE // rows
    for r in range(rows):
        y1 = (r + 1) * rh
        x = 0
        while x < TILE:
            w = int(rng.integers(12, 48))
            h = int(rh * rng.uniform(0.45, 0.9))
            col = np.clip(rng.random(3) * 0.9 + 0.1 * rng.random(), 0.05, 1).astype(np.float32)
            n = int(rng.integers(1, 5))
            for k in range(n):
                xa = x + k * (w // n)
                cv2.rectangle(img, (xa, y1 - 6 - h), (min(TILE - 1, xa + w // n - 2), y1 - 6), col.tolist(), -1)
                if rng.random() < 0.5:  # label band
                    lc = (1 - col * 0.7).tolist()
                    cv2.rectangle(img, (xa + 1, y1 - 6 - h // 2), (min(TILE - 1, xa + w // n - 3), y1 - 6 - h // 3), lc, -1)
            x += w + int(rng.integers(0, 4))
        img[y1 - 6:y1] = np.array([0.75, 0.75, 0.72], np.float32)  # shelf edge
    return img


def _sign(rng: np.random.Generator) -> np.ndarray:
    """A caution sign's face in the middle half of the tile: a warning triangle with a falling
    figure, and lines of text below (dark on the panel colour, which the material tints)."""
    import cv2

    t = np.full((TILE, TILE, 3), 0.8, np.float32)
    ink = (0.04, 0.04, 0.04)
    cx, top, side = TILE // 2, int(TILE * 0.12), int(TILE * 0.36)
    tri = np.array([[cx, top], [cx - side // 2, top + int(side * 0.87)], [cx + side // 2, top + int(side * 0.87)]], np.int32)
    cv2.polylines(t, [tri], True, ink, int(rng.integers(8, 16)), cv2.LINE_AA)
    fy = top + int(side * 0.45)
    cv2.circle(t, (cx - 10, fy - 30), 14, ink, -1, cv2.LINE_AA)
    cv2.line(t, (cx - 10, fy - 15), (cx + 15, fy + 35), ink, 12, cv2.LINE_AA)
    cv2.line(t, (cx + 15, fy + 35), (cx - 25, fy + 70), ink, 10, cv2.LINE_AA)
    cv2.line(t, (cx + 15, fy + 35), (cx + 45, fy + 60), ink, 10, cv2.LINE_AA)
    y = top + int(side * 0.87) + 40
    for _ in range(int(rng.integers(2, 4))):  # "CAUTION", "WET FLOOR"
        half = int(TILE * rng.uniform(0.12, 0.2))
        cv2.rectangle(t, (cx - half, y), (cx + half, y + 26), ink, -1)
        y += 48
    return t


def _brick(rng: np.random.Generator) -> np.ndarray:
    t = 0.8 + 0.05 * _fbm(rng, 16, 3)
    rows, cols = 16, 4
    bh, bw = TILE // rows, TILE // cols
    shade = rng.normal(0, 0.06, (rows, cols + 1)).astype(np.float32)
    for r in range(rows):
        off = (bw // 2) * (r % 2)
        for c in range(cols + 1):
            x0 = c * bw - off
            a, b = max(0, x0), min(TILE, x0 + bw)
            if b > a:
                t[r * bh:(r + 1) * bh, a:b] += shade[r, c]
            t[r * bh:(r + 1) * bh, max(0, x0):max(0, x0) + 3] = 0.95
        t[r * bh:r * bh + 3, :] = 0.95
    return t


def _panel(rng: np.random.Generator) -> np.ndarray:
    t = 0.85 + 0.02 * _fbm(rng, 4, 3)
    for x in range(0, TILE, TILE // 4):
        t[:, x:x + 2] = 0.6
    return t


def _random(rng: np.random.Generator) -> np.ndarray:
    """Domain randomisation (Tobin et al. 2017): an unrealistic texture -- noise, stripes,
    checks or blobs in random colours -- so that a detector cannot lean on what floors look like."""
    import cv2

    pal = rng.random((4, 3)).astype(np.float32) * 0.8 + 0.15
    kind = int(rng.integers(4))
    if kind == 0:
        t = _fbm(rng, int(rng.choice([2, 4, 8, 16])), 4)
        q = np.clip((t + 2) / 4 * 3.999, 0, 3.999).astype(np.int32)
        img = pal[q]
        return cv2.GaussianBlur(img, (0, 0), 1.0)
    if kind == 1:
        n = int(rng.choice([4, 8, 16, 32]))
        idx = (np.arange(TILE) // (TILE // n)) % 2
        img = np.where(idx[None, :, None] == 0, pal[0], pal[1]) * np.ones((TILE, 1, 1), np.float32)
        return img + 0.05 * _fbm(rng, 16, 3)[..., None]
    if kind == 2:
        n = int(rng.choice([2, 4, 8, 16]))
        q = np.indices((n, n)).sum(axis=0) % 2
        img = pal[np.kron(q, np.ones((TILE // n, TILE // n), np.int64))]
        return img + 0.04 * _fbm(rng, 8, 3)[..., None]
    img = np.tile(pal[0], (TILE, TILE, 1)).astype(np.float32)
    for _ in range(int(rng.integers(20, 120))):
        c = (int(rng.integers(TILE)), int(rng.integers(TILE)))
        r = int(rng.integers(4, 60))
        col = pal[int(rng.integers(1, 4))].tolist()
        for dx in (-TILE, 0, TILE):
            for dy in (-TILE, 0, TILE):
                cv2.circle(img, (c[0] + dx, c[1] + dy), r, col, -1)
    return img


#: How many variants of the random texture exist.
RANDOM_VARIANTS = 16


@cache
def texture(kind: str, variant: int = 0) -> np.ndarray:
    """A seamless ``(512, 512, 3)`` float32 RGB texture in [0, 1], mean about 0.8, untinted."""
    rng = np.random.default_rng([tx.hash_name(kind), variant, 7])
    if kind == "wood":
        t = _planks(rng, int(rng.choice([32, 42, 64])), int(rng.choice([256, 384, 512])), 0.55, 1.0)
    elif kind == "laminate":
        t = _planks(rng, int(rng.choice([48, 64])), 512, 0.7, 0.5)
    elif kind == "terrazzo":
        return np.clip(_terrazzo(rng), 0, 1).astype(np.float32)
    elif kind == "vinyl":
        t = _vinyl(rng, checker=variant % 2 == 1)
    elif kind == "carpet":
        t = _carpet(rng, tiles=variant % 2 == 1)
    elif kind == "tile":
        t = _ceramic(rng, int(rng.choice([2, 4, 8])), float(rng.uniform(0.5, 0.75)))
    elif kind == "wall-tile":
        t = _ceramic(rng, 16, 0.95)
    elif kind == "products":
        return np.clip(_products(rng), 0, 1).astype(np.float32)
    elif kind == "random":
        return np.clip(_random(rng), 0, 1).astype(np.float32)
    elif kind == "sign":
        return _sign(rng)
    elif kind == "brick":
        t = _brick(rng)
    elif kind == "panel":
        t = _panel(rng)
    elif kind in ("concrete", "epoxy", "checker-plate", "blocks", "painted", "cladding", "grating"):
        t = tx.texture(kind if kind != "painted" else "painted", variant % 2) / 0.8 * 0.8
    else:
        raise KeyError(kind)
    return np.clip(np.repeat(np.asarray(t, np.float32)[..., None], 3, axis=2), 0, 1)


@cache
def texture_mips(kind: str, variant: int = 0, levels: int = 4) -> tuple[np.ndarray, ...]:
    """:func:`texture` low-passed for ``2**level`` minification (same size, seamless).

    A grey texture (three equal channels) is blurred in one channel, a third of the work, and
    repeated to three: looking it up in one channel instead would be faster still, but OpenCV's
    one-channel ``remap`` rounds a few values differently, which changes a few output pixels.
    """
    import cv2

    t = texture(kind, variant)
    grey = bool((t[..., 0] == t[..., 1]).all() and (t[..., 0] == t[..., 2]).all())
    src = t[..., :1] if grey else t
    out = [t]
    for lv in range(1, levels):
        sigma = 0.6 * 2 ** lv
        pad = int(3 * sigma) + 1
        big = cv2.GaussianBlur(np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="wrap"), (0, 0), sigma)
        big = big[pad:-pad, pad:-pad].reshape(t.shape[0], t.shape[1], -1)
        out.append(np.ascontiguousarray(np.repeat(big, 3, axis=2) if grey else big))
    return tuple(out)


def recolour(colour: list[float] | np.ndarray, rng: np.random.Generator, amount: float = 0.12) -> np.ndarray:
    """A base colour varied in brightness and hue (float32 RGB)."""
    c = np.asarray(colour, np.float32) * float(rng.uniform(1 - amount, 1 + amount))
    c = c + rng.normal(0, amount * 0.25, 3).astype(np.float32)
    return np.clip(c, 0.02, 1.0)
