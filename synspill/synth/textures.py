"""Texture banks for the procedural renderer: made once per process, reused with crops/tints.

Everything here is deterministic (fixed seeds), so a rendered image depends only on its
own spec seed. Textures are seamless (periodic) grey-level tiles in [0, 1] so that the
renderer can map them with ``cv2.BORDER_WRAP`` and colour them per image.
"""

from __future__ import annotations

from functools import cache

import numpy as np

TILE = 512


def periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth periodic value noise.

    Args:
        rng: Random generator.
        size: Output side in pixels (square).
        cells: Number of random lattice cells across the tile (frequency).

    Returns:
        ``(size, size)`` float32 in about [0, 1]; the tile wraps seamlessly.
    """
    import cv2

    cells = max(1, cells)
    grid = rng.random((cells, cells), dtype=np.float32)
    pad = np.pad(grid, 2, mode="wrap")
    cell = size / cells
    big = cv2.resize(pad, (int(round((cells + 4) * cell)),) * 2, interpolation=cv2.INTER_CUBIC)
    o = int(round(2 * cell))
    return big[o:o + size, o:o + size].copy()


def fbm(rng: np.random.Generator, size: int, base_cells: int, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Fractal (multi-octave) periodic noise, normalised to zero mean and unit std."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for o in range(octaves):
        cells = base_cells * 2 ** o
        if cells > size // 2:
            break
        out += amp * (periodic_noise(rng, size, cells) - 0.5)
        amp *= gain
    out -= out.mean()
    return out / (out.std() + 1e-6)


def _wrap_lines(img: np.ndarray, pts: np.ndarray, value: float, thickness: int) -> None:
    """Draw a polyline and its wrapped copies so the tile stays seamless."""
    import cv2

    s = img.shape[0]
    for dx in (-s, 0, s):
        for dy in (-s, 0, s):
            cv2.polylines(img, [(pts + (dx, dy)).astype(np.int32)], False, value, thickness)


def _cracks(rng: np.random.Generator, img: np.ndarray, n: int, depth: float) -> None:
    for _ in range(n):
        p = rng.random(2) * TILE
        ang = rng.uniform(0, 2 * np.pi)
        pts = [p.copy()]
        for _ in range(rng.integers(8, 30)):
            ang += rng.normal(0, 0.5)
            p = p + rng.uniform(4, 14) * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p.copy())
        layer = np.zeros_like(img)
        _wrap_lines(layer, np.array(pts), 1.0, 1)
        img -= depth * layer


def _concrete(rng: np.random.Generator) -> np.ndarray:
    t = 0.72 + 0.07 * fbm(rng, TILE, 2, 4, 0.6) + 0.035 * fbm(rng, TILE, 32, 3)
    t += 0.05 * (rng.random((TILE, TILE), dtype=np.float32) > 0.985)  # aggregate specks
    t -= 0.04 * (rng.random((TILE, TILE), dtype=np.float32) > 0.99)
    _cracks(rng, t, int(rng.integers(0, 4)), 0.18)
    return t


def _epoxy(rng: np.random.Generator) -> np.ndarray:
    t = 0.82 + 0.03 * fbm(rng, TILE, 2, 3) + 0.01 * fbm(rng, TILE, 64, 2)
    for _ in range(12):  # scratches and scuffs
        p = rng.random(2) * TILE
        d = rng.normal(0, 1, 2)
        d /= np.linalg.norm(d) + 1e-6
        _wrap_lines(t, np.array([p, p + d * rng.uniform(10, 80)]), 0.9, 1)
    return t


def _tiles(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    cell = TILE // n
    t = 0.78 + 0.02 * fbm(rng, TILE, 16, 3)
    shade = rng.normal(0, 0.03, (n, n)).astype(np.float32)
    t += np.kron(shade, np.ones((cell, cell), np.float32))
    g = max(2, cell // 28)
    for i in range(n):
        t[i * cell:i * cell + g, :] = 0.45
        t[:, i * cell:i * cell + g] = 0.45
    return t


def _grating(rng: np.random.Generator) -> np.ndarray:
    t = np.full((TILE, TILE), 0.12, np.float32)
    pitch_x, pitch_y = 16, 64
    for x in range(0, TILE, pitch_x):
        t[:, x:x + 4] = 0.78
    for y in range(0, TILE, pitch_y):
        t[y:y + 5, :] = 0.7
    t += 0.04 * fbm(rng, TILE, 8, 3)
    return t


def _checker_plate(rng: np.random.Generator) -> np.ndarray:
    t = 0.6 + 0.03 * fbm(rng, TILE, 4, 3)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    p = 32.0
    a = np.abs(((xx + yy) % p) - p / 2) < 2
    b = np.abs(((xx - yy) % p) - p / 2) < 2
    q = ((xx // (p / 2) + yy // (p / 2)) % 2).astype(bool)
    t += 0.12 * ((a & q) | (b & ~q))
    return t


def _blocks(rng: np.random.Generator) -> np.ndarray:
    t = 0.78 + 0.04 * fbm(rng, TILE, 8, 4)
    rows, cols = 8, 4
    bh, bw = TILE // rows, TILE // cols
    for r in range(rows):
        t[r * bh:r * bh + 3, :] = 0.55
        off = (bw // 2) * (r % 2)
        for c in range(cols + 1):
            x = (c * bw + off) % TILE
            t[r * bh:(r + 1) * bh, x:x + 3] = 0.55
    t += np.kron(rng.normal(0, 0.02, (rows, cols)).astype(np.float32), np.ones((bh, bw), np.float32))
    return t


def _painted(rng: np.random.Generator) -> np.ndarray:
    import cv2

    t = 0.8 + 0.03 * fbm(rng, TILE, 2, 4)
    streaks = fbm(rng, TILE, 16, 2)
    streaks = cv2.resize(streaks[:, :64], (TILE, TILE), interpolation=cv2.INTER_LINEAR)  # vertical grime
    return t - 0.03 * np.clip(streaks, 0, None)


def _cladding(rng: np.random.Generator) -> np.ndarray:
    x = np.arange(TILE, dtype=np.float32)
    prof = 0.72 + 0.12 * np.sin(2 * np.pi * x / 32) + 0.05 * np.sin(2 * np.pi * x / 16)
    t = np.tile(prof, (TILE, 1)) + 0.02 * fbm(rng, TILE, 8, 3)
    return t


FLOORS = ("concrete", "epoxy", "tiles", "grating", "checker-plate")
WALLS = ("blocks", "painted", "cladding", "tiles")


@cache
def texture(kind: str, variant: int = 0) -> np.ndarray:
    """A seamless ``(512, 512)`` float32 grey texture in [0, 1] (cached per process)."""
    rng = np.random.default_rng([hash_name(kind), variant])
    fn = {"concrete": _concrete, "epoxy": _epoxy, "tiles": _tiles, "grating": _grating,
          "checker-plate": _checker_plate, "blocks": _blocks, "painted": _painted, "cladding": _cladding}[kind]
    return np.clip(fn(rng), 0.0, 1.0).astype(np.float32)


@cache
def mip(kind: str, variant: int, level: int) -> np.ndarray:
    """:func:`texture` low-passed for ``2**level`` minification (wrap-around blur keeps it seamless)."""
    import cv2

    t = texture(kind, variant)
    if level <= 0:
        return t
    sigma = 0.6 * 2 ** level
    pad = int(4 * sigma) + 1
    big = cv2.GaussianBlur(np.pad(t, pad, mode="wrap"), (0, 0), sigma)
    return np.ascontiguousarray(big[pad:-pad, pad:-pad])


def hash_name(name: str) -> int:
    """A stable (non-salted) integer for a string."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") ^ len(name)


@cache
def shape_noise(variant: int) -> np.ndarray:
    """``(256, 256)`` smooth periodic noise in [0, 1] used to roughen spill outlines."""
    rng = np.random.default_rng([77, variant])
    n = fbm(rng, 256, 4, 4, 0.55)
    return ((n - n.min()) / (n.max() - n.min())).astype(np.float32)


@cache
def sensor_noise(level: int) -> np.ndarray:
    """``(1152, 1152, 3)`` int16 Gaussian sensor noise (luma + weaker chroma), sigma by level."""
    sigma = (1.5, 3.0, 5.0)[level]
    rng = np.random.default_rng([99, level])
    luma = rng.normal(0, sigma, (1152, 1152, 1)).astype(np.float32)
    chroma = rng.normal(0, sigma * 0.35, (1152, 1152, 3)).astype(np.float32)
    return np.round(luma + chroma).astype(np.int16)
