"""The places spills happen, ray-cast: warehouses, retail aisles, offices, desks, kitchens,
corridors and stairs, seen by a CCTV camera, a person or a phone held low.

A scene is an axis-aligned room (floor ``y = 0``, ceiling, four walls) with boxes (racks,
shelving, desks, counters, cabinets, pallets, stair steps), vertical cylinders (bins,
drums, mugs) and people (billboards), lit by ceiling panels, lamps and windows. Every pixel
is a ray cast through a pinhole camera (position, yaw, pitch, roll, focal length) and
intersected with all of them analytically (NumPy, vectorised over pixels), so the G-buffer
is exact: world position, normal, surface, material, and, for horizontal surfaces, what a
mirror there would show (a second ray, reflected). That is what makes liquids physical in
:mod:`synspill.synth.liquid`: a water film shows the room's lights and windows mirrored,
with the Fresnel weight of the actual viewing angle.

Dry glossy floors already mirror the lights (blurred by their roughness): glare that is
not a spill. Floor markings, mats, cables, people, signs and shadows are distractors too.

A scene is fully determined by ``(family, seed, width, height)``: stage 1 renders it,
stage 3 rebuilds the same G-buffer from the layout to pour liquids into it.

Conventions: world metres, ``y`` up; image pixels ``(x right, y down)``; boxes ``xyxy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from synspill.synth import ablated
from synspill.synth import surfaces as sf
from synspill.synth.vec import mean3, norm3

FAMILIES = ("warehouse", "retail", "office", "desk", "kitchen", "corridor", "stairs")
VIEWS = ("cctv", "eye", "low")
#: Box side (``sqrt(w * h)``, fraction of the image's) a close-up spill is sized to, drawn uniformly.
CLOSE_UP_SIDE = (0.35, 0.95)
EPS = 1e-4
INF = np.float32(1e9)
#: Version of what a (family, seed) draws: stage 3 rebuilds the G-buffer from it, so scenes of another
#: version must be rendered again (2: textured caution signs, twice as often).
VERSION = 2


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(a + (b - a) * rng.random())


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


# ---- scene description -------------------------------------------------------------------------
@dataclass
class Material:
    """A surface: texture kind, tint, metres per texture tile, optics."""

    kind: str
    colour: np.ndarray
    tile_m: float = 2.0
    gloss: float = 0.0
    rough: float = 0.03
    porous: float = 0.5
    variant: int = 0
    offset: tuple[float, float] = (0.0, 0.0)
    flat: bool = False  # a plain colour, no texture lookup


@dataclass
class Box:
    """Axis-aligned box ``lo``..``hi`` (metres); ``top`` material on its upper face."""

    lo: np.ndarray
    hi: np.ndarray
    side: Material
    top: Material
    holds_liquid: bool = False  # a desk, counter or stair tread: spills may lie on top
    distractor: bool = False  # there to be confused with a spill's surroundings (a caution sign)


@dataclass
class Cyl:
    """Vertical cylinder: centre ``(x, z)``, radius, ``y0``..``y1``."""

    x: float
    z: float
    r: float
    y0: float
    y1: float
    side: Material
    top: Material


@dataclass
class Person:
    """A person as a camera-facing silhouette standing at ``(x, z)``."""

    x: float
    z: float
    height: float
    shirt: np.ndarray
    trousers: np.ndarray
    skin: np.ndarray


@dataclass
class Light:
    pos: np.ndarray
    colour: np.ndarray
    power: float
    reach: float  # distance at which it falls to half


@dataclass
class Rect:
    """An axis-aligned rectangle on a plane, in that plane's two coordinates (decal, panel, window)."""

    a0: float
    a1: float
    b0: float
    b1: float
    colour: np.ndarray
    emissive: float = 0.0
    gloss: float | None = None
    porous: float | None = None
    kind: str = "decal"


