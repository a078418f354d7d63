"""Liquids as physics: spills composited into a scene by their optics, not painted as blobs.

A spill is a thickness field ``h(x, z)`` (millimetres) on a horizontal surface, shaped in
world metres so that perspective foreshortens it like the floor. Each pixel it covers is

    out = (1 - F) * body + F * mirror + highlights

- ``F``: Schlick's Fresnel term for the liquid's refractive index at the pixel's real
  viewing angle (CCTV looks at floors at grazing angles, where the mirror term dominates);
- ``mirror``: what stands above the spill, mirrored: the G-buffer's reflected ray in
  ray-cast rooms (:mod:`synspill.synth.room`), else the image above the spill flipped about
  its far edge (photos, SDXL scenes, plant rooms); the surface normal, tilted by the
  meniscus and ripples, shifts the lookup so edges bend the reflection;
- ``body``: the surface seen through the liquid: porous surfaces darken and saturate
  with their texture kept, the liquid absorbs per colour channel with depth (Beer-Lambert:
  tea, coffee, juice, coolant, oil), milky and powdery liquids scatter their own colour;
- ``highlights``: the lights' specular glints on the meniscus rim, ripples and droplets;
  oil films show thin-film interference colours.

Blending is randomised per spill (Dwibedi et al. 2017): physical with a soft edge, hard
edge, blurred edge, or Poisson (gradient-domain) blending. The label is always the exact
set of pixels the liquid covers (visible, not hidden by objects), and the box is tight
around it and inside the requested box.

Coordinates: boxes are absolute ``xyxy`` pixels. Images are float32 RGB in [0, 1]
(display values) unless said otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from synspill.synth import ablated
from synspill.synth import textures as tx
from synspill.synth.vec import dot3, mean3, norm3


@dataclass(frozen=True)
class Liquid:
    """Optics of one liquid (or solid residue).

    Attributes:
        name: What it is.
        absorb: Per-channel absorption per millimetre (Beer-Lambert; 0 = clear).
        scatter: Per-millimetre scattering (milk, paint, powder: the liquid's own colour shows).
        colour: Colour of scattered light.
        ior: Refractive index (Fresnel); 0 for a matte residue with no mirror.
        depth: Thickness range at the centre, mm.
        wets: How strongly it darkens a porous surface (0..1).
        film: Thin-film interference colours (oil on water, fuel).
        shapes: Shape kinds it takes.
    """

    name: str
    absorb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scatter: float = 0.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ior: float = 1.33
    depth: tuple[float, float] = (0.5, 3.0)
    wets: float = 1.0
    film: bool = False
    shapes: tuple[str, ...] = ("puddle",)


LIQUIDS: dict[str, Liquid] = {
    "water": Liquid("water", (0.002, 0.001, 0.0005), 0.0, depth=(0.3, 3.0),
                    shapes=("puddle", "puddle", "splash", "drips", "runs", "film", "droplets", "sheet")),
    "dirty-water": Liquid("dirty-water", (0.05, 0.06, 0.08), 0.03, (0.45, 0.42, 0.36), depth=(0.5, 3.0), shapes=("puddle", "runs", "splash")),
    "tea": Liquid("tea", (0.25, 0.5, 0.9), 0.0, depth=(0.5, 2.5), shapes=("puddle", "splash", "drips")),
    "coffee": Liquid("coffee", (0.9, 1.3, 1.8), 0.05, (0.25, 0.15, 0.08), depth=(0.5, 2.5), shapes=("puddle", "splash", "drips")),
    "juice": Liquid("juice", (0.05, 0.25, 1.2), 0.2, (0.95, 0.6, 0.1), depth=(0.5, 2.5), shapes=("puddle", "splash")),
    "soda": Liquid("soda", (0.3, 0.6, 1.0), 0.0, depth=(0.4, 2.0), shapes=("puddle", "splash", "drips")),
    "milk": Liquid("milk", (0.0, 0.0, 0.02), 2.5, (0.95, 0.94, 0.9), depth=(0.4, 2.0), wets=0.3, shapes=("puddle", "splash")),
    "oil": Liquid("oil", (2.5, 3.0, 3.6), 0.05, (0.08, 0.05, 0.03), ior=1.47, depth=(0.5, 3.0), wets=0.8, film=True,
                  shapes=("puddle", "runs", "drips", "splash")),
    "fuel": Liquid("fuel", (0.05, 0.12, 0.3), 0.0, ior=1.44, depth=(0.2, 1.0), wets=0.9, film=True, shapes=("film", "puddle", "runs")),
    "coolant-green": Liquid("coolant-green", (0.6, 0.08, 0.5), 0.02, (0.2, 0.8, 0.3), ior=1.43, depth=(0.5, 2.5), shapes=("puddle", "runs", "drips")),
    "coolant-pink": Liquid("coolant-pink", (0.1, 0.6, 0.3), 0.05, (0.9, 0.35, 0.6), ior=1.43, depth=(0.5, 2.5), shapes=("puddle", "runs", "drips")),
    "coolant-orange": Liquid("coolant-orange", (0.05, 0.35, 0.9), 0.05, (0.95, 0.5, 0.1), ior=1.43, depth=(0.5, 2.5), shapes=("puddle", "runs")),
    "coolant-blue": Liquid("coolant-blue", (0.7, 0.3, 0.05), 0.02, (0.2, 0.6, 0.9), ior=1.43, depth=(0.5, 2.5), shapes=("puddle", "runs")),
    "chem-yellow": Liquid("chem-yellow", (0.02, 0.1, 1.0), 0.3, (0.9, 0.85, 0.2), ior=1.4, depth=(0.3, 2.0), shapes=("puddle", "stain", "runs")),
    "chem-green": Liquid("chem-green", (0.8, 0.1, 0.6), 0.3, (0.3, 0.7, 0.35), ior=1.4, depth=(0.3, 2.0), shapes=("puddle", "stain")),
    "chem-blue": Liquid("chem-blue", (1.0, 0.4, 0.05), 0.3, (0.25, 0.45, 0.85), ior=1.4, depth=(0.3, 2.0), shapes=("puddle", "stain")),
    "chem-white": Liquid("chem-white", (0.0, 0.0, 0.0), 1.5, (0.92, 0.92, 0.88), ior=0.0, depth=(0.2, 1.0), wets=0.2, shapes=("stain", "puddle")),
    "chem-purple": Liquid("chem-purple", (0.3, 1.0, 0.2), 0.3, (0.7, 0.4, 0.75), ior=1.4, depth=(0.3, 2.0), shapes=("puddle", "stain")),
    "stain-brown": Liquid("stain-brown", (0.6, 0.9, 1.3), 0.3, (0.35, 0.27, 0.18), ior=0.0, depth=(0.3, 1.0), wets=0.4, shapes=("stain", "stain", "puddle")),
    "stain-grey": Liquid("stain-grey", (0.8, 0.8, 0.8), 0.3, (0.3, 0.3, 0.3), ior=0.0, depth=(0.3, 1.0), wets=0.3, shapes=("stain", "puddle")),
    "rust": Liquid("rust", (0.3, 1.0, 2.0), 1.5, (0.55, 0.27, 0.1), ior=0.0, depth=(0.3, 1.2), wets=0.2, shapes=("streaks", "stain", "puddle")),
    "grease": Liquid("grease", (2.0, 2.4, 3.0), 1.0, (0.12, 0.1, 0.07), ior=1.45, depth=(0.8, 3.0), wets=0.5, shapes=("smear", "smear", "puddle")),
    "powder-white": Liquid("powder-white", (0.0, 0.0, 0.0), 6.0, (0.92, 0.92, 0.9), ior=0.0, depth=(0.3, 2.0), wets=0.0, shapes=("scatter",)),
    "powder-beige": Liquid("powder-beige", (0.0, 0.0, 0.0), 6.0, (0.8, 0.74, 0.62), ior=0.0, depth=(0.3, 2.0), wets=0.0, shapes=("scatter",)),
    "powder-grey": Liquid("powder-grey", (0.0, 0.0, 0.0), 6.0, (0.66, 0.66, 0.68), ior=0.0, depth=(0.3, 2.0), wets=0.0, shapes=("scatter",)),
}

#: Taxonomy class id -> (liquid, weight). Drinks spilt in shops, canteens and offices are
#: water-like liquids on the floor: labelled ``water-leak`` (a wet patch that is not oil).
CLASS_LIQUIDS: dict[int, tuple[tuple[str, float], ...]] = {
    1: (("oil", 0.75), ("fuel", 0.25)),
    2: (("water", 0.6), ("dirty-water", 0.12), ("tea", 0.06), ("coffee", 0.07), ("juice", 0.05), ("soda", 0.05), ("milk", 0.05)),
    3: (("chem-yellow", 0.25), ("chem-green", 0.2), ("chem-blue", 0.2), ("chem-white", 0.2), ("chem-purple", 0.15)),
    4: (("stain-brown", 0.6), ("stain-grey", 0.4)),
    5: (("coolant-green", 0.35), ("coolant-pink", 0.25), ("coolant-orange", 0.2), ("coolant-blue", 0.2)),
    6: (("rust", 1.0),),
    7: (("grease", 1.0),),
    8: (("powder-white", 0.4), ("powder-beige", 0.35), ("powder-grey", 0.25)),
}

BLEND_MODES = ("physical", "physical", "physical", "hard", "blur", "poisson")


def pick_liquid(class_id: int, rng: np.random.Generator) -> Liquid:
    """A liquid of the class, drawn by its weights."""
    opts = CLASS_LIQUIDS.get(class_id, CLASS_LIQUIDS[2])
    w = np.array([p for _, p in opts], np.float64)
    return LIQUIDS[opts[int(rng.choice(len(opts), p=w / w.sum()))][0]]


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(a + (b - a) * rng.random())


# ---- shapes -------------------------------------------------------------------------------------
def thickness_field(kind: str, gw: int, gh: int, rng: np.random.Generator) -> np.ndarray:
    """A liquid's relative thickness on a ``(gh, gw)`` grid over its footprint: 0 outside,
    rising over a meniscus to about 1 in the body (``float32``)."""
    import cv2

    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    xs = (xs + 0.5) / gw
    ys = (ys + 0.5) / gh
    noise = tx.shape_noise(int(rng.integers(4)))
    oy, ox = int(rng.integers(0, 128)), int(rng.integers(0, 128))
    nz = cv2.resize(noise[oy:oy + 128, ox:ox + 128], (gw, gh))
    ang = _u(rng, 0, 2 * math.pi)
    d = np.array([math.cos(ang), math.sin(ang)], np.float32)
    field = np.zeros((gh, gw), np.float32)
    if kind in ("puddle", "runs", "drips", "stain", "splash", "film"):
        n = int(rng.integers(3, 10))
        p = np.array([_u(rng, 0.35, 0.65), _u(rng, 0.35, 0.65)], np.float32) - d * 0.12
        r = _u(rng, 0.14, 0.26)
        for _ in range(n):
            field += (r * r) / ((xs - p[0]) ** 2 + (ys - p[1]) ** 2 + 1e-3)
            step = d + rng.normal(0, 0.7, 2).astype(np.float32)
            p = np.clip(p + step / (np.linalg.norm(step) + 1e-6) * r * _u(rng, 0.5, 1.3), 0.18, 0.82)
            r *= _u(rng, 0.65, 1.05)
        field = field / (field.max() + 1e-6)
        rough = {"stain": 0.9, "film": 0.8}.get(kind, 0.55)
        field = field * 1.3 + (nz - 0.5) * rough
        thr = np.quantile(field, 1 - _u(rng, 0.3, 0.6))
        inside = field > thr
        if kind in ("runs", "drips"):
            thin = np.zeros((gh, gw), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                q = np.array([_u(rng, 0.3, 0.7) * gw, _u(rng, 0.3, 0.7) * gh])
                a = ang + rng.normal(0, 0.5)
                pts = [q.copy()]
                for _ in range(int(rng.integers(4, 12))):
                    a += rng.normal(0, 0.35)
                    q = q + np.array([math.cos(a), math.sin(a)]) * gw * 0.06
                    pts.append(q.copy())
                cv2.polylines(thin, [np.array(pts, np.int32)], False, 1, max(1, gw // 30))
            inside |= thin > 0
        if kind in ("drips", "splash"):  # satellite droplets thrown around the main body
            k = int(rng.integers(4, 20))
            for _ in range(k):
                rad = _u(rng, 0.3, 0.55)
                th = ang + rng.normal(0, 1.2) if kind == "splash" else _u(rng, 0, 2 * math.pi)
                c = (int((0.5 + rad * math.cos(th) * _u(rng, 0.5, 1.0)) * gw), int((0.5 + rad * math.sin(th) * _u(rng, 0.5, 1.0)) * gh))
                rr = max(1, int(_u(rng, 0.008, 0.035) * gw))
                cv2.ellipse(inside.view(np.uint8), c, (rr, rr), 0, 0, 360, 1, -1)
        body = inside.astype(np.uint8)
        dist = cv2.distanceTransform(body, cv2.DIST_L2, 3)
        lam = max(1.0, 0.04 * min(gw, gh))
        h = 1.0 - np.exp(-dist / lam)  # meniscus: rises over ~lam cells from the edge
        if kind == "stain":  # dried: a darker tide mark at the rim, thin inside
            h = 0.35 + 0.65 * np.exp(-dist / max(1.0, 0.02 * min(gw, gh)))
            h *= body
        if kind == "film":
            h *= 0.5
        field = h.astype(np.float32)
    elif kind == "streaks":
        cols = cv2.resize(noise[:8, int(rng.integers(0, 200)):][:, :48], (gw, gh), interpolation=cv2.INTER_LINEAR)
        top = np.clip(1.2 - ys * _u(rng, 0.6, 1.1), 0, 1)
        f = cols * top + (nz - 0.5) * 0.3
        thr = np.quantile(f, 1 - _u(rng, 0.3, 0.55))
        field = np.clip((f - thr) * 4, 0, 1).astype(np.float32)
    elif kind == "smear":
        canvas = np.zeros((gh, gw), np.float32)
        for _ in range(int(rng.integers(2, 6))):
            cen = np.array([_u(rng, 0.25, 0.75) * gw, _u(rng, 0.25, 0.75) * gh])
            half = d * np.array([gw, gh]) * _u(rng, 0.15, 0.4)
            t = max(2, int(_u(rng, 0.08, 0.2) * min(gw, gh)))
            p1, p2 = (cen - half).astype(int), (cen + half).astype(int)
            cv2.line(canvas, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 1.0, t)
        blurred = cv2.GaussianBlur(canvas, (0, 0), max(1.0, gw / 40))
        f = blurred + (nz - 0.5) * 0.6
        field = np.clip((f - 0.45) * 3, 0, 1).astype(np.float32)
    elif kind == "droplets":  # drops beaded on a sealed surface: spherical caps, many sizes
        field = np.zeros((gh, gw), np.float32)
        n = int(rng.integers(40, 400))
        px_, py_ = rng.random(n), rng.random(n)
        if rng.random() < 0.5:  # clustered around a few centres
            k = int(rng.integers(1, 5))
            cen = rng.random((k, 2))
            which = rng.integers(0, k, n)
            px_ = np.clip(cen[which, 0] + rng.normal(0, 0.18, n), 0, 1)
            py_ = np.clip(cen[which, 1] + rng.normal(0, 0.18, n), 0, 1)
        radii = np.exp(rng.uniform(math.log(0.004), math.log(0.05), n)) * max(gw, gh)
        for x, y, r in zip(px_ * gw, py_ * gh, radii, strict=True):
            r = max(1.0, float(r))
            x0, x1 = max(0, int(x - r) - 1), min(gw, int(x + r) + 2)
            y0, y1 = max(0, int(y - r) - 1), min(gh, int(y + r) + 2)
            if x1 <= x0 or y1 <= y0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            d2 = ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (r * r)
            cap = np.sqrt(np.clip(1 - d2, 0, 1))
            field[y0:y1, x0:x1] = np.maximum(field[y0:y1, x0:x1], cap)
    elif kind == "sheet":  # a wet sheet over most of the area (mopped, rained in), dry islands left
        f = nz + (cv2.resize(tx.shape_noise(int(rng.integers(4)))[:32, :32], (gw, gh)) - 0.5) * 0.8
        thr = np.quantile(f, _u(rng, 0.05, 0.3))
        body = (f > thr).astype(np.uint8)
        dist = cv2.distanceTransform(body, cv2.DIST_L2, 3)
        field = ((1.0 - np.exp(-dist / max(1.0, 0.02 * min(gw, gh)))) * _u(rng, 0.3, 0.7)).astype(np.float32)
    else:  # scatter: a powder heap, grainy fringe, loose particles
        cx, cy = _u(rng, 0.4, 0.6), _u(rng, 0.4, 0.6)
        dist = np.sqrt(((xs - cx) / _u(rng, 0.25, 0.4)) ** 2 + ((ys - cy) / _u(rng, 0.25, 0.4)) ** 2)
        grain = rng.random((gh, gw), dtype=np.float32)
        f = 1.0 - dist * 0.6 + (nz - 0.5) * 0.8 + (grain - 0.5) * 0.35
        thr = np.quantile(f, 1 - _u(rng, 0.3, 0.55))
        field = np.clip((f - thr) * 3, 0, 1)
        loose = (grain > 0.985 - 0.02 * np.clip(1 - dist, 0, 1)).astype(np.float32)
        field = np.maximum(field, loose * 0.6).astype(np.float32)
    # keep clear of the footprint's edge: an elliptical window roughened by noise
    n2 = cv2.resize(noise[128:192, 128:192], (gw, gh))
    r = np.sqrt(((xs - 0.5) / 0.5) ** 2 + ((ys - 0.5) / 0.5) ** 2) + (n2 - 0.5) * 0.4
    return (field * np.clip((0.97 - r) * 6, 0, 1)).astype(np.float32)


# ---- the scene as the compositor sees it ---------------------------------------------------------
@dataclass
class Surface:
    """The G-buffer of one spill's box region (all arrays ``(h, w)`` or ``(h, w, 3)`` of the crop).

    Attributes:
        u, v: World coordinates (metres) on the supporting plane of every pixel.
        on: Where the pixel shows that plane (not an object in front of it).
        cosv: Cosine between the view ray and the plane's normal.
        mirror: What a mirror on the plane shows (display-linear), or None: estimate it.
        light: Irradiance of a white surface (display-linear).
        porous: How much the dry surface darkens when wet.
        view: Unit view rays ``(h, w, 3)`` (world), for highlights; None on photos.
        points: World points ``(h, w, 3)`` for highlights; None on photos.
        lights: ``(positions (L, 3), colours (L, 3))`` for highlights.
    """

    u: np.ndarray
    v: np.ndarray
    on: np.ndarray
    cosv: np.ndarray
    mirror: np.ndarray | None
    light: np.ndarray
    porous: np.ndarray | float
    view: np.ndarray | None = None
    points: np.ndarray | None = None
    lights: tuple[np.ndarray, np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def to_linear(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), 2.2)


@cache
def _linear_lut() -> np.ndarray:
    """:func:`to_linear` of the 256 values of a uint8 channel (``cv2.LUT`` table)."""
    return to_linear(np.arange(256, dtype=np.float32) / np.float32(255.0))


def to_display(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), 1 / 2.2)


def _schlick(cosv: np.ndarray, ior: float) -> np.ndarray:
    f0 = ((ior - 1) / (ior + 1)) ** 2
    return (f0 + (1 - f0) * (1 - np.clip(cosv, 0, 1)) ** 5).astype(np.float32)


def _grad(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    return cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / 8.0, cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / 8.0


def shade_liquid(bg: np.ndarray, h: np.ndarray, liquid: Liquid, surf: Surface, rng: np.random.Generator,
                 depth_mm: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The liquid's colour over ``bg`` (display RGB ``(h, w, 3)``) where its thickness is ``h`` in [0, 1].

    Returns:
        ``(colour, params)``: display RGB of the pixels as if fully covered; blend by coverage.
    """
    import cv2

    lin = to_linear(bg)
    hh = h[..., None]
    mm = hh * depth_mm
    params: dict[str, Any] = {"liquid": liquid.name, "depth_mm": round(depth_mm, 2)}
    # the surface underneath, wet: porous ones darken and saturate, texture kept
    por = np.asarray(surf.porous, np.float32)
    por = por[..., None] if por.ndim == 2 else por
    dark = 1.0 - liquid.wets * (0.25 + 0.45 * por) * np.clip(hh * 3, 0, 1)
    grey = mean3(lin, keepdims=True)
    wet = np.clip(grey + (lin - grey) * (1 + 0.5 * liquid.wets * por), 0, None) * dark
    # through the liquid and back: absorption by colour, scattering of its own colour
    path = 2.0 / np.clip(surf.cosv, 0.15, 1)[..., None]
    trans = np.exp(-np.asarray(liquid.absorb, np.float32) * mm * path)
    opac = 1.0 - np.exp(-liquid.scatter * mm)
    own = np.asarray(liquid.colour, np.float32) * surf.light * _u(rng, 0.85, 1.1)
    body = wet * trans * (1 - opac) + to_linear(to_display(own)) * opac
    if liquid.ior <= 0:  # a matte residue: no mirror, no glints
        return to_display(body), params
    # normal: up, tilted by the meniscus slope and a little ripple
    gx, gy = _grad(h)
    slope = _u(rng, 2.0, 6.0)
    ripple = cv2.GaussianBlur(rng.normal(0, 1, h.shape).astype(np.float32), (0, 0), _u(rng, 0.8, 2.5)) * _u(rng, 0.0, 0.06)
    nx, ny = -gx * slope + ripple, -gy * slope + ripple
    tilt = np.sqrt(nx * nx + ny * ny)
    cosv = np.clip(surf.cosv * (1 - 0.5 * tilt) + 0.0, 0.02, 1)
    fres = _schlick(cosv, liquid.ior)[..., None]
    # the mirror image, shifted by the normal (edges bend it)
    hgt, wdt = h.shape
    if surf.mirror is not None:
        shift = _u(rng, 3.0, 10.0)
        mx = (np.arange(wdt, dtype=np.float32)[None, :] + nx * shift).astype(np.float32)
        my = (np.arange(hgt, dtype=np.float32)[:, None] + ny * shift).astype(np.float32)
        mirror = cv2.remap(surf.mirror.astype(np.float32), np.broadcast_to(mx, h.shape).copy(),
                           np.broadcast_to(my, h.shape).copy(), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    else:
        mirror = lin
    mirror = np.clip(mirror, 0, None)
    if ablated("reflection"):
        mirror = body
    out = body * (1 - fres) + mirror * fres * _u(rng, 0.8, 1.2)
    # glints: the lights' specular highlights on the tilted surface
    if surf.points is not None and surf.view is not None and surf.lights is not None and len(surf.lights[0]):
        pos, col = surf.lights
        nrm = np.stack([nx, np.ones_like(nx), ny], axis=-1)
        nrm /= norm3(nrm, keepdims=True)
        shin = _u(rng, 80, 400)
        spec = np.zeros_like(out)
        for lp, lc in zip(pos, col, strict=True):
            ldir = lp[None, None, :] - surf.points
            ldir /= norm3(ldir, keepdims=True) + 1e-6
            half = ldir - surf.view
            half /= norm3(half, keepdims=True) + 1e-6
            nh = np.clip(dot3(nrm, half), 0, 1)
            spec += (nh ** shin)[..., None] * lc
        out = out + spec * fres * _u(rng, 0.5, 2.0)
    else:  # photos: glints where the rim faces up-screen (lights are usually above)
        rim = np.clip(-gy * slope, 0, None) ** 2
        out = out + (rim * _u(rng, 0.0, 1.5))[..., None] * surf.light
    if liquid.film:  # thin-film interference: faint rainbow bands where the film thins out
        var = cv2.resize(tx.shape_noise(int(rng.integers(4)))[:64, :64], (wdt, hgt))
        phase = var * _u(rng, 8, 20) + h * _u(rng, 4, 12)
        rainbow = 0.5 + 0.5 * np.stack([np.cos(phase), np.cos(phase + 2.09), np.cos(phase + 4.19)], axis=-1)
        band = np.clip(hh * (1 - hh) * 4, 0, 1)
        out = out + (rainbow - 0.5) * band * _u(rng, 0.05, 0.2) * surf.light
        params["film"] = True
    params["fresnel_mean"] = round(float(fres.mean()), 3)
    return to_display(out), params


# ---- compositing -------------------------------------------------------------------------------
def composite(img: np.ndarray, box: tuple[int, int, int, int], surf: Surface, class_id: int, seed: int,
              opacity: float = 1.0, feather: float = 0.0, scale_px: float | None = None,
              noise_sigma: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Pour one spill into ``img`` in place (uint8 RGB ``(H, W, 3)``) inside ``box``.

    Args:
        img: The scene; modified in place inside the box.
        box: Integer ``(x1, y1, x2, y2)`` pixel box (already clipped to the image).
        surf: The supporting surface over the box (see :class:`Surface`).
        class_id: Taxonomy id: picks the liquid.
        seed: Per-spill seed.
        opacity: Scales how strongly the spill shows (the paper's soft-mask opacity / 0.75).
        feather: Edge softness in pixels (the paper's 50 px is for 1024 px images).
        scale_px: Pixels per metre at the box (for noise grain); None: from ``surf``.
        noise_sigma: The scene's sensor noise (0-1 units); None: estimated from the crop.

    Returns:
        ``(mask, params)``: the visible spill pixels (bool, full image size) and what was drawn.
    """
    import cv2

    x1, y1, x2, y2 = box
    H, W = img.shape[:2]
    mask_full = np.zeros((H, W), bool)
    rng = np.random.default_rng(seed)
    liquid = pick_liquid(class_id, rng)
    kind = str(rng.choice(liquid.shapes))
    params: dict[str, Any] = {"shape": kind, "seed": seed}
    on = surf.on
    if on.sum() < 4:
        params["skipped"] = "no supporting surface visible in the box"
        return mask_full, params
    # the shape lives on the plane: map the footprint's world extent onto a grid
    u, v = surf.u, surf.v
    uu, vv = u[on], v[on]
    u0, u1 = np.quantile(uu, [0.02, 0.98])
    v0, v1 = np.quantile(vv, [0.02, 0.98])
    if u1 - u0 < 1e-4 or v1 - v0 < 1e-4:
        params["skipped"] = "degenerate footprint"
        return mask_full, params
    g = 256 if kind == "droplets" else 128
    ar = (u1 - u0) / (v1 - v0)
    gw, gh = (g, max(16, int(g / ar))) if ar >= 1 else (max(16, int(g * ar)), g)
    field = thickness_field(kind, gw, gh, rng)
    mx = ((u - u0) / (u1 - u0) * gw - 0.5).astype(np.float32)
    my = ((v - v0) / (v1 - v0) * gh - 0.5).astype(np.float32)
    h = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    h = np.where(on, h, 0).astype(np.float32)
    cover = np.clip(h * 6, 0, 1)  # coverage rises within the meniscus
    vis = cover >= 0.5
    if vis.sum() < 2:
        params["skipped"] = "spill too small to see"
        return mask_full, params
    bg = img[y1:y2, x1:x2].astype(np.float32) / 255.0
    depth = _u(rng, *liquid.depth)
    colour, lp = shade_liquid(bg, h, liquid, surf, rng, depth)
    params.update(lp)
    strength = float(np.clip(opacity, 0.05, 1.0))
    mode = str(rng.choice(BLEND_MODES))
    params["blend"] = mode
    alpha: np.ndarray
    if mode == "hard":
        alpha = vis.astype(np.float32)
    elif mode == "blur":
        alpha = cv2.GaussianBlur(cover, (0, 0), _u(rng, 0.6, 1.5)) * on
    else:
        alpha = cover
    if feather > 0.5:
        alpha = np.minimum(alpha, cv2.GaussianBlur(cover, (0, 0), min(feather / 4, 4.0)) * 1.5)
    alpha = np.clip(alpha * strength, 0, 1)[..., None]
    # the camera's grain, so the liquid is not smoother than its surroundings
    if noise_sigma is None:
        lum = mean3(bg)
        lap = cv2.Laplacian(lum, cv2.CV_32F)
        noise_sigma = float(np.clip(np.median(np.abs(lap)) * 1.4826 / math.sqrt(20) * 0.8, 0.002, 0.03))
    # a labelled spill must be visible: lift too-faint ones to a floor contrast (a clear film on
    # a glossy floor may be subtle in reality too, so its floor is lower)
    diff = mean3(np.abs(colour - bg))[vis]
    floor = 0.03 if liquid.name in ("water", "fuel") else 0.06
    if diff.size and float(diff.mean()) < floor:
        gain = floor / max(float(diff.mean()), 1e-4)
        colour = bg + (colour - bg) * min(gain, 8.0)
        params["contrast_gain"] = round(min(gain, 8.0), 2)
    colour = colour + rng.normal(0, noise_sigma, (y2 - y1, x2 - x1, 1)).astype(np.float32)
    out = bg + (colour - bg) * alpha
    res = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
    if mode == "poisson" and vis.sum() > 20 and min(x2 - x1, y2 - y1) > 8:
        m8 = (cv2.dilate(vis.astype(np.uint8), np.ones((3, 3), np.uint8)) * 255)
        m8[0, :] = m8[-1, :] = 0
        m8[:, 0] = m8[:, -1] = 0
        ys, xs = np.nonzero(m8)
        if len(xs):
            try:
                centre = ((x2 - x1) // 2, (y2 - y1) // 2)
                crop = img[y1:y2, x1:x2].copy()
                blended = cv2.seamlessClone(cv2.cvtColor(res, cv2.COLOR_RGB2BGR), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                            m8, centre, cv2.NORMAL_CLONE)
                res = np.where(vis[..., None], cv2.cvtColor(blended, cv2.COLOR_BGR2RGB), res)
            except cv2.error:
                params["blend"] = "physical"
    img[y1:y2, x1:x2] = res
    mask_full[y1:y2, x1:x2] = vis
    return mask_full, params


# ---- surfaces without a G-buffer (photos, SDXL scenes, plant rooms) --------------------------------
def photo_surface(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator,
                  horizon: float | None = None, focal: float | None = None, cam_height: float | None = None) -> Surface:
    """Estimate the plane under a box in an image with no geometry.

    The floor is a plane seen by a pinhole camera with the given (or a plausible random)
    horizon row, focal length and height; the mirror image is the picture above the box
    flipped about the box's far edge, with, sometimes, bright blobs for lights the frame cut off.
    """
    import cv2

    H, W = img.shape[:2]
    x1, y1, x2, y2 = box
    f = focal or W * _u(rng, 0.6, 1.1)
    if horizon is None:
        horizon = min(y1 - 2.0, H * _u(rng, -0.6, 0.35))
    cam_h = cam_height or _u(rng, 1.0, 3.5)
    ys = np.arange(y1, y2, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(x1, x2, dtype=np.float32)[None, :] + 0.5
    dy = np.maximum(ys - horizon, 0.5)
    z = f * cam_h / dy
    u = np.broadcast_to((xs - W / 2) * z / f, (y2 - y1, x2 - x1)).astype(np.float32)
    v = np.broadcast_to(z, (y2 - y1, x2 - x1)).astype(np.float32)
    cosv = np.broadcast_to(np.sin(np.arctan2(dy, f)), u.shape).astype(np.float32)
    lut = _linear_lut()
    # mirror: flip what is above the box about its top edge
    src_rows = np.clip(2 * y1 - np.arange(y1, y2) - 1 - int(_u(rng, 0, 0.2) * (y2 - y1)), 0, H - 1)
    mirror = cv2.LUT(np.ascontiguousarray(img[src_rows][:, x1:x2]), lut)
    mirror = cv2.GaussianBlur(mirror, (0, 0), _u(rng, 0.5, 2.0))
    if rng.random() < 0.5:  # a light or a window the frame does not show, mirrored in the liquid
        m: np.ndarray = np.zeros(mirror.shape[:2], np.float32)
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = int(_u(rng, 0, x2 - x1)), int(_u(rng, 0, y2 - y1))
            ax = (max(1, int(_u(rng, 0.05, 0.3) * (x2 - x1))), max(1, int(_u(rng, 0.02, 0.12) * (y2 - y1))))
            cv2.ellipse(m, (cx, cy), ax, 0, 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), 1.5)[..., None]
        mirror = mirror + m * _u(rng, 1.0, 3.0)
    lin = cv2.LUT(np.ascontiguousarray(img), lut)  # to_linear(img / 255), exactly: the table holds its 256 values
    grey = mean3(lin)
    small = cv2.resize(grey, (max(2, W // 16), max(2, H // 16)), interpolation=cv2.INTER_AREA)
    local = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.0), (W, H), interpolation=cv2.INTER_LINEAR)[y1:y2, x1:x2]
    light = np.repeat(np.clip(local / 0.35, 0.2, 3.0)[..., None], 3, axis=2).astype(np.float32)
    return Surface(u, v, np.ones(u.shape, bool), cosv, mirror.astype(np.float32), light, _u(rng, 0.1, 0.9),
                   meta={"horizon": round(float(horizon), 1), "focal": round(float(f), 1)})