@dataclass
class Camera:
    """Pinhole camera. ``right``, ``down``, ``fwd`` are world unit vectors."""

    width: int
    height: int
    f: float
    pos: np.ndarray
    right: np.ndarray
    down: np.ndarray
    fwd: np.ndarray
    view: str = "cctv"

    @classmethod
    def make(cls, width: int, height: int, fov_deg: float, pos: np.ndarray, yaw: float, pitch: float,
             roll: float, view: str) -> Camera:
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        fwd = np.array([math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
        down = np.cross(right, fwd)
        c, s = math.cos(roll), math.sin(roll)
        right, down = c * right + s * down, -s * right + c * down
        return cls(width, height, f, np.asarray(pos, np.float64), right, down, fwd, view)

    def grid_size(self, scale: float = 1.0) -> tuple[int, int]:
        """``(w, h)`` of the pixel grid :meth:`rays` traces at ``scale``."""
        return max(1, int(round(self.width * scale))), max(1, int(round(self.height * scale)))

    def rays(self, scale: float = 1.0) -> np.ndarray:
        """``(H*s, W*s, 3)`` float32 unit directions through pixel centres."""
        w, h = self.grid_size(scale)
        xs = ((np.arange(w, dtype=np.float32) + 0.5) / scale - self.width / 2) / self.f
        ys = ((np.arange(h, dtype=np.float32) + 0.5) / scale - self.height / 2) / self.f
        d = (self.fwd[None, None, :] + xs[None, :, None] * self.right[None, None, :]
             + ys[:, None, None] * self.down[None, None, :]).astype(np.float32)
        return d / norm3(d, keepdims=True)

    def project(self, p: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` -> pixels ``(N, 2)`` (NaN behind the camera)."""
        d = np.asarray(p, np.float64) - self.pos
        z = d @ self.fwd
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.width / 2 + self.f * (d @ self.right) / z
            v = self.height / 2 + self.f * (d @ self.down) / z
        out = np.stack([u, v], axis=1)
        out[z <= 0.05] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"f": round(self.f, 3), "pos": [round(float(v), 4) for v in self.pos],
                "right": [round(float(v), 6) for v in self.right], "down": [round(float(v), 6) for v in self.down],
                "fwd": [round(float(v), 6) for v in self.fwd], "view": self.view}


@dataclass
class Scene:
    """Everything needed to trace and shade one room."""

    family: str
    camera: Camera
    size: np.ndarray  # room (x0, x1, z0, z1, height)
    floor: Material
    ceiling: Material
    walls: list[Material]  # x0, x1, z0, z1
    boxes: list[Box] = field(default_factory=list)
    cyls: list[Cyl] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)
    floor_decals: list[Rect] = field(default_factory=list)
    ceiling_panels: list[Rect] = field(default_factory=list)
    wall_rects: list[list[Rect]] = field(default_factory=lambda: [[], [], [], []])
    ambient: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.3, 0.3], np.float32))
    exposure: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


# ---- sampling the places -------------------------------------------------------------------------
def _mat(rng: np.random.Generator, kind: str, colour: Any, tile: tuple[float, float] = (1.5, 3.0),
         gloss: tuple[float, float] = (0.0, 0.1), rough: tuple[float, float] = (0.02, 0.06), porous: float = 0.5,
         flat: bool = False) -> Material:
    return Material(kind, sf.recolour(colour, rng), _u(rng, *tile), _u(rng, *gloss), _u(rng, *rough), porous,
                    int(rng.integers(4)), (_u(rng, 0, 50), _u(rng, 0, 50)), flat)


#: Share of floors and walls given a random, unrealistic texture (domain randomisation).
RANDOM_TEXTURE = 0.12


def _random_mat(rng: np.random.Generator, porous: float) -> Material:
    return Material("random", np.ones(3, np.float32) * 0.8, _u(rng, 0.5, 4.0), _u(rng, 0.0, 0.7), _u(rng, 0.003, 0.05),
                    porous, int(rng.integers(sf.RANDOM_VARIANTS)), (_u(rng, 0, 50), _u(rng, 0, 50)))


def _floor_mat(rng: np.random.Generator, kinds: tuple[str, ...]) -> Material:
    if rng.random() < RANDOM_TEXTURE:
        return _random_mat(rng, _u(rng, 0.0, 1.0))
    kind = _pick(rng, kinds)
    o = sf.FLOORS[kind]
    return Material(kind, sf.recolour(_pick(rng, sf.FLOOR_COLOURS[kind]), rng), _u(rng, *o.tile_m), _u(rng, *o.gloss),
                    _u(rng, *o.rough), o.porous, int(rng.integers(4)), (_u(rng, 0, 50), _u(rng, 0, 50)))


def _wall_mat(rng: np.random.Generator, kinds: tuple[str, ...] = sf.WALL_KINDS) -> Material:
    if rng.random() < RANDOM_TEXTURE:
        return _random_mat(rng, 0.5)
    kind = _pick(rng, kinds)
    return _mat(rng, kind, _pick(rng, sf.WALL_COLOURS), (1.0, 4.0) if kind != "wall-tile" else (1.5, 2.5))


def _flat(rng: np.random.Generator, colour: Any, gloss: tuple[float, float] = (0.0, 0.1)) -> Material:
    return Material("flat", sf.recolour(colour, rng), 1.0, _u(rng, *gloss), 0.03, 0.2, flat=True)


LIGHT_TINTS = ([1.0, 0.92, 0.8], [1.0, 1.0, 1.0], [0.88, 0.95, 1.05], [1.05, 0.98, 0.9])
#: Per family: floors, room width/depth/height ranges (m), view probabilities (cctv, eye, low).
PRESETS: dict[str, dict[str, Any]] = {
    "warehouse": dict(floors=("concrete", "epoxy", "concrete", "vinyl"), w=(12, 30), d=(20, 50), h=(6, 12), views=(0.6, 0.25, 0.15)),
    "retail": dict(floors=("tile", "vinyl", "terrazzo", "tile", "epoxy"), w=(2.2, 4.0), d=(15, 35), h=(3, 5), views=(0.55, 0.3, 0.15)),
    "office": dict(floors=("carpet", "laminate", "wood", "vinyl", "tile", "carpet"), w=(6, 14), d=(6, 16), h=(2.6, 3.4), views=(0.5, 0.3, 0.2)),
    "desk": dict(floors=("carpet", "laminate", "wood", "vinyl"), w=(4, 8), d=(4, 8), h=(2.6, 3.2), views=(0.3, 0.2, 0.5)),
    "kitchen": dict(floors=("tile", "vinyl", "terrazzo", "epoxy", "wood"), w=(4, 12), d=(5, 15), h=(2.6, 3.6), views=(0.5, 0.25, 0.25)),
    "corridor": dict(floors=("vinyl", "tile", "terrazzo", "epoxy", "concrete", "carpet"), w=(1.8, 3.5), d=(15, 40), h=(2.6, 3.4), views=(0.55, 0.3, 0.15)),
    "stairs": dict(floors=("concrete", "tile", "terrazzo", "vinyl", "wood"), w=(1.8, 4.0), d=(8, 14), h=(5, 7), views=(0.5, 0.35, 0.15)),
}


def sample_scene(family: str, seed: int, width: int, height: int) -> Scene:
    """The room of ``(family, seed)`` at output size ``width x height`` (deterministic)."""
    rng = np.random.default_rng([seed, 1234, FAMILIES.index(family) if family in FAMILIES else 99])
    if family not in PRESETS:
        raise KeyError(family)
    p = PRESETS[family]
    w, d, hc = _u(rng, *p["w"]), _u(rng, *p["d"]), _u(rng, *p["h"])
    x0, x1, z0, z1 = -w / 2, w / 2, -2.0, d
    floor = _floor_mat(rng, p["floors"])
    ceiling = _mat(rng, "panel", [0.9, 0.9, 0.88], (1.2, 2.4))
    walls = [_wall_mat(rng) for _ in range(4)]
    scene = Scene(family, None, np.array([x0, x1, z0, z1, hc]), floor, ceiling, walls)  # type: ignore[arg-type]
    scene.params = {"family": family, "floor": floor.kind, "floor_gloss": round(floor.gloss, 3)}
    getattr(_Builder(rng, scene), family)()
    _lights(rng, scene)
    _floor_distractors(rng, scene)
    _people(rng, scene, p)
    if ablated("materials"):
        scene.floor = Material("concrete", sf.recolour(sf.FLOOR_COLOURS["concrete"][0], rng), 3.0, 0.05, 0.04, 1.0)
    if ablated("distractors"):
        scene.floor_decals, scene.people = [], []
        scene.boxes = [b for b in scene.boxes if not b.distractor]
        scene.params.pop("sign", None)
        scene.floor.gloss = 0.0
    scene.camera = _camera(rng, scene, width, height, p["views"])
    scene.params.update(view=scene.camera.view)
    warm = rng.random() < 0.5
    scene.ambient = (np.array(_pick(rng, LIGHT_TINTS), np.float32) * _u(rng, 0.15, 0.45)) * (1.05 if warm else 1.0)
    return scene


class _Builder:
    """Furniture per family (adds boxes, cylinders, wall rectangles to the scene)."""

    def __init__(self, rng: np.random.Generator, scene: Scene) -> None:
        self.rng, self.s = rng, scene
        self.x0, self.x1, self.z0, self.z1, self.hc = (float(v) for v in scene.size)

    def box(self, lo: Any, hi: Any, side: Material, top: Material | None = None, holds: bool = False) -> None:
        self.s.boxes.append(Box(np.array(lo, np.float64), np.array(hi, np.float64), side, top or side, holds))

    def windows(self, wall: int, n: tuple[int, int], sill: tuple[float, float] = (0.8, 1.2)) -> None:
        rng = self.rng
        span = (self.z0, self.z1) if wall < 2 else (self.x0, self.x1)
        for _ in range(int(rng.integers(*n))):
            a = _u(rng, span[0] + 0.5, span[1] - 2.0)
            wdt = _u(rng, 0.8, 2.5)
            b0 = _u(rng, *sill)
            col = np.array(_pick(rng, ([0.85, 0.92, 1.0], [1.0, 1.0, 0.97], [0.7, 0.8, 0.95])), np.float32)
            self.s.wall_rects[wall].append(Rect(a, min(span[1], a + wdt), b0, min(self.hc - 0.2, b0 + _u(rng, 1.0, 2.0)),
                                                col, emissive=_u(rng, 1.5, 4.0), kind="window"))

    def doors(self, wall: int, n: tuple[int, int]) -> None:
        rng = self.rng
        span = (self.z0, self.z1) if wall < 2 else (self.x0, self.x1)
        for _ in range(int(rng.integers(*n))):
            a = _u(rng, span[0] + 0.3, span[1] - 1.2)
            col = sf.recolour(_pick(rng, ([0.55, 0.4, 0.28], [0.7, 0.7, 0.72], [0.3, 0.4, 0.55], [0.85, 0.85, 0.82])), rng)
            self.s.wall_rects[wall].append(Rect(a, a + _u(rng, 0.85, 1.0), 0.0, _u(rng, 2.0, 2.2), col, kind="door"))

    def warehouse(self) -> None:
        rng = self.rng
        rack = _mat(rng, "products", [1, 1, 1], (2.0, 3.0))
        steel = _flat(rng, _pick(rng, ([0.2, 0.35, 0.6], [0.85, 0.45, 0.1], [0.5, 0.5, 0.52])))
        n = int(rng.integers(1, 4))
        gap = _u(rng, 2.8, 4.5)
        xs = np.arange(n) * (gap + 1.1) - (n - 1) * (gap + 1.1) / 2 + _u(rng, -1, 1)
        for x in xs:
            if self.x0 + 0.5 < x < self.x1 - 1.6:
                za, zb = _u(rng, 2, 6), _u(rng, 12, self.z1 - 2)
                self.box([x, 0, za], [x + 1.1, _u(rng, 3, min(8, self.hc - 1)), zb], rack, steel)
        for _ in range(int(rng.integers(0, 6))):  # pallets and boxes
            px, pz = _u(rng, self.x0 + 1, self.x1 - 2), _u(rng, 2, self.z1 - 2)
            wood = _flat(rng, [0.6, 0.5, 0.35])
            self.box([px, 0, pz], [px + 1.2, 0.15, pz + 0.8], wood)
            if rng.random() < 0.7:
                card = _flat(rng, [0.7, 0.55, 0.35])
                self.box([px + 0.05, 0.15, pz + 0.05], [px + 1.15, _u(rng, 0.5, 1.6), pz + 0.75], card)
        self.doors(int(rng.integers(4)), (0, 2))

    def retail(self) -> None:
        rng = self.rng
        prod = _mat(rng, "products", [1, 1, 1], (1.5, 2.5))
        shelf_h = _u(rng, 1.4, 2.2)
        depth = _u(rng, 0.5, 0.9)
        za, zb = _u(rng, 0.5, 3.0), self.z1 - _u(rng, 2, 6)
        metal = _flat(rng, [0.8, 0.8, 0.78])
        self.box([self.x0, 0, za], [self.x0 + depth, shelf_h, zb], prod, metal)
        self.box([self.x1 - depth, 0, za], [self.x1, shelf_h, zb], prod, metal)
        for _ in range(int(rng.integers(0, 3))):  # displays, baskets, boxes in the aisle
            px, pz = _u(rng, self.x0 + depth, self.x1 - depth - 0.5), _u(rng, 2, zb)
            c = _flat(rng, rng.random(3) * 0.8 + 0.1)
            self.box([px, 0, pz], [px + _u(rng, 0.3, 0.6), _u(rng, 0.3, 1.0), pz + _u(rng, 0.3, 0.6)], c)
        self.s.walls[3] = _mat(rng, "products", [1, 1, 1], (1.5, 2.5)) if rng.random() < 0.5 else self.s.walls[3]

    def office(self) -> None:
        rng = self.rng
        top = _mat(rng, _pick(rng, ("laminate", "wood")), _pick(rng, ([0.85, 0.83, 0.78], [0.6, 0.45, 0.3], [0.35, 0.3, 0.28], [0.9, 0.9, 0.9])),
                   (1.5, 2.5), (0.05, 0.3), porous=0.1)
        leg = _flat(rng, [0.25, 0.25, 0.27])
        for _ in range(int(rng.integers(2, 7))):
            dx, dz = _u(rng, 1.2, 1.8), _u(rng, 0.7, 0.9)
            x, z = _u(rng, self.x0 + 0.3, self.x1 - dx - 0.3), _u(rng, 1.0, self.z1 - dz - 0.3)
            hgt = _u(rng, 0.72, 0.76)
            self.box([x, hgt - 0.03, z], [x + dx, hgt, z + dz], leg, top, holds=True)
            for lx, lz in ((x, z), (x + dx - 0.05, z), (x, z + dz - 0.05), (x + dx - 0.05, z + dz - 0.05)):
                self.box([lx, 0, lz], [lx + 0.05, hgt - 0.03, lz + 0.05], leg)
            if rng.random() < 0.7:  # monitor
                mx = x + _u(rng, 0.2, dx - 0.7)
                self.box([mx, hgt, z + dz - 0.25], [mx + 0.55, hgt + 0.38, z + dz - 0.2], _flat(rng, [0.08, 0.08, 0.09], (0.2, 0.5)))
            if rng.random() < 0.6:  # chair
                cx, cz = x + _u(rng, 0.2, dx - 0.6), z - _u(rng, 0.2, 0.6)
                ch = _flat(rng, _pick(rng, ([0.15, 0.15, 0.17], [0.2, 0.25, 0.4], [0.4, 0.15, 0.1])))
                self.box([cx, 0.42, cz], [cx + 0.5, 0.5, cz + 0.5], ch)
                self.box([cx, 0.5, cz - 0.05], [cx + 0.5, 1.0, cz + 0.02], ch)
                self.s.cyls.append(Cyl(cx + 0.25, cz + 0.25, 0.03, 0.05, 0.42, leg, leg))
        for _ in range(int(rng.integers(0, 3))):  # cabinets along the walls
            x = _u(rng, self.x0, self.x1 - 1.0)
            self.box([x, 0, self.z1 - 0.5], [x + _u(rng, 0.8, 1.2), _u(rng, 0.8, 2.0), self.z1], _flat(rng, [0.8, 0.8, 0.78]))
        self.windows(int(rng.integers(4)), (1, 4))
        self.doors(int(rng.integers(4)), (0, 2))
        if rng.random() < 0.5:
            self.s.cyls.append(Cyl(_u(rng, self.x0 + 0.5, self.x1 - 0.5), _u(rng, 2, self.z1 - 1), 0.18, 0, 0.45,
                                   _flat(rng, [0.2, 0.2, 0.22]), _flat(rng, [0.1, 0.1, 0.1])))  # bin

    def desk(self) -> None:
        """A work surface close up: one desk the camera looks down at, with things on it."""
        rng = self.rng
        top = _mat(rng, _pick(rng, ("laminate", "wood", "laminate")),
                   _pick(rng, ([0.88, 0.86, 0.82], [0.62, 0.45, 0.3], [0.35, 0.3, 0.28], [0.92, 0.92, 0.92], [0.3, 0.32, 0.35])),
                   (1.0, 2.0), (0.05, 0.5), porous=0.1)
        leg = _flat(rng, [0.3, 0.3, 0.32])
        dx, dz = _u(rng, 1.4, 2.2), _u(rng, 0.75, 1.0)
        x, z = -dx / 2 + _u(rng, -0.3, 0.3), _u(rng, 1.0, 1.6)
        hgt = _u(rng, 0.72, 0.9)
        self.s.params["desk"] = [round(x, 3), round(z, 3), round(dx, 3), round(dz, 3), round(hgt, 3)]
        self.box([x, hgt - 0.04, z], [x + dx, hgt, z + dz], leg, top, holds=True)
        for lx, lz in ((x, z), (x + dx - 0.06, z), (x, z + dz - 0.06), (x + dx - 0.06, z + dz - 0.06)):
            self.box([lx, 0, lz], [lx + 0.06, hgt - 0.04, lz + 0.06], leg)
        things = int(rng.integers(1, 5))
        for _ in range(things):
            kind = _pick(rng, ("keyboard", "mug", "paper", "monitor", "phone", "bottle"))
            tx_, tz_ = _u(rng, x + 0.1, x + dx - 0.5), _u(rng, z + 0.1, z + dz - 0.3)
            if kind == "keyboard":
                self.box([tx_, hgt, tz_], [tx_ + 0.45, hgt + 0.025, tz_ + 0.15], _flat(rng, _pick(rng, ([0.1, 0.1, 0.1], [0.85, 0.85, 0.85]))))
            elif kind == "mug":
                self.s.cyls.append(Cyl(tx_, tz_, 0.045, hgt, hgt + 0.1, _flat(rng, rng.random(3) * 0.8 + 0.1), _flat(rng, [0.2, 0.12, 0.08])))
            elif kind == "bottle":
                self.s.cyls.append(Cyl(tx_, tz_, 0.035, hgt, hgt + 0.25, _flat(rng, [0.6, 0.75, 0.85], (0.3, 0.6)), _flat(rng, [0.2, 0.3, 0.8])))
            elif kind == "paper":
                self.box([tx_, hgt, tz_], [tx_ + 0.21, hgt + 0.002, tz_ + 0.3], _flat(rng, [0.95, 0.95, 0.93]))
            elif kind == "phone":
                self.box([tx_, hgt, tz_], [tx_ + 0.08, hgt + 0.01, tz_ + 0.16], _flat(rng, [0.05, 0.05, 0.06], (0.3, 0.7)))
            else:
                self.box([tx_, hgt, z + dz - 0.2], [tx_ + 0.55, hgt + 0.4, z + dz - 0.15], _flat(rng, [0.06, 0.06, 0.07], (0.3, 0.6)))
        self.windows(int(rng.integers(4)), (0, 3))

    def kitchen(self) -> None:
        rng = self.rng
        counter_top = _mat(rng, _pick(rng, ("terrazzo", "laminate", "wood", "tile")),
                           _pick(rng, ([0.85, 0.85, 0.82], [0.3, 0.3, 0.32], [0.6, 0.5, 0.4])), (1.0, 2.0), (0.1, 0.5), porous=0.1)
        cab = _flat(rng, _pick(rng, ([0.9, 0.9, 0.88], [0.55, 0.4, 0.3], [0.3, 0.35, 0.45], [0.7, 0.72, 0.7])))
        for wall in rng.permutation(4)[: int(rng.integers(1, 3))]:
            if wall == 0:
                self.box([self.x0, 0, _u(rng, 0, 2)], [self.x0 + 0.62, 0.9, self.z1 - _u(rng, 0, 3)], cab, counter_top, holds=True)
            elif wall == 1:
                self.box([self.x1 - 0.62, 0, _u(rng, 0, 2)], [self.x1, 0.9, self.z1 - _u(rng, 0, 3)], cab, counter_top, holds=True)
            elif wall == 3:
                self.box([self.x0 + _u(rng, 0, 2), 0, self.z1 - 0.62], [self.x1 - _u(rng, 0, 2), 0.9, self.z1], cab, counter_top, holds=True)
        table = _mat(rng, _pick(rng, ("laminate", "wood")), _pick(rng, ([0.8, 0.8, 0.78], [0.6, 0.45, 0.3])), (1.0, 2.0), (0.05, 0.3), porous=0.1)
        leg = _flat(rng, [0.5, 0.5, 0.52])
        for _ in range(int(rng.integers(0, 5))):  # canteen tables
            x, z = _u(rng, self.x0 + 0.8, self.x1 - 2.0), _u(rng, 2, self.z1 - 2)
            dx, dz = _u(rng, 0.8, 1.8), _u(rng, 0.7, 0.9)
            self.box([x, 0.72, z], [x + dx, 0.75, z + dz], leg, table, holds=True)
            for lx, lz in ((x + 0.05, z + 0.05), (x + dx - 0.1, z + dz - 0.1)):
                self.box([lx, 0, lz], [lx + 0.05, 0.72, lz + 0.05], leg)
        self.s.walls = [_wall_mat(rng, ("wall-tile", "painted", "wall-tile")) for _ in range(4)]
        self.windows(int(rng.integers(4)), (0, 3))
        self.doors(int(rng.integers(4)), (0, 2))

    def corridor(self) -> None:
        rng = self.rng
        for wall in (0, 1):
            self.doors(wall, (1, 5))
        if rng.random() < 0.5:
            self.windows(3, (1, 2), (0.0, 0.3))  # glass doors at the end
        for _ in range(int(rng.integers(0, 3))):  # benches, bins, signs
            x = self.x0 + 0.05 if rng.random() < 0.5 else self.x1 - 0.45
            z = _u(rng, 2, self.z1 - 2)
            self.box([x, 0, z], [x + 0.4, _u(rng, 0.4, 1.0), z + _u(rng, 0.4, 1.5)], _flat(rng, rng.random(3) * 0.7 + 0.2))

    def stairs(self) -> None:
        rng = self.rng
        n = int(rng.integers(6, 16))
        rise, run = _u(rng, 0.15, 0.19), _u(rng, 0.26, 0.32)
        z_start = _u(rng, 2.0, 4.0)
        tread = Material(self.s.floor.kind, self.s.floor.colour, self.s.floor.tile_m, self.s.floor.gloss, self.s.floor.rough,
                         self.s.floor.porous, self.s.floor.variant, self.s.floor.offset)
        riser = _flat(rng, self.s.floor.colour * 0.8)
        for i in range(n):
            self.box([self.x0, 0, z_start + i * run], [self.x1, (i + 1) * rise, self.z1], riser, tread, holds=True)
        nosing = _flat(rng, _pick(rng, ([0.9, 0.75, 0.1], [0.2, 0.2, 0.2], [0.8, 0.8, 0.8])))
        if rng.random() < 0.6:
            for i in range(n):
                self.box([self.x0, (i + 1) * rise - 0.005, z_start + i * run - 0.002], [self.x1, (i + 1) * rise + 0.001, z_start + i * run + 0.04], nosing)
        self.s.params["stairs"] = {"n": n, "rise": round(rise, 3), "run": round(run, 3), "z0": round(z_start, 3)}


def _lights(rng: np.random.Generator, s: Scene) -> None:
    x0, x1, z0, z1, hc = (float(v) for v in s.size)
    tint = np.array(_pick(rng, LIGHT_TINTS), np.float32)
    style = _pick(rng, ("panels", "strips", "spots") if s.family != "warehouse" else ("bays", "strips"))
    s.params["lights"] = style
    nx = max(1, int((x1 - x0) / _u(rng, 2.5, 5.0)))
    nz = max(1, int((z1 - z0) / _u(rng, 2.5, 5.0)))
    xs = np.linspace(x0, x1, nx + 2)[1:-1] if nx > 1 else np.array([(x0 + x1) / 2 + _u(rng, -0.5, 0.5)])
    zs = np.linspace(z0 + 1, z1, nz + 1)
    size = {"panels": (0.6, 0.6), "strips": (0.2, _u(rng, 1.2, 3.0)), "spots": (0.15, 0.15), "bays": (0.5, 0.5)}[style]
    lum = _u(rng, 6.0, 20.0)  # far brighter than what they light: glossy floors mirror them
    for x in xs:
        for z in zs:
            a, b = size
            s.ceiling_panels.append(Rect(x - a / 2, x + a / 2, z - b / 2, z + b / 2, tint, emissive=lum, kind="light"))
    # a handful of them light the scene (nearest the camera matter most; all would be slow)
    pts = [(r.a0 + r.a1) / 2 for r in s.ceiling_panels], [(r.b0 + r.b1) / 2 for r in s.ceiling_panels]
    order = np.argsort(np.array(pts[1]))
    for k in order[:: max(1, len(order) // 4)][:4]:
        s.lights.append(Light(np.array([pts[0][k], hc - 0.1, pts[1][k]]), tint, _u(rng, 1.0, 2.0), _u(rng, 3.0, 7.0) * hc / 3))
    s.exposure = _u(rng, 0.8, 1.25)


def _floor_distractors(rng: np.random.Generator, s: Scene) -> None:
    """Things on the floor that are not spills: markings, mats, cables, patches."""
    x0, x1, z0, z1, _ = (float(v) for v in s.size)
    if s.family in ("warehouse", "corridor") and rng.random() < 0.7 or rng.random() < 0.2:
        col = np.array(_pick(rng, ([0.95, 0.8, 0.1], [0.95, 0.95, 0.92], [0.2, 0.5, 0.85], [0.9, 0.3, 0.2])), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            x = _u(rng, x0 + 0.3, x1 - 0.3)
            wd = _u(rng, 0.05, 0.12)
            s.floor_decals.append(Rect(x, x + wd, _u(rng, z0, 3), _u(rng, 10, z1), col, gloss=0.3, porous=0.0, kind="marking"))
        if rng.random() < 0.5:
            z = _u(rng, 2, z1 - 2)
            s.floor_decals.append(Rect(x0, x1, z, z + _u(rng, 0.05, 0.12), col, gloss=0.3, porous=0.0, kind="marking"))
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.5 else 0):  # mats
        x, z = _u(rng, x0 + 0.3, x1 - 1.5), _u(rng, 0.5, min(z1, 10))
        col = np.array(_pick(rng, ([0.12, 0.12, 0.13], [0.25, 0.2, 0.18], [0.3, 0.12, 0.1], [0.15, 0.2, 0.3])), np.float32)
        s.floor_decals.append(Rect(x, x + _u(rng, 0.6, 1.5), z, z + _u(rng, 0.4, 1.2), col, gloss=0.0, porous=1.0, kind="mat"))
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.4 else 0):  # cables: thin dark strips
        x, z = _u(rng, x0 + 0.3, x1 - 0.3), _u(rng, 0.5, min(z1, 8))
        along = rng.random() < 0.5
        ln = _u(rng, 0.8, 3.0)
        r = (x, x + 0.015, z, z + ln) if along else (x, x + ln, z, z + 0.015)
        s.floor_decals.append(Rect(*r, np.array([0.05, 0.05, 0.05], np.float32), gloss=0.2, porous=0.0, kind="cable"))
    if rng.random() < 0.2:  # a repaired patch of another floor tone
        x, z = _u(rng, x0 + 0.3, x1 - 1.5), _u(rng, 0.5, min(z1, 10))
        col = (s.floor.colour * _u(rng, 0.75, 1.2)).astype(np.float32)
        s.floor_decals.append(Rect(x, x + _u(rng, 0.5, 2.0), z, z + _u(rng, 0.5, 2.0), col, kind="patch"))


def _people(rng: np.random.Generator, s: Scene, p: dict[str, Any]) -> None:
    x0, x1, z0, z1, _ = (float(v) for v in s.size)
    n = int(rng.integers(0, 4)) if rng.random() < 0.45 else 0
    for _ in range(n):
        s.people.append(Person(_u(rng, x0 + 0.4, x1 - 0.4), _u(rng, 2.0, min(z1 - 0.5, 15)), _u(rng, 1.55, 1.9),
                               sf.recolour(rng.random(3) * 0.8 + 0.1, rng), sf.recolour(_pick(rng, ([0.1, 0.12, 0.2], [0.2, 0.2, 0.2], [0.4, 0.35, 0.3])), rng),
                               sf.recolour(_pick(rng, ([0.85, 0.65, 0.5], [0.55, 0.38, 0.25], [0.35, 0.24, 0.16])), rng)))
    if rng.random() < 0.3:  # a caution sign (it marks a hazard; it is not the spill)
        x, z = _u(rng, x0 + 0.3, x1 - 0.6), _u(rng, 1.5, min(z1 - 1, 8))
        w, h = _u(rng, 0.28, 0.34), _u(rng, 0.55, 0.68)
        colour = np.array([0.95, 0.78, 0.05], np.float32) if rng.random() < 0.85 else np.array([0.95, 0.95, 0.92], np.float32)
        # the face's texture: one tile the sign's height, centred on it (faces use (x, -y) as coordinates)
        face = Material("sign", colour, h, 0.2, 0.03, 0.0, offset=(h / 2 - x - w / 2, h))
        edge = Material("flat", colour, flat=True, gloss=0.2)
        s.boxes.append(Box(np.array([x, 0, z]), np.array([x + w, h, z + 0.06]), face, edge, distractor=True))
        s.params["sign"] = [round(v, 3) for v in (x, z, x + w, z + 0.06, h)]


def _camera(rng: np.random.Generator, s: Scene, width: int, height: int, views: tuple[float, ...]) -> Camera:
    x0, x1, z0, z1, hc = (float(v) for v in s.size)
    view = VIEWS[int(rng.choice(3, p=np.array(views) / sum(views)))]
    yaw = _u(rng, -0.5, 0.5)
    roll = rng.normal(0, 0.02)
    if view == "cctv":
        h = min(hc - 0.15, _u(rng, 2.4, 5.0))
        pitch, fov = _u(rng, 0.3, 0.95), _u(rng, 60, 100)
        x = _u(rng, x0 + 0.2, x1 - 0.2) if x1 - x0 < 5 else _u(rng, x0 + 0.5, x1 - 0.5)
        z = z0 + _u(rng, 0.2, 1.0)
    elif view == "eye":
        h, pitch, fov = _u(rng, 1.3, 1.8), _u(rng, 0.2, 0.7), _u(rng, 50, 75)
        x, z = _u(rng, x0 + 0.3, x1 - 0.3), z0 + _u(rng, 0.5, 2.5)
    else:  # low, looking down steeply (a phone held over the spill)
        h, pitch, fov = _u(rng, 0.5, 1.4), _u(rng, 0.6, 1.35), _u(rng, 50, 75)
        x, z = _u(rng, x0 + 0.3, x1 - 0.3), z0 + _u(rng, 0.5, 3.0)
        roll = rng.normal(0, 0.08)
    if s.family == "desk":
        dx0, dz0, ddx, ddz, dh = s.params["desk"]
        x = dx0 + ddx / 2 + _u(rng, -0.3, 0.3)
        z = dz0 - _u(rng, 0.3, 1.2)
        h = dh + (_u(rng, 0.4, 1.0) if view != "cctv" else _u(rng, 1.2, 2.0))
        yaw = _u(rng, -0.3, 0.3)
        pitch = _u(rng, 0.5, 1.2)
    if s.family == "stairs":
        yaw = _u(rng, -0.25, 0.25)
        pitch = _u(rng, -0.05, 0.5) if view != "low" else _u(rng, 0.4, 1.0)
    return Camera.make(width, height, fov, np.array([x, h, z]), yaw, pitch, roll, view)


# ---- tracing --------------------------------------------------------------------------------------
@dataclass
class Hit:
    """Per-ray intersection: ``t``, surface id, world point, normal, material slot.

    ``sid``: 0 floor, 1 ceiling, 2-5 walls (x0, x1, z0, z1), 10+i box i, 1000+j cylinder j,
    2000+k person k. ``top``: the hit is an upward face (a horizontal surface).
    """

    t: np.ndarray
    sid: np.ndarray
    p: np.ndarray
    n: np.ndarray

    @property
    def top(self) -> np.ndarray:
        return self.n[:, 1] > 0.5


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-9, np.where(d < 0, -1e-9, 1e-9), d)


#: ``(h, w, scale)`` when the rays are a camera's pixel grid (row-major), or ``(h, w, scale, pix)``
#: when they are the pixels ``pix`` (ascending flat indices) of it.
RayGrid = tuple[int, int, float] | tuple[int, int, float, np.ndarray]


def _candidates(s: Scene, lo: np.ndarray, hi: np.ndarray, grid: RayGrid | None, n: int) -> np.ndarray | None:
    """Indices of the primary rays whose pixels can see the world box ``lo``..``hi`` (None: all rays)."""
    if grid is None:
        return None
    h, w, scale = grid[:3]
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    uv = s.camera.project(corners)
    if np.isnan(uv).any():
        return None  # partly behind the camera: test every ray
    c0 = max(0, int(math.floor(uv[:, 0].min() * scale)) - 1)
    c1 = min(w, int(math.ceil(uv[:, 0].max() * scale)) + 2)
    r0 = max(0, int(math.floor(uv[:, 1].min() * scale)) - 1)
    r1 = min(h, int(math.ceil(uv[:, 1].max() * scale)) + 2)
    if c1 <= c0 or r1 <= r0:
        return np.zeros(0, np.int64)
    if len(grid) > 3:  # the rays are the pixels ``pix`` (ascending flat indices) of the grid
        pix = grid[3]
        r, c = pix // w, pix % w
        return np.flatnonzero((r >= r0) & (r < r1) & (c >= c0) & (c < c1))
    return (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).ravel()


def trace(s: Scene, o: np.ndarray, d: np.ndarray, skip_people: bool = False, grid: RayGrid | None = None) -> Hit:
    """Intersect rays with the scene.

    Args:
        s: The scene.
        o: Origins ``(N, 3)``, or one ``(3,)`` for all.
        d: Unit directions ``(N, 3)``.
        skip_people: Leave people out.
        grid: ``(h, w, scale)`` when the rays are the camera's pixel grid (row-major), or
            ``(h, w, scale, pix)`` when they are its pixels ``pix``: each object is then tested
            only on the pixels its projection covers.
    """
    n = len(d)
    o = np.broadcast_to(np.asarray(o, np.float32), (n, 3))
    ds = _safe(d.astype(np.float32))
    ox, oy, oz = (np.ascontiguousarray(o[:, k]) for k in range(3))
    dx, dy, dz = (np.ascontiguousarray(ds[:, k]) for k in range(3))
    ix, iy, iz = 1.0 / dx, 1.0 / dy, 1.0 / dz
    x0, x1, z0, z1, hc = (float(v) for v in s.size)
    # room: the first wall each ray leaves through
    tx = np.where(dx > 0, (x1 - ox) * ix, (x0 - ox) * ix)
    ty = np.where(dy > 0, (hc - oy) * iy, (0.0 - oy) * iy)
    tz = np.where(dz > 0, (z1 - oz) * iz, (z0 - oz) * iz)
    t = np.minimum(np.minimum(tx, ty), tz).astype(np.float32)
    ax_y, ax_x = ty <= np.minimum(tx, tz), tx <= np.minimum(ty, tz)
    sid = np.where(ax_y, np.where(dy > 0, 1, 0), np.where(ax_x, np.where(dx > 0, 3, 2), np.where(dz > 0, 5, 4))).astype(np.int32)
    nrm = np.zeros((n, 3), np.float32)
    nrm[:, 1] = np.where(ax_y, np.where(dy > 0, -1.0, 1.0), 0.0)
    nrm[:, 0] = np.where(~ax_y & ax_x, np.where(dx > 0, -1.0, 1.0), 0.0)
    nrm[:, 2] = np.where(~ax_y & ~ax_x, np.where(dz > 0, -1.0, 1.0), 0.0)
    for i, b in enumerate(s.boxes):
        idx = _candidates(s, b.lo, b.hi, grid, n)
        if idx is not None and not len(idx):
            continue
        sub = slice(None) if idx is None else idx
        a1, a2 = (b.lo[0] - ox[sub]) * ix[sub], (b.hi[0] - ox[sub]) * ix[sub]
        b1, b2 = (b.lo[1] - oy[sub]) * iy[sub], (b.hi[1] - oy[sub]) * iy[sub]
        c1, c2 = (b.lo[2] - oz[sub]) * iz[sub], (b.hi[2] - oz[sub]) * iz[sub]
        mx, my, mz = np.minimum(a1, a2), np.minimum(b1, b2), np.minimum(c1, c2)
        tn = np.maximum(np.maximum(mx, my), mz)
        tf = np.minimum(np.minimum(np.maximum(a1, a2), np.maximum(b1, b2)), np.maximum(c1, c2))
        hit = (tn <= tf) & (tn > EPS) & (tn < t[sub])
        if not hit.any():
            continue
        loc = np.flatnonzero(hit)
        g = loc if idx is None else idx[loc]
        tnh = tn[loc]
        t[g] = tnh
        sid[g] = 10 + i
        fx, fy = mx[loc] >= tnh, my[loc] >= tnh
        nrm[g, 0] = np.where(fx, -np.sign(dx[g]), 0.0)
        nrm[g, 1] = np.where(~fx & fy, -np.sign(dy[g]), 0.0)
        nrm[g, 2] = np.where(~fx & ~fy, -np.sign(dz[g]), 0.0)
    for j, c in enumerate(s.cyls):
        idx = _candidates(s, np.array([c.x - c.r, c.y0, c.z - c.r]), np.array([c.x + c.r, c.y1, c.z + c.r]), grid, n)
        if idx is not None and not len(idx):
            continue
        sub = slice(None) if idx is None else idx
        cx_, cz_ = ox[sub] - c.x, oz[sub] - c.z
        ddx, ddy, ddz, oyy = dx[sub], dy[sub], dz[sub], oy[sub]
        a = ddx * ddx + ddz * ddz + 1e-12
        bq = 2 * (cx_ * ddx + cz_ * ddz)
        cq = cx_ * cx_ + cz_ * cz_ - c.r * c.r
        disc = bq * bq - 4 * a * cq
        tc = (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        yv = oyy + tc * ddy
        tcur = t[sub]
        side = (disc > 0) & (tc > EPS) & (tc < tcur) & (yv >= c.y0) & (yv <= c.y1)
        tt = (c.y1 - oyy) / ddy
        px, pz = cx_ + tt * ddx, cz_ + tt * ddz
        cap = (tt > EPS) & (tt < np.where(side, tc, tcur)) & (px * px + pz * pz <= c.r * c.r) & (ddy < 0)
        for mask, tv, is_cap in ((side & ~cap, tc, False), (cap, tt, True)):
            loc = np.flatnonzero(mask)
            if not len(loc):
                continue
            g = loc if idx is None else idx[loc]
            t[g] = tv[loc]
            sid[g] = 1000 + j
            if is_cap:
                nrm[g] = (0.0, 1.0, 0.0)
            else:
                nrm[g, 0] = (cx_[loc] + tv[loc] * ddx[loc]) / c.r
                nrm[g, 1] = 0.0
                nrm[g, 2] = (cz_[loc] + tv[loc] * ddz[loc]) / c.r
    if not skip_people and s.people:
        cam = s.camera
        fh = np.array([cam.fwd[0], 0.0, cam.fwd[2]])
        fh /= np.linalg.norm(fh) + 1e-9
        rh = np.array([fh[2], 0.0, -fh[0]])
        for k, pp in enumerate(s.people):
            lo = np.array([pp.x - 0.3, 0.0, pp.z - 0.3])
            idx = _candidates(s, lo, lo + np.array([0.6, pp.height, 0.6]), grid, n)
            if idx is not None and not len(idx):
                continue
            sub = slice(None) if idx is None else idx
            den = dx[sub] * fh[0] + dz[sub] * fh[2]
            tp = ((pp.x - ox[sub]) * fh[0] + (pp.z - oz[sub]) * fh[2]) / np.where(np.abs(den) < 1e-9, 1e-9, den)
            qx, qy, qz = ox[sub] + tp * dx[sub] - pp.x, oy[sub] + tp * dy[sub], oz[sub] + tp * dz[sub] - pp.z
            a_ = qx * rh[0] + qz * rh[2]
            hit = (tp > EPS) & (tp < t[sub]) & _silhouette(a_, qy, pp.height)
            loc = np.flatnonzero(hit)
            g = loc if idx is None else idx[loc]
            t[g] = tp[loc]
            sid[g] = 2000 + k
            nrm[g] = -fh
    p = np.stack([ox + t * dx, oy + t * dy, oz + t * dz], axis=1)
    return Hit(t, sid, p.astype(np.float32), nrm)


def _silhouette(a: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """Inside a standing person's outline (``a`` across, ``y`` up, metres)."""
    head = (a * a + (y - (h - 0.12)) ** 2) < 0.11 ** 2
    neck = (np.abs(a) < 0.06) & (y > h - 0.28) & (y < h - 0.18)
    w_t = 0.22 - 0.05 * np.clip((y - 0.55 * h) / (0.4 * h), 0, 1)
    torso = (np.abs(a) < w_t) & (y >= 0.47 * h) & (y <= h - 0.24)
    legs = (np.abs(np.abs(a) - 0.09) < 0.075) & (y >= 0) & (y < 0.48 * h)
    return head | neck | torso | legs


# ---- shading ---------------------------------------------------------------------------------------
def _material_of(s: Scene, sid: int, up: bool) -> Material | None:
    if sid == 0:
        return s.floor
    if sid == 1:
        return s.ceiling
    if 2 <= sid <= 5:
        return s.walls[sid - 2]
    if 10 <= sid < 1000:
        b = s.boxes[sid - 10]
        return b.top if up else b.side
    if 1000 <= sid < 2000:
        c = s.cyls[sid - 1000]
        return c.top if up else c.side
    return None


def _plane_coords(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates (metres) on the plane of each hit: (x, z) up/down, (z, y) x-facing, (x, y) z-facing."""
    ax = np.argmax(np.abs(n), axis=1)
    u = np.where(ax == 1, p[:, 0], np.where(ax == 0, p[:, 2], p[:, 0]))
    v = np.where(ax == 1, p[:, 2], -p[:, 1])
    return u, v


def _sample(m: Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Texture lookup (``(N, 3)``) with a mip level from each pixel's footprint (metres per pixel)."""

    if m.flat or len(u) == 0:
        return np.broadcast_to(m.colour, (len(u), 3)).astype(np.float32)
    mips = sf.texture_mips(m.kind, m.variant)
    scale = sf.TILE / m.tile_m
    mx = ((u + m.offset[0]) * scale).astype(np.float32).reshape(-1, 1)
    my = ((v + m.offset[1]) * scale).astype(np.float32).reshape(-1, 1)
    level = np.clip(np.log2(np.maximum(footprint * scale, 1e-6)), 0, len(mips) - 1)
    out = np.empty((len(u), 3), np.float32)
    lv = np.rint(level).astype(np.int32)
    for k in np.unique(lv):
        sel = lv == k
        out[sel] = _remap_points(mips[k], mx[sel], my[sel])
    return out * m.colour / 0.8


def _remap_points(tex: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear, wrapped lookups of ``N`` points (``cv2.remap`` takes at most 32767 rows: fold them)."""
    import cv2

    n = len(mx)
    cols = 1024
    rows = -(-n // cols)
    pad = rows * cols - n
    fx = np.pad(mx.reshape(-1), (0, pad)).reshape(rows, cols)
    fy = np.pad(my.reshape(-1), (0, pad)).reshape(rows, cols)
    res = cv2.remap(tex, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return res.reshape(rows * cols, -1)[:n]


def _rects(rects: list[Rect], a: np.ndarray, b: np.ndarray) -> list[tuple[Rect, np.ndarray]]:
    out = []
    for r in rects:
        m = (a >= r.a0) & (a <= r.a1) & (b >= r.b0) & (b <= r.b1)
        if m.any():
            out.append((r, m))
    return out


@dataclass
class Shaded:
    """Per-ray shading: display-linear colour, albedo, irradiance, dry gloss/roughness/porosity."""

    colour: np.ndarray
    albedo: np.ndarray
    light: np.ndarray
    gloss: np.ndarray
    rough: np.ndarray
    porous: np.ndarray


def shade(s: Scene, hit: Hit, d: np.ndarray, pix_angle: float, shadows: np.ndarray | None = None) -> Shaded:
    """Lambert lighting + emission for every hit (linear radiance, before exposure)."""
    n = len(hit.t)
    albedo = np.zeros((n, 3), np.float32)
    emis = np.zeros((n, 3), np.float32)
    gloss = np.zeros(n, np.float32)
    rough = np.full(n, 0.05, np.float32)
    porous = np.zeros(n, np.float32)
    cosi = np.abs(np.einsum("ij,ij->i", hit.n, d)) + 1e-3
    footprint = hit.t * pix_angle / cosi
    up = hit.top
    u, v = _plane_coords(hit.p, hit.n)
    slot = hit.sid.astype(np.int64) * 2 + up
    order = np.argsort(slot, kind="stable")
    cuts = np.flatnonzero(np.diff(slot[order])) + 1
    for sel in np.split(order, cuts):  # one group of pixels per (surface, upper face or not)
        if not len(sel):
            continue
        sid, is_up = int(slot[sel[0]] // 2), bool(slot[sel[0]] % 2)
        if sid >= 2000:  # a person: shirt, trousers, skin by height
            pp = s.people[sid - 2000]
            y = hit.p[sel, 1]
            col = np.where((y > pp.height - 0.25)[:, None], pp.skin, np.where((y > 0.47 * pp.height)[:, None], pp.shirt, pp.trousers))
            albedo[sel] = col
            continue
        m = _material_of(s, sid, is_up)
        if m is None:
            continue
        albedo[sel] = _sample(m, u[sel], v[sel], footprint[sel])
        gloss[sel], rough[sel], porous[sel] = m.gloss, m.rough, m.porous
    # decals and emitters on the room's planes
    fl = hit.sid == 0
    if fl.any() and s.floor_decals:
        for r, inside in _rects(s.floor_decals, hit.p[fl, 0], hit.p[fl, 2]):
            idx = np.flatnonzero(fl)[inside]
            albedo[idx] = r.colour * (0.9 + 0.1 * mean3(albedo[idx], keepdims=True) / 0.8)
            if r.gloss is not None:
                gloss[idx] = r.gloss
            if r.porous is not None:
                porous[idx] = r.porous
    ce = hit.sid == 1
    if ce.any():
        for r, inside in _rects(s.ceiling_panels, hit.p[ce, 0], hit.p[ce, 2]):
            idx = np.flatnonzero(ce)[inside]
            emis[idx] = r.colour * r.emissive
            albedo[idx] = 0.9
    for w in range(4):
        sel = hit.sid == 2 + w
        if sel.any() and s.wall_rects[w]:
            a = hit.p[sel, 2] if w < 2 else hit.p[sel, 0]
            for r, inside in _rects(s.wall_rects[w], a, hit.p[sel, 1]):
                idx = np.flatnonzero(sel)[inside]
                if r.kind == "window":
                    emis[idx] = r.colour * r.emissive
                    albedo[idx] = 0.2
                else:
                    albedo[idx] = r.colour
    light = np.broadcast_to(s.ambient, (n, 3)).astype(np.float32) * (0.75 + 0.25 * hit.n[:, 1:2])
    for k, lt in enumerate(s.lights):
        dl = lt.pos[None, :].astype(np.float32) - hit.p
        dist = np.sqrt(np.einsum("ij,ij->i", dl, dl)) + 1e-6
        lam = np.clip(np.einsum("ij,ij->i", hit.n, dl) / dist, 0, 1)
        fall = lt.power / (1.0 + (dist / lt.reach) ** 2)
        sh = shadows[:, k] if shadows is not None and k < shadows.shape[1] else 1.0
        light += (lam * fall * sh)[:, None] * lt.colour
    colour = albedo * light + emis
    return Shaded(colour, albedo, light, gloss, rough, porous)


def _shadows(s: Scene, p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Light visibility ``(N, n_lights)`` for points ``p`` where ``mask`` (others 1)."""
    out = np.ones((len(p), len(s.lights)), np.float32)
    idx = np.flatnonzero(mask)
    if not len(idx):
        return out
    q = p[idx] + np.array([0, 2e-3, 0], np.float32)
    for k, lt in enumerate(s.lights):
        dl = lt.pos[None, :] - q
        dist = norm3(dl)
        d = dl / dist[:, None]
        inv = 1.0 / _safe(d)
        blocked = np.zeros(len(idx), bool)
        qs, invs = [np.ascontiguousarray(q[:, a]) for a in range(3)], [np.ascontiguousarray(inv[:, a]) for a in range(3)]
        for b in s.boxes:  # slab test, one axis at a time (a reduction over an axis of 3 is slow)
            t1, t2 = (b.lo[0] - qs[0]) * invs[0], (b.hi[0] - qs[0]) * invs[0]
            tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
            for a in (1, 2):
                t1, t2 = (b.lo[a] - qs[a]) * invs[a], (b.hi[a] - qs[a]) * invs[a]
                tn, tf = np.maximum(tn, np.minimum(t1, t2)), np.minimum(tf, np.maximum(t1, t2))
            blocked |= (tn <= tf) & (tn > 1e-3) & (tn < dist)
        for c in s.cyls:
            ox, oz = q[:, 0] - c.x, q[:, 2] - c.z
            a = d[:, 0] ** 2 + d[:, 2] ** 2 + 1e-9
            bq = 2 * (ox * d[:, 0] + oz * d[:, 2])
            disc = bq * bq - 4 * a * (ox * ox + oz * oz - c.r * c.r)
            tc = (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            y = q[:, 1] + tc * d[:, 1]
            blocked |= (disc > 0) & (tc > 1e-3) & (tc < dist) & (y >= c.y0) & (y <= c.y1)
        out[idx, k] = np.where(blocked, 0.25, 1.0)
    return out


# ---- rendering ---------------------------------------------------------------------------------------
@dataclass
class GBuffer:
    """What the liquid compositor needs, at render resolution ``(h, w)``.

    Attributes:
        p: ``(h, w, 3)`` world point of each pixel.
        n: ``(h, w, 3)`` normal.
        sid: ``(h, w)`` surface id (see :class:`Hit`).
        view: ``(h, w, 3)`` unit ray direction.
        t: ``(h, w)`` distance along the ray.
        reflection: ``(h, w, 3)`` display-linear radiance a perfect mirror at the pixel would
            show (horizontal surfaces; 0 elsewhere), after the scene's exposure.
        light: ``(h, w, 3)`` irradiance at the pixel after exposure (a white diffuse surface's value).
        porous: ``(h, w)`` how much the dry surface darkens when wet.
        gloss: ``(h, w)`` dry specular factor.
        lights: Light positions ``(L, 3)`` and exposed colours ``(L, 3)`` (for highlights).
        camera: The camera.
        exposure: Display-linear = radiance * exposure, before the tone curve.
    """

    p: np.ndarray
    n: np.ndarray
    sid: np.ndarray
    view: np.ndarray
    t: np.ndarray
    reflection: np.ndarray
    light: np.ndarray
    porous: np.ndarray
    gloss: np.ndarray
    lights: tuple[np.ndarray, np.ndarray]
    camera: Camera
    exposure: float
    holds: np.ndarray  # (h, w) bool: a horizontal surface a liquid can lie on


def tone(x: np.ndarray) -> np.ndarray:
    """Display-linear radiance -> [0, 1] (a soft shoulder, so lights and windows saturate gently)."""
    return 1.0 - np.exp(-np.maximum(x, 0) * 1.6)


def _scatter(a: np.ndarray, pix: np.ndarray | None, n: int, fill: float) -> np.ndarray:
    """Per-ray values of the pixels ``pix`` -> all ``n`` pixels (``fill`` elsewhere; ``pix`` None: all)."""
    if pix is None:
        return a
    out = np.full((n, *a.shape[1:]), fill, a.dtype)
    out[pix] = a
    return out


@dataclass
class _Pass:
    """Primary rays (all pixels, or the pixels ``pix``), their shading and mirror reflections."""

    d3: np.ndarray
    pix: np.ndarray | None
    hit: Hit
    d: np.ndarray
    horiz: np.ndarray
    shaded: Shaded
    refl: np.ndarray
    pix_angle: float


def _trace_and_shade(s: Scene, scale: float, region: np.ndarray | None = None) -> _Pass:
    """Trace and shade the camera's pixels (``region``: only where this ``(h, w)`` mask is set).

    A pixel at least :data:`_REGION_MARGIN` pixels inside the region gets exactly the full
    frame's values: everything is per ray except the shadows and reflections, which are
    computed on sparse grids and interpolated over the whole frame (untraced grid points count
    as lit and unreflecting), and that interpolation reaches about 12 pixels.
    """
    import cv2

    cam = s.camera
    d3 = cam.rays(scale)
    h, w = d3.shape[:2]
    pix = None if region is None else np.flatnonzero(region.reshape(-1))
    d = d3.reshape(-1, 3) if pix is None else d3.reshape(-1, 3)[pix]

    def at(mask: np.ndarray) -> np.ndarray:  # a full-frame (h, w) mask at the traced rays
        return mask.reshape(-1) if pix is None else mask.reshape(-1)[pix]

    def full(a: np.ndarray, fill: float) -> np.ndarray:  # per traced ray -> per pixel
        return _scatter(a, pix, h * w, fill)

    hit = trace(s, cam.pos, d, grid=(h, w, scale) if pix is None else (h, w, scale, pix))
    pix_angle = 1.0 / (cam.f * scale)
    horiz = hit.top & ((hit.sid == 0) | ((hit.sid >= 10) & (hit.sid < 1000)))
    horiz_full = full(horiz, False)
    # shadows on horizontal surfaces, at quarter resolution then smoothed (soft shadows)
    grid = np.zeros((h, w), bool)
    grid[::4, ::4] = True
    need = horiz & at(grid)
    sh_sparse = full(_shadows(s, hit.p, need), 1.0)
    if len(s.lights):
        sh = np.ones((h * w, len(s.lights)), np.float32)
        small = sh_sparse.reshape(h, w, -1)[::4, ::4]
        for k in range(len(s.lights)):
            up = cv2.resize(small[..., k], (w, h), interpolation=cv2.INTER_LINEAR)
            sh[:, k] = cv2.GaussianBlur(up, (0, 0), 1.5).reshape(-1)
        sh[~horiz_full] = 1.0
        sh = sh if pix is None else sh[pix]
    else:
        sh = None
    sd = shade(s, hit, d, pix_angle, sh)
    # contact shadows: floor near the foot of boxes and cylinders is darker (ambient occlusion)
    fl = np.flatnonzero(hit.sid == 0)
    if len(fl):
        ao = np.ones(len(fl), np.float32)
        px, pz = hit.p[fl, 0], hit.p[fl, 2]
        for b in s.boxes:
            if b.lo[1] > 0.05:
                continue
            dx = np.maximum(np.maximum(b.lo[0] - px, px - b.hi[0]), 0)
            dz = np.maximum(np.maximum(b.lo[2] - pz, pz - b.hi[2]), 0)
            ao *= 1 - 0.4 * np.exp(-np.hypot(dx, dz) / 0.12)
        for c in s.cyls:
            if c.y0 <= 0.05:
                ao *= 1 - 0.35 * np.exp(-np.maximum(np.hypot(px - c.x, pz - c.z) - c.r, 0) / 0.08)
        sd.light[fl] *= ao[:, None]
        sd.colour[fl] = sd.albedo[fl] * sd.light[fl] + (sd.colour[fl] - sd.albedo[fl] * sd.light[fl] / ao[:, None])
    # reflections: a second ray from every horizontal surface
    # (every other row and column; mirrors are smooth or blurred, and this is half the cost)
    half = np.zeros((h, w), bool)
    half[::2, ::2] = True
    sub = np.flatnonzero(horiz & at(half))
    refl_half = np.zeros(((h + 1) // 2 * ((w + 1) // 2), 3), np.float32)
    if len(sub):
        rd = d[sub] * np.array([1, -1, 1], np.float32)
        rh = trace(s, hit.p[sub] + np.array([0, 1e-3, 0], np.float32), rd)
        rs = shade(s, rh, rd, pix_angle * 2)
        q = sub if pix is None else pix[sub]
        r_, c_ = q // w, q % w
        refl_half[(r_ // 2) * ((w + 1) // 2) + c_ // 2] = rs.colour
    refl = cv2.resize(refl_half.reshape((h + 1) // 2, (w + 1) // 2, 3), (w, h), interpolation=cv2.INTER_LINEAR).reshape(-1, 3)
    refl[~horiz_full] = 0.0
    return _Pass(d3, pix, hit, d, horiz, sd, refl if pix is None else refl[pix], pix_angle)


def _gbuffer(s: Scene, ps: _Pass, expo: float) -> GBuffer:
    """The G-buffer of a pass (pixels not traced: no surface, zeros)."""
    h, w = ps.d3.shape[:2]
    hit, sd, pix = ps.hit, ps.shaded, ps.pix

    def img(a: np.ndarray, fill: float = 0) -> np.ndarray:
        return _scatter(a, pix, h * w, fill).reshape(h, w, *a.shape[1:])

    lights = (np.array([lt.pos for lt in s.lights], np.float32).reshape(-1, 3),
              np.array([lt.colour * lt.power * expo for lt in s.lights], np.float32).reshape(-1, 3))
    return GBuffer(img(hit.p), img(hit.n), img(hit.sid, -1), ps.d3, img(hit.t), img(ps.refl * expo), img(sd.light * expo),
                   img(sd.porous), img(sd.gloss), lights, s.camera, expo, img(ps.horiz & _holds(s, hit.sid), False))


def _render_buffers(s: Scene, scale: float) -> tuple[np.ndarray, GBuffer, dict[str, Any]]:
    import cv2

    ps = _trace_and_shade(s, scale)
    h, w = ps.d3.shape[:2]
    sd, d = ps.shaded, ps.d
    hi = np.flatnonzero(ps.horiz)
    expo = s.exposure * _auto_exposure(sd.colour)
    cosv = np.abs(d[:, 1])  # the floor's normal is y: cos of the viewing angle on horizontal surfaces
    f0 = 0.04
    fres = f0 + (1 - f0) * (1 - cosv) ** 5
    dry = sd.colour * expo
    refl_img = (ps.refl * expo).reshape(h, w, 3)
    rough = float(np.median(sd.rough[hi])) if len(hi) else 0.03
    blur = cv2.GaussianBlur(refl_img, (0, 0), max(0.5, rough * h))
    k = (sd.gloss * fres)[:, None]
    dry = dry * (1 - k) + blur.reshape(-1, 3) * k
    img = tone(dry).reshape(h, w, 3)
    info = {"exposure": round(float(expo), 4)}
    return img, _gbuffer(s, ps, float(expo)), info


def _region_gbuffer(s: Scene, scale: float, region: np.ndarray, expo: float) -> GBuffer:
    """:func:`_render_buffers`' G-buffer on the pixels of ``region`` only, given the frame's exposure."""
    return _gbuffer(s, _trace_and_shade(s, scale, region), expo)


def _holds(s: Scene, sid: np.ndarray) -> np.ndarray:
    ok = sid == 0
    for i, b in enumerate(s.boxes):
        if b.holds_liquid:
            ok |= sid == 10 + i
    return ok


def _auto_exposure(col: np.ndarray) -> float:
    lum = col @ np.array([0.3, 0.59, 0.11], np.float32)
    med = float(np.median(lum))
    return 0.35 / max(med, 1e-3)


@lru_cache(maxsize=4)
def _cached(family: str, seed: int, width: int, height: int, scale: float) -> tuple[np.ndarray, GBuffer, dict[str, Any], Scene]:
    s = sample_scene(family, seed, width, height)
    img, gb, info = _render_buffers(s, scale)
    return img, gb, info, s


def render_scale(width: int, height: int) -> float:
    """Rays per output pixel side: full resolution up to 384 px, then 384 rays across
    (CCTV optics and compression are softer than that; the camera model upsamples)."""
    side = max(width, height)
    return 1.0 if side <= 384 else max(0.25, 384.0 / side)


def render(family: str, seed: int, width: int, height: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Render a clean scene; returns ``(float32 RGB [0, 1] before the camera model, layout)``.

    The picture is at render resolution (:func:`render_scale`; the camera model brings it
    to ``width x height``).

    The layout holds what stage 2 proposes boxes from and stage 3 rebuilds the G-buffer
    from: ``room`` (family, seed, size, version, exposure), the camera, a 32x32 grid of surfaces a
    liquid can lie on (``"1"``), the horizontal surfaces and the sampled parameters.
    """
    import cv2

    scale = render_scale(width, height)
    img, gb, info, s = _cached(family, seed, width, height, scale)
    holds = cv2.resize(gb.holds.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.5
    tops = [[round(float(b.lo[0]), 3), round(float(b.hi[0]), 3), round(float(b.lo[2]), 3), round(float(b.hi[2]), 3),
             round(float(b.hi[1]), 3)] for b in s.boxes if b.holds_liquid]
    layout = {
        "room": {"family": family, "seed": int(seed), "width": int(width), "height": int(height), "v": VERSION,
                 "exposure": float(gb.exposure)},  # exact: stage 3 re-renders only the boxes with it
        "camera": s.camera.to_dict(),
        "surface_grid": ["".join("1" if v else "0" for v in row) for row in holds],
        "surfaces": {"floor": [round(float(v), 3) for v in s.size], "tops": tops},
        "params": {**s.params, **info},
    }
    return img.copy(), layout


#: Render pixels traced around a box read from a partial G-buffer: the bilinear read (1), the
#: shadows' quarter-resolution grid (4) and their blur (6), the reflections' half grid (2).
_REGION_MARGIN = 16


def gbuffer(layout: dict[str, Any], boxes: list[tuple[int, int, int, int]] | None = None,
            out_size: tuple[int, int] | None = None) -> tuple[GBuffer, Scene]:
    """The G-buffer of a scene rendered by :func:`render` (rebuilt from its layout).

    Args:
        layout: The scene's layout.
        boxes: Only these output-image boxes ``(x1, y1, x2, y2)`` will be read: rebuild just
            them (their values are exactly the full frame's). Needs ``out_size`` and a layout
            that records its exposure (all but those of before it did: they get the full frame).
        out_size: ``(width, height)`` of the output image ``boxes`` are in.
    """
    r = layout["room"]
    width, height = int(r["width"]), int(r["height"])
    scale = render_scale(width, height)
    if boxes is None or out_size is None or r.get("exposure") is None:
        _, gb, _, s = _cached(r["family"], int(r["seed"]), width, height, scale)
        return gb, s
    s = sample_scene(r["family"], int(r["seed"]), width, height)
    wr, hr = s.camera.grid_size(scale)
    sx, sy = wr / out_size[0], hr / out_size[1]
    region = np.zeros((hr, wr), bool)
    m = _REGION_MARGIN
    for x1, y1, x2, y2 in boxes:
        region[max(0, math.floor(y1 * sy) - m):max(0, math.ceil(y2 * sy) + m),
               max(0, math.floor(x1 * sx) - m):max(0, math.ceil(x2 * sx) + m)] = True
    return _region_gbuffer(s, scale, region, float(r["exposure"])), s


def surface_for_box(layout: dict[str, Any], box: tuple[int, int, int, int], out_size: tuple[int, int],
                    gb: GBuffer | None = None) -> Any:
    """The :class:`synspill.synth.liquid.Surface` under an image box of a ray-cast scene.

    The spill lies on the horizontal surface (floor, desk, counter, stair tread) that covers
    most of the box; pixels showing anything else (an object in front, a wall) are not it.

    Args:
        layout: The scene's layout (from :func:`render`).
        box: Integer ``(x1, y1, x2, y2)`` of the output image.
        out_size: ``(width, height)`` of the output image.
        gb: The scene's G-buffer, if already built (:func:`gbuffer`, with this box among its boxes).
    """
    import cv2

    from synspill.synth.liquid import Surface, to_linear

    if gb is None:
        gb, _ = gbuffer(layout)
    W, H = out_size
    hr, wr = gb.sid.shape
    x1, y1, x2, y2 = box
    sx, sy = wr / W, hr / H
    # render-resolution coordinates of the crop's pixel centres
    xs = ((np.arange(x1, x2, dtype=np.float32) + 0.5) * sx - 0.5)[None, :]
    ys = ((np.arange(y1, y2, dtype=np.float32) + 0.5) * sy - 0.5)[:, None]
    mx = np.broadcast_to(xs, (y2 - y1, x2 - x1)).astype(np.float32)
    my = np.broadcast_to(ys, (y2 - y1, x2 - x1)).astype(np.float32)

    def lin(a: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(a, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def near(a: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(a), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)

    sid = near(gb.sid.astype(np.float32)).astype(np.int32)
    holds = near(gb.holds.astype(np.uint8)) > 0
    cand = sid[holds]
    if cand.size == 0:
        chosen = -1
        on = np.zeros(sid.shape, bool)
    else:
        vals, counts = np.unique(cand, return_counts=True)
        chosen = int(vals[np.argmax(counts)])
        on = (sid == chosen) & holds
    p = lin(gb.p)
    view = lin(gb.view)
    view /= norm3(view, keepdims=True) + 1e-9
    mirror = to_linear(tone(lin(gb.reflection)))
    light = to_linear(tone(lin(gb.light)))
    porous = lin(gb.porous)
    pos, col = gb.lights
    lights = (pos, to_linear(tone(col)) * 4.0)
    return Surface(p[..., 0], p[..., 2], on, np.abs(view[..., 1]), mirror, light, porous, view, p, lights,
                   meta={"surface": chosen})


def propose(layout: dict[str, Any], width: int, height: int, rng: np.random.Generator, n: int, classes: list[int],
            sizes: dict[int, tuple[tuple[float, float], tuple[float, float]]], scale: float, min_px: float,
            close_up: float = 0.0) -> list[tuple[tuple[float, float, float, float], int]]:
    """Spill boxes on the surfaces of a ray-cast scene where liquids lie (floor, desks, counters, treads).

    A point is drawn on the visible liquid-holding surfaces (uniformly over the image), a
    spill of a real size in metres (``sizes``, times ``scale``) is laid there on the plane,
    and its footprint's four corners are projected: the box covers it, in perspective.

    With probability ``close_up`` the first spill is seen close up instead: it lies near the
    middle of the view and its footprint is scaled (still on its plane, in perspective) until
    the box side, ``sqrt(w * h)``, is a drawn 35-95 % of the image's.

    Returns:
        ``[((x1, y1, x2, y2), class_id), ...]`` absolute pixels, pairwise IoU below 0.1.
    """
    from synspill.boxes import iou

    cam_d = layout["camera"]
    f = float(cam_d["f"])
    pos = np.array(cam_d["pos"], np.float64)
    right, down, fwd = (np.array(cam_d[k], np.float64) for k in ("right", "down", "fwd"))
    sw, sh = width / float(layout["room"]["width"]), height / float(layout["room"]["height"])
    cam = Camera(int(layout["room"]["width"]), int(layout["room"]["height"]), f, pos, right, down, fwd)
    grid = np.array([[c == "1" for c in row] for row in layout["surface_grid"]], bool)
    cells = np.argwhere(grid)
    if not len(cells):
        return []
    x0, x1, z0, z1, _ = layout["surfaces"]["floor"]
    tops = layout["surfaces"].get("tops") or []
    gh, gw = grid.shape
    out: list[tuple[tuple[float, float, float, float], int]] = []

    for k in range(n):
        cls = int(classes[int(rng.integers(len(classes)))])
        close = k == 0 and close_up > 0 and rng.random() < close_up  # no draw when off: same boxes as before
        target = rng.uniform(*CLOSE_UP_SIDE) if close else 0.0
        for _attempt in range(30):
            if close:
                px = (0.5 + rng.uniform(-0.2, 0.2)) * cam.width
                py = (0.6 + rng.uniform(-0.2, 0.25)) * cam.height
                r, c = min(gh - 1, int(py / cam.height * gh)), min(gw - 1, int(px / cam.width * gw))
                if not grid[r, c]:
                    continue
            else:
                r, c = cells[int(rng.integers(len(cells)))]
                px = (c + rng.random()) / gw * cam.width
                py = (r + rng.random()) / gh * cam.height
            d = fwd + (px - cam.width / 2) / f * right + (py - cam.height / 2) / f * down
            d /= np.linalg.norm(d)
            if d[1] >= -1e-6:
                continue
            # the nearest plane the ray meets: a liquid-holding top, else the floor
            best_t, plane, bounds = -pos[1] / d[1], 0.0, (x0, x1, z0, z1)
            for tx0, tx1, tz0, tz1, ty in tops:
                t = (ty - pos[1]) / d[1]
                hp = pos + t * d
                if 0 < t < best_t and tx0 <= hp[0] <= tx1 and tz0 <= hp[2] <= tz1:
                    best_t, plane, bounds = t, ty, (tx0, tx1, tz0, tz1)
            hp = pos + best_t * d
            (wlo, whi), (rlo, rhi) = sizes[cls]
            wm = scale * math.exp(rng.uniform(math.log(wlo), math.log(whi)))
            if rng.random() < 0.25:  # a large spill (a burst, a flooded area): a few times the usual size
                wm *= rng.uniform(2.0, 4.0)
            dm = wm * rng.uniform(rlo, rhi)
            if plane > 0:  # on a desk or counter: smaller spills
                wm, dm = wm * 0.35, dm * 0.35
            uv = None
            for _fit in range(3 if close else 1):
                ax0, ax1 = max(bounds[0], hp[0] - wm / 2), min(bounds[1], hp[0] + wm / 2)
                az0, az1 = max(bounds[2], hp[2] - dm / 2), min(bounds[3], hp[2] + dm / 2)
                if ax1 - ax0 < 0.02 or az1 - az0 < 0.02:
                    uv = None
                    break
                corners = np.array([[ax0, plane, az0], [ax1, plane, az0], [ax1, plane, az1], [ax0, plane, az1]])
                uv = cam.project(corners)
                if np.isnan(uv).any():
                    uv = None
                    break
                if close:  # projection is near-linear in size: rescale toward the target twice
                    side = math.sqrt(max(1e-6, (np.ptp(uv[:, 0]) / cam.width) * (np.ptp(uv[:, 1]) / cam.height)))
                    grow = min(4.0, max(0.25, target / side))
                    wm, dm = wm * grow, dm * grow
            if uv is None:
                continue
            bx1, by1 = max(0.0, uv[:, 0].min() * sw), max(0.0, uv[:, 1].min() * sh)
            bx2, by2 = min(float(width), uv[:, 0].max() * sw), min(float(height), uv[:, 1].max() * sh)
            cap = 0.99 if close else 0.9
            if bx2 - bx1 < min_px or by2 - by1 < min_px or bx2 - bx1 > cap * width or by2 - by1 > cap * height:
                continue
            b = (round(bx1, 1), round(by1, 1), round(bx2, 1), round(by2, 1))
            c1, r1 = int(b[0] / width * gw), int(b[1] / height * gh)
            c2, r2 = max(c1 + 1, int(math.ceil(b[2] / width * gw))), max(r1 + 1, int(math.ceil(b[3] / height * gh)))
            if grid[r1:r2, c1:c2].mean() < 0.6:
                continue  # mostly hidden behind objects
            if any(iou(b, o[0]) > 0.1 for o in out):
                continue
            out.append((b, cls))
            break
    return out
