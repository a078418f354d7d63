"""Built-in procedural backends: industrial scenes and spills on a CPU, nothing downloaded.

:class:`ProceduralSceneBackend` renders a pinhole-camera view of a plant room: a textured
floor plane in perspective (concrete, epoxy, tiles, grating, checker plate), back and side
walls, pipes with flanges and valves, tanks, pumps, drums, cabinets, columns, cable trays,
drains, mats and floor markings, lit by a few coloured lights with fall-off, cast shadows and
glossy floor reflections, then passed through a camera model (blur, vignetting, exposure,
sensor noise; JPEG quality is chosen per image for CCTV-like compression).

:class:`ProceduralSpillBackend` paints fluid-like shapes (metaball lobes along a flow
direction roughened by noise, thin runs, satellite drops, streaks, smears, scattered powder)
with a per-class material model (glossy oil with specular rims and thin-film sheen, water
that darkens the floor and mirrors what is above it, coloured chemicals and coolant, rust,
dried stains, grease, powder), lit by the scene's own local brightness and colour cast and
given the scene's noise level so that the spill is not smoother than its surroundings.

Distractors that are *not* spills by the taxonomy are part of every scene family: cast
shadows, dark rubber mats and drums, drains, repair patches, light reflections on glossy
floors, so that "dark" or "glossy" alone does not mean "spill".

Coordinates: boxes are absolute ``xyxy`` pixels of the output image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from synspill.boxes import tight_box
from synspill.synth import room as places
from synspill.synth import textures as tx
from synspill.synth.base import SceneSpec, SpillResult, SpillSpec

#: Plant rooms (drawn by :class:`_SceneRenderer`).
PLANT_TYPES = ("corridor", "pump-room", "control-room", "walkway", "tank-farm", "loading-bay", "compressor-hall", "workshop")
#: Everyday places (ray-cast by :mod:`synspill.synth.room`); ``corridor`` is the plant one,
#: ``hallway`` the office/hospital kind.
PLACE_TYPES = tuple("hallway" if f == "corridor" else f for f in places.FAMILIES)
SCENE_TYPES = PLANT_TYPES + PLACE_TYPES
#: What ``synspill scenes`` draws from by default (uniformly; a repeat weighs double).
DEFAULT_TYPES = PLACE_TYPES + PLACE_TYPES + PLANT_TYPES

# Light colours (RGB multipliers): warm white, neutral, cool fluorescent, sodium, greenish tube.
LIGHT_COLOURS = np.array([[1.0, 0.9, 0.75], [1.0, 1.0, 1.0], [0.85, 0.95, 1.05],
                          [1.1, 0.8, 0.5], [0.9, 1.02, 0.9]], np.float32)

PAINT = np.array([  # equipment paint colours (0-1 RGB)
    [0.55, 0.57, 0.58], [0.35, 0.45, 0.62], [0.25, 0.45, 0.3], [0.7, 0.2, 0.15], [0.85, 0.7, 0.15],
    [0.8, 0.8, 0.78], [0.2, 0.3, 0.5], [0.4, 0.42, 0.45], [0.15, 0.15, 0.16], [0.6, 0.35, 0.15],
], np.float32)

FLOOR_COLOURS = {
    "concrete": [[0.62, 0.6, 0.56], [0.55, 0.55, 0.55], [0.66, 0.62, 0.55], [0.45, 0.45, 0.47]],
    "epoxy": [[0.35, 0.5, 0.4], [0.55, 0.57, 0.58], [0.4, 0.45, 0.55], [0.6, 0.35, 0.3], [0.7, 0.68, 0.6]],
    "tiles": [[0.75, 0.72, 0.66], [0.55, 0.35, 0.28], [0.6, 0.6, 0.62]],
    "grating": [[0.55, 0.56, 0.58], [0.6, 0.55, 0.4], [0.45, 0.47, 0.5]],
    "checker-plate": [[0.62, 0.63, 0.65], [0.5, 0.5, 0.52]],
}
WALL_COLOURS = [[0.8, 0.8, 0.78], [0.65, 0.68, 0.7], [0.75, 0.72, 0.62], [0.5, 0.55, 0.6],
                [0.7, 0.78, 0.8], [0.55, 0.6, 0.5], [0.85, 0.83, 0.75]]

# Per scene type: floor choices, horizon range (fraction of height), back-wall depth (m),
# side-wall probability, equipment counts.
PRESETS: dict[str, dict[str, Any]] = {
    "corridor": dict(floors=("concrete", "epoxy", "tiles"), horizon=(0.3, 0.5), depth=(12, 40), sides=0.95,
                     tanks=(0, 1), pumps=(0, 1), drums=(0, 2), cabinets=(0, 2), columns=(0, 2), pipes=(2, 5)),
    "pump-room": dict(floors=("concrete", "epoxy", "checker-plate"), horizon=(0.25, 0.45), depth=(6, 16), sides=0.5,
                      tanks=(0, 1), pumps=(1, 4), drums=(0, 2), cabinets=(0, 1), columns=(0, 1), pipes=(2, 6)),
    "control-room": dict(floors=("tiles", "epoxy"), horizon=(0.3, 0.5), depth=(6, 14), sides=0.6,
                         tanks=(0, 0), pumps=(0, 1), drums=(0, 1), cabinets=(3, 7), columns=(0, 1), pipes=(0, 2)),
    "walkway": dict(floors=("grating", "checker-plate", "concrete"), horizon=(0.3, 0.55), depth=(10, 30), sides=0.4,
                    tanks=(0, 2), pumps=(0, 2), drums=(0, 1), cabinets=(0, 1), columns=(1, 3), pipes=(3, 7)),
    "tank-farm": dict(floors=("concrete",), horizon=(0.35, 0.6), depth=(15, 45), sides=0.1,
                      tanks=(2, 5), pumps=(0, 2), drums=(0, 3), cabinets=(0, 1), columns=(0, 1), pipes=(1, 4)),
    "loading-bay": dict(floors=("concrete", "epoxy"), horizon=(0.3, 0.5), depth=(10, 30), sides=0.5,
                        tanks=(0, 1), pumps=(0, 1), drums=(1, 5), cabinets=(0, 1), columns=(1, 3), pipes=(0, 3)),
    "compressor-hall": dict(floors=("concrete", "epoxy", "checker-plate"), horizon=(0.25, 0.45), depth=(10, 30), sides=0.4,
                            tanks=(1, 2), pumps=(2, 5), drums=(0, 2), cabinets=(0, 2), columns=(1, 3), pipes=(3, 7)),
    "workshop": dict(floors=("concrete", "epoxy", "checker-plate"), horizon=(0.28, 0.5), depth=(8, 25), sides=0.5,
                     tanks=(0, 1), pumps=(1, 2), drums=(1, 3), cabinets=(1, 3), columns=(0, 2), pipes=(1, 4)),
}


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    """Uniform in [a, b) -- also when b < a (degenerate geometry), unlike ``rng.uniform``."""
    return float(a + (b - a) * rng.random())


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


@dataclass
class _Cam:
    """Pinhole camera looking horizontally at a floor plane (render-resolution pixels)."""

    f: float   # focal length, px
    h: float   # camera height above the floor, m
    yh: float  # horizon row
    vx: float  # vanishing-point column

    def floor(self, x: float, z: float) -> tuple[float, float]:
        """Image point of floor point ``(x, z)`` (metres, z forward)."""
        return self.vx + self.f * x / z, self.yh + self.f * self.h / z

    def point(self, x: float, y: float, z: float) -> tuple[float, float]:
        """Image point of a 3-D point at height ``y``."""
        return self.vx + self.f * x / z, self.yh + self.f * (self.h - y) / z


@dataclass
class _Room:
    """What :meth:`_SceneRenderer.run` decided about the room (metres, render pixels)."""

    cam: _Cam
    zb: float  # depth of the back wall
    wall_h: float
    outdoor: bool
    left: bool  # side walls present
    right: bool
    xl: float  # distance of the left / right wall (60: none)
    xr: float
    floor_kind: str
    wall_kind: str
    gloss: float
    yb: float = 0.0  # back-wall base and top rows, its columns (set by the back-wall step)
    yt: float = 0.0
    c0: int = 0
    c1: int = 0


class ProceduralSceneBackend:
    """Procedural industrial scenes (CPU, deterministic per spec seed).

    Args:
        render_scale: Geometry and lighting are rendered at this fraction of the output
            size and upsampled (fine noise is added at full size); 0.5 is indistinguishable
            from full size after CCTV blur and compression and ~4x faster.
    """

    name = "procedural"

    def __init__(self, render_scale: float = 0.5) -> None:
        self.render_scale = render_scale

    def generate(self, specs: list[SceneSpec]) -> list[np.ndarray]:
        """Render one ``(H, W, 3)`` uint8 RGB image per spec."""
        return [self.render(s)[0] for s in specs]

    def render(self, spec: SceneSpec) -> tuple[np.ndarray, dict[str, Any]]:
        """Render one scene and its layout.

        Returns:
            ``(image, layout)``: ``(H, W, 3)`` uint8 RGB and a JSON-able dict with
            ``horizon`` (row), ``cam_height`` (m; pixels per metre on the floor at row y are
            ``(y - horizon) / cam_height``), ``focal`` (px), ``floor`` (polygon, list of ``[x, y]``),
            ``wall_base`` (row where back wall meets floor), ``equipment`` (list of
            ``{"kind", "box": [x1, y1, x2, y2], "drip": [x, y]}``; ``drip`` is the floor point
            below it where a leak would land), ``floor_grid`` (32 strings of 32 ``0``/``1``:
            floor visible, not hidden by equipment, on a 32x32 grid over the image),
            ``params`` (what was sampled). All absolute
            pixels of the output image.
        """
        if spec.scene_type in PLACE_TYPES:
            return render_place(spec)
        return _SceneRenderer(spec, self.render_scale).run()


def render_place(spec: SceneSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """A ray-cast everyday place (:mod:`synspill.synth.room`) through the camera model."""
    from synspill.synth import cctv

    family = "corridor" if spec.scene_type == "hallway" else spec.scene_type
    img, layout = places.render(family, spec.seed, spec.width, spec.height)
    out, cam = cctv.apply(img, np.random.default_rng([spec.seed, 99]), layout["camera"]["view"], (spec.width, spec.height))
    layout["params"].update(cam, scene_type=spec.scene_type)
    return out, layout


class _SceneRenderer:
    def __init__(self, spec: SceneSpec, render_scale: float) -> None:
        import cv2

        cv2.setNumThreads(1)
        self.spec = spec
        self.W, self.H = spec.width, spec.height
        scale = render_scale if min(self.W, self.H) >= 384 else 1.0
        self.rw, self.rh = max(16, int(round(self.W * scale))), max(16, int(round(self.H * scale)))
        self.sx, self.sy = self.W / self.rw, self.H / self.rh
        self.rng = np.random.default_rng(spec.seed)
        st = spec.scene_type if spec.scene_type in PRESETS else _pick(self.rng, PLANT_TYPES)
        self.scene_type = st
        self.p = PRESETS[st]
        self.equipment: list[dict[str, Any]] = []
        self.lights: list[tuple[float, float, float, np.ndarray]] = []  # x, y, radius, colour
        self.params: dict[str, Any] = {"scene_type": st}

    # -- helpers -------------------------------------------------------------------------
    def _rec(self, kind: str, box: tuple[float, float, float, float], drip: tuple[float, float]) -> None:
        x1, y1, x2, y2 = box
        bx = [max(0.0, x1 * self.sx), max(0.0, y1 * self.sy), min(self.W, x2 * self.sx), min(self.H, y2 * self.sy)]
        if bx[2] - bx[0] < 2 or bx[3] - bx[1] < 2:
            return
        self.equipment.append({"kind": kind, "box": [round(v, 1) for v in bx],
                               "drip": [round(drip[0] * self.sx, 1), round(min(drip[1], self.rh - 1) * self.sy, 1)]})

    @staticmethod
    def _cyl_profile(n: int, rng: np.random.Generator, metal: bool) -> np.ndarray:
        """Shading across a cylinder: dark rims, a soft highlight (sharper on bare metal)."""
        t = (np.arange(n, dtype=np.float32) + 0.5) / max(n, 1)
        c = _u(rng, 0.3, 0.7)
        prof = 0.45 + 0.6 * np.sin(np.pi * t) ** 0.7
        prof += (0.55 if metal else 0.2) * np.exp(-((t - c) / (0.06 if metal else 0.15)) ** 2)
        return prof.astype(np.float32)

    def _hcyl(self, img: np.ndarray, x1: float, x2: float, yc: float, r: float, col: np.ndarray, metal: bool = False) -> None:
        """Horizontal cylinder (pipe, motor) as an image-aligned shaded band."""
        y1, y2 = int(round(yc - r)), int(round(yc + r))
        a, b = int(round(max(0, x1))), int(round(min(self.rw, x2)))
        y1c, y2c = max(0, y1), min(self.rh, y2)
        if b <= a or y2c <= y1c or y2 <= y1:
            return
        prof = self._cyl_profile(y2 - y1, self.rng, metal)[y1c - y1:y2c - y1]
        img[y1c:y2c, a:b] = col[None, None, :] * prof[:, None, None]

    def _vcyl(self, img: np.ndarray, xc: float, r: float, y1: float, y2: float, col: np.ndarray, metal: bool = False) -> None:
        """Vertical cylinder (pipe drop, tank) as an image-aligned shaded band."""
        x1, x2 = int(round(xc - r)), int(round(xc + r))
        a, b = int(round(max(0, y1))), int(round(min(self.rh, y2)))
        x1c, x2c = max(0, x1), min(self.rw, x2)
        if b <= a or x2c <= x1c or x2 <= x1:
            return
        prof = self._cyl_profile(x2 - x1, self.rng, metal)[x1c - x1:x2c - x1]
        img[a:b, x1c:x2c] = col[None, None, :] * prof[None, :, None]

    # -- main ----------------------------------------------------------------------------
    def run(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Render the scene: room, walls, floor, objects, lights, then the camera model.

        The steps draw from one random stream in this order; reordering them changes every image.
        """
        room = self._room()
        img = np.empty((self.rh, self.rw, 3), np.float32)
        self._sky(img, room)
        wtex, wall_col, tile_m = self._back_wall(img, room)
        self._side_walls(img, room, wtex, wall_col, tile_m)
        fpoly, fade, fcol = self._floor(img, room)
        # repair patches, mats, plates, drains, markings (all on the floor plane)
        self._floor_decor(img, room.cam, room.xl, room.xr, room.zb, fcol)
        # pipes, trays, valves on the back wall
        if not room.outdoor:
            self._wall_equipment(img, room.cam, room.zb, room.yb, room.yt, room.c0, room.c1)
        # floor objects, far to near, with shadows
        before = img[..., 1].copy()
        shadow = np.ones((self.rh, self.rw), np.float32)
        self._floor_objects(img, shadow, room.cam, room.xl, room.xr, room.zb, room.outdoor)
        grid = self._free_floor(img, before)
        del before
        self._lighting(img, room, shadow, fade)
        out = self._camera_model(img)
        return out, self._layout(room, fpoly, grid)

    # -- steps of run() ---------------------------------------------------------------------
    def _room(self) -> _Room:
        """Camera, depth, walls present, floor and wall materials, gloss."""
        rng, p = self.rng, self.p
        rw, rh = self.rw, self.rh
        cam = _Cam(f=rw * _u(rng, 0.55, 1.15), h=_u(rng, 2.2, 4.5),
                   yh=rh * _u(rng, *p["horizon"]), vx=rw * _u(rng, 0.25, 0.75))
        self.cam = cam
        zb = _u(rng, *p["depth"])
        wall_h = _u(rng, 4.0, 9.0)
        outdoor = self.scene_type == "tank-farm" and rng.random() < 0.6
        left = rng.random() < p["sides"]
        right = rng.random() < p["sides"]
        xl = _u(rng, 2.0, 6.0) if left else 60.0
        xr = _u(rng, 2.0, 6.0) if right else 60.0
        floor_kind = _pick(rng, p["floors"])
        wall_kind = _pick(rng, tx.WALLS)
        gloss = {"epoxy": _u(rng, 0.25, 0.6), "tiles": _u(rng, 0.1, 0.35), "concrete": _u(rng, 0.0, 0.15)}.get(floor_kind, 0.03)
        self.params.update(floor=floor_kind, wall=wall_kind, gloss=round(gloss, 3), outdoor=bool(outdoor))
        return _Room(cam, zb, wall_h, bool(outdoor), bool(left), bool(right), xl, xr, floor_kind, wall_kind, gloss)

    def _sky(self, img: np.ndarray, room: _Room) -> None:
        """Ceiling (indoors) or sky: a vertical gradient over the whole frame."""
        rng, rh = self.rng, self.rh
        yy = np.linspace(0, 1, rh, dtype=np.float32)[:, None, None]
        if room.outdoor:
            top, bot = np.array([0.55, 0.65, 0.8], np.float32), np.array([0.85, 0.87, 0.88], np.float32)
        else:
            top = np.array([0.12, 0.12, 0.13], np.float32) * _u(rng, 0.6, 1.6)
            bot = top * 1.6
        img[:] = top + (bot - top) * yy

    def _back_wall(self, img: np.ndarray, room: _Room) -> tuple[np.ndarray, np.ndarray, float]:
        """The textured back wall (a low bund wall outdoors) with grime at its base.

        Sets ``room.yb``/``yt`` (wall base/top rows) and ``c0``/``c1`` (its columns).

        Returns:
            ``(wall texture, wall colour, texture tile in metres)`` for the side walls.
        """
        import cv2

        rng, cam, rw, rh, zb = self.rng, room.cam, self.rw, self.rh, room.zb
        outdoor = room.outdoor
        _, yb = cam.floor(0, zb)
        _, yt = cam.point(0, room.wall_h, zb)
        xa = cam.floor(-room.xl, zb)[0] if room.left else -10.0
        xb_ = cam.floor(room.xr, zb)[0] if room.right else rw + 10.0
        wall_col = np.array(_pick(rng, WALL_COLOURS), np.float32) * _u(rng, 0.8, 1.1)
        ppm_wall = cam.f / zb
        wtex = tx.texture(room.wall_kind, int(rng.integers(2)))
        tile_m = _u(rng, 3.0, 6.0)
        s = ppm_wall * tile_m / tx.TILE
        m = np.array([[s, 0, _u(rng, 0, rw)], [0, s, yb]], np.float32)
        y0w = max(0, int(yt)) if not outdoor else max(0, int(yb - ppm_wall * _u(rng, 1.0, 3.0)))
        if outdoor:
            wall_col = np.array([0.6, 0.6, 0.58], np.float32)  # a low concrete bund wall
        r0, r1 = y0w, max(y0w, min(rh, int(math.ceil(yb))))
        c0, c1 = max(0, int(xa)), min(rw, int(math.ceil(xb_)))
        if r1 > r0 and c1 > c0:  # warp only the wall's own rectangle
            m[0, 2] -= c0
            m[1, 2] -= r0
            wall = cv2.warpAffine(wtex, m, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
            img[r0:r1, c0:c1] = wall[..., None] * wall_col
        # grime band at the wall base
        if r1 > r0 and c1 > c0 and not outdoor:
            band = max(2, int(ppm_wall * 0.4))
            g = np.linspace(1.0, _u(rng, 0.7, 0.95), band, dtype=np.float32)[:, None, None]
            a = max(r0, r1 - band)
            img[a:r1, c0:c1] *= g[band - (r1 - a):]
        room.yb, room.yt, room.c0, room.c1 = yb, yt, c0, c1
        return wtex, wall_col, tile_m

    def _side_walls(self, img: np.ndarray, room: _Room, wtex: np.ndarray, wall_col: np.ndarray, tile_m: float) -> None:
        """Left/right walls, perspective-mapped with the back wall's texture."""
        import cv2

        rng, cam, rw, rh = self.rng, room.cam, self.rw, self.rh
        for side, xw in (("l", -room.xl), ("r", room.xr)):
            if (side == "l" and not room.left) or (side == "r" and not room.right):
                continue
            hmat = np.array([[cam.vx, 0, cam.f * xw], [cam.yh, -cam.f, cam.f * cam.h], [1, 0, 0]], np.float64)
            sc = tile_m / tx.TILE
            a_ = np.array([[sc, 0, 0], [0, sc, 0], [0, 0, 1]], np.float64)
            pts = np.array([cam.point(xw, 0, room.zb), cam.point(xw, room.wall_h, room.zb), cam.point(xw, room.wall_h, 0.2),
                            cam.point(xw, 0, 0.2)], np.float64)
            mask = np.zeros((rh, rw), np.uint8)
            cv2.fillPoly(mask, [np.clip(pts, -1e5, 1e5).astype(np.int32)], 1)
            shade = _u(rng, 0.7, 0.95)
            ys_, xs_ = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            if ys_.size:  # warp only the wall's bounding box
                by0, by1, bx0, bx1 = int(ys_[0]), int(ys_[-1]) + 1, int(xs_[0]), int(xs_[-1]) + 1
                t = np.array([[1, 0, -bx0], [0, 1, -by0], [0, 0, 1]], np.float64)
                warped = cv2.warpPerspective(wtex, t @ hmat @ a_, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_WRAP)
                np.copyto(img[by0:by1, bx0:bx1], warped[..., None] * (wall_col * shade),
                          where=mask[by0:by1, bx0:bx1, None] > 0)

    def _floor(self, img: np.ndarray, room: _Room) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The textured floor plane, faded toward the horizon; sets ``self.fm`` (its mask).

        Returns:
            ``(floor polygon, fade per row, floor colour)``.
        """
        import cv2

        rng, cam, rw, rh = self.rng, room.cam, self.rw, self.rh
        fkind = room.floor_kind
        ftex = tx.texture(fkind, int(rng.integers(2)))
        fcol = np.array(_pick(rng, FLOOR_COLOURS[fkind]), np.float32) * _u(rng, 0.85, 1.1)
        tile_m = {"concrete": _u(rng, 2.5, 5), "epoxy": _u(rng, 3, 6), "tiles": _u(rng, 1.0, 2.4),
                  "grating": _u(rng, 1.5, 2.5), "checker-plate": _u(rng, 1.5, 3)}[fkind]
        sc = tile_m / tx.TILE
        # texture pixels per screen pixel at 70 % down the floor: pre-blur to avoid moire
        row = cam.yh + 0.7 * (rh - cam.yh)
        minif = 1.0 / max(1e-6, (row - cam.yh) / cam.h * sc)
        if minif > 1.5:
            ftex = tx.mip(fkind, int(rng.integers(2)), min(3, int(math.log2(minif))))
        rot = _u(rng, -0.15, 0.15)
        a_ = np.array([[sc * math.cos(rot), -sc * math.sin(rot), _u(rng, 0, 50)],
                       [sc * math.sin(rot), sc * math.cos(rot), _u(rng, 0, 50)], [0, 0, 1]], np.float64)
        hmat = np.array([[cam.f, cam.vx, 0], [0, cam.yh, cam.f * cam.h], [0, 1, 0]], np.float64)
        xl, xr, zb = room.xl, room.xr, room.zb
        fpoly = np.array([cam.floor(-xl, zb), cam.floor(xr, zb), cam.floor(xr, 0.2), cam.floor(-xl, 0.2)], np.float64)
        fmask = np.zeros((rh, rw), np.uint8)
        cv2.fillPoly(fmask, [np.clip(fpoly, -1e5, 1e5).astype(np.int32)], 1)
        fm = fmask > 0
        # aerial fade toward the horizon hides texture aliasing far away
        rows = np.arange(rh, dtype=np.float32)
        fade = np.clip((rows - cam.yh) / (0.25 * rh), 0, 1)[:, None]
        y0f = min(rh - 1, max(0, int(cam.yh)))  # warp only the rows below the horizon
        t = np.array([[1, 0, 0], [0, 1, -y0f], [0, 0, 1]], np.float64)
        floor = cv2.warpPerspective(ftex, t @ hmat @ a_, (rw, rh - y0f), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        fl = floor * fade[y0f:] + float(ftex.mean()) * (1 - fade[y0f:])
        np.copyto(img[y0f:], fl[..., None] * fcol, where=fm[y0f:, :, None])
        self.fm = fm
        return fpoly, fade, fcol

    def _free_floor(self, img: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Where the floor is still visible (for box proposals): ``self.free`` and a coarse 32x32 grid."""
        import cv2

        self.free = self.fm & (img[..., 1] == before)
        return cv2.resize(self.free.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.5

    def _lighting(self, img: np.ndarray, room: _Room, shadow: np.ndarray, fade: np.ndarray) -> None:
        """Lights with falloff, soft contact shadows, glossy-floor reflections and light fixtures."""
        import cv2

        rng, cam, rw, rh, yb, outdoor = self.rng, room.cam, self.rw, self.rh, room.yb, room.outdoor
        n_l = int(rng.integers(1, 5))
        light_cols = []
        for _ in range(n_l):
            col = LIGHT_COLOURS[int(rng.integers(len(LIGHT_COLOURS)))] * _u(rng, 0.8, 1.2)
            lx = _u(rng, 0.05, 0.95) * rw
            ly = _u(rng, 0.0, max(1.0, min(yb, cam.yh) * 0.6)) if not outdoor else -rh
            self.lights.append((lx, ly, _u(rng, 0.3, 0.9) * rw, col))
            light_cols.append(col)
        # light falloff on a coarse grid (smooth anyway), then multiplied in
        gh, gw = 48, 48
        gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float32)
        gy *= rh / gh
        gx *= rw / gw
        amb = _u(rng, 0.35, 0.65)
        illum = np.ones((gh, gw, 3), np.float32) * amb * (np.mean(light_cols, axis=0) if light_cols else 1.0)
        for lx, ly, rad, col in self.lights:
            d2 = ((gx - lx) ** 2 + (gy - ly - 0.2 * rh) ** 2) / (rad * rad)
            illum += (0.9 * np.exp(-d2))[..., None] * col
        if outdoor:
            illum = illum * 0.5 + 0.6
        illum *= _u(rng, 0.8, 1.05) / float(illum.mean())  # overall exposure stays in a sane band
        illum_full = cv2.resize(illum, (rw, rh), interpolation=cv2.INTER_LINEAR)
        # shadows soften with distance from contact
        shadow_s = cv2.GaussianBlur(shadow, (0, 0), max(1.0, rw / 250))
        img *= illum_full * shadow_s[..., None]
        # glossy floor: mirror of what is above the wall base + streaks under the lights
        gloss = room.gloss
        if gloss > 0.05:
            y0r = min(rh - 1, max(0, int(min(yb, cam.yh))))  # only floor rows can reflect
            src = np.clip(2 * int(yb) - np.arange(y0r, rh), 0, rh - 1)
            refl = cv2.GaussianBlur(img[src], (0, 0), sigmaX=1.0, sigmaY=max(1.0, rh / 120))
            k = (gloss * 0.35 * fade[y0r:])[..., None] * self.free[y0r:, :, None]
            img[y0r:] += (refl - img[y0r:]) * k
        if not outdoor:
            for lx, ly, _rad, col in self.lights:
                self._fixture(img, lx, ly, col, gloss, yb)

    def _camera_model(self, img: np.ndarray) -> np.ndarray:
        """Colour cast, exposure, vignetting, blur, gamma, upsampling and sensor noise: ``(H, W, 3)`` uint8."""
        import cv2

        rng, rw, rh = self.rng, self.rw, self.rh
        cast = np.array([_u(rng, 0.92, 1.08), 1.0, _u(rng, 0.9, 1.08)], np.float32)
        exposure = _u(rng, 0.85, 1.35)
        vig = _u(rng, 0.0, 0.45)
        img *= (1 - vig * 0.5 * _radius2(rh, rw))[..., None] * (cast * exposure)
        sig = _u(rng, 0.3, 0.9)
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), sig), np.float32)
        gamma = _u(rng, 0.85, 1.15)
        small = cv2.convertScaleAbs(img, alpha=255.0)  # saturating, rounding (values are >= 0)
        if abs(gamma - 1) > 0.02:
            small = cv2.LUT(small, _gamma_lut(round(gamma, 3)))
        out = cv2.resize(small, (self.W, self.H), interpolation=cv2.INTER_LINEAR) if (rw, rh) != (self.W, self.H) else small
        level = int(rng.integers(3))
        out = add_sensor_noise(out, level, rng)
        q = int(_pick(rng, (65, 72, 80, 85, 88, 92, 95)))
        self.params.update(noise_level=level, jpeg_quality=q, exposure=round(exposure, 3), blur=round(sig * self.sx, 3),
                           vignette=round(vig, 3), lights=len(self.lights))
        return out

    def _layout(self, room: _Room, fpoly: np.ndarray, grid: np.ndarray) -> dict[str, Any]:
        """The scene's geometry in output pixels (see :meth:`ProceduralSceneBackend.render`)."""
        cam, rw, rh = room.cam, self.rw, self.rh
        fpoly_img = _clip_poly_to_image(fpoly, rw, rh, cam.yh)
        return {
            "horizon": round(cam.yh * self.sy, 2), "cam_height": round(cam.h, 3), "focal": round(cam.f * self.sy, 2), "vp_x": round(cam.vx * self.sx, 2),
            "wall_base": round(min(room.yb, rh) * self.sy, 2),
            "floor": [[round(x * self.sx, 1), round(y * self.sy, 1)] for x, y in fpoly_img],
            "equipment": self.equipment, "params": self.params,
            "floor_grid": ["".join("1" if v else "0" for v in row) for row in grid],
        }

    # -- parts ----------------------------------------------------------------------------
    def _fixture(self, img: np.ndarray, lx: float, ly: float, col: np.ndarray, gloss: float, yb: float) -> None:
        import cv2

        rng = self.rng
        w, h = _u(rng, 0.03, 0.1) * self.rw, _u(rng, 0.006, 0.02) * self.rh
        c = np.clip(col * 1.5, 0, 3).tolist()
        cv2.rectangle(img, (int(lx - w / 2), int(ly)), (int(lx + w / 2), int(ly + h)), c, -1)
        if gloss > 0.05:  # the fixture's reflection: a vertical streak on the glossy floor (not a spill)
            y0 = int(max(yb, self.cam.yh + 2))
            y1 = min(self.rh, int(y0 + _u(rng, 0.1, 0.5) * self.rh))
            x0, x1 = int(max(0, lx - w)), int(min(self.rw, lx + w))
            if y1 > y0 and x1 > x0:
                xs = np.linspace(-1, 1, x1 - x0, dtype=np.float32)
                ys = np.linspace(0, 1, y1 - y0, dtype=np.float32)
                streak = np.exp(-(xs * 2.2) ** 2)[None, :] * np.exp(-ys * 3)[:, None] * gloss * 0.9
                streak *= self.free[y0:y1, x0:x1]
                img[y0:y1, x0:x1] += streak[..., None] * col

    def _floor_decor(self, img: np.ndarray, cam: _Cam, xl: float, xr: float, zb: float, fcol: np.ndarray) -> None:
        import cv2

        rng = self.rng
        z0 = cam.f * cam.h / (self.rh - cam.yh)  # depth at the bottom row
        xmin, xmax = max(-xl, -30.0), min(xr, 30.0)

        def quad(x: float, z: float, w: float, d: float) -> np.ndarray:
            return np.array([cam.floor(x, z), cam.floor(x + w, z), cam.floor(x + w, z + d), cam.floor(x, z + d)], np.float64)

        # repair patches: slightly different tone, straight edges
        for _ in range(int(rng.integers(0, 3))):
            z = _u(rng, z0, min(zb, z0 + 15))
            q = quad(_u(rng, xmin, xmax - 1), z, _u(rng, 0.5, 3), _u(rng, 0.5, 3))
            cv2.fillPoly(img, [q.astype(np.int32)], (fcol * _u(rng, 0.8, 1.1) * 0.75).tolist())
        # rubber mats / steel plates (dark, not spills)
        for _ in range(int(rng.integers(0, 3))):
            z = _u(rng, z0, min(zb, z0 + 12))
            q = quad(_u(rng, xmin, xmax - 1), z, _u(rng, 0.6, 1.5), _u(rng, 0.6, 1.2))
            col = _pick(rng, ([0.07, 0.07, 0.07], [0.35, 0.36, 0.38], [0.12, 0.1, 0.09]))
            cv2.fillPoly(img, [q.astype(np.int32)], col)
            cv2.polylines(img, [q.astype(np.int32)], True, (np.array(col) * 1.6).tolist(), 1)
        # drains: grating slots
        for _ in range(int(rng.integers(0, 3))):
            z = _u(rng, z0, min(zb, z0 + 10))
            x = _u(rng, xmin, xmax - 1)
            w, d = _u(rng, 0.3, 0.6), _u(rng, 0.3, 0.6)
            q = quad(x, z, w, d)
            cv2.fillPoly(img, [q.astype(np.int32)], [0.3, 0.3, 0.32])
            for k in range(1, 6):
                s = quad(x + w * k / 6 - 0.01, z + 0.03, 0.025, d - 0.06)
                cv2.fillPoly(img, [s.astype(np.int32)], [0.03, 0.03, 0.03])
            bx = q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()
            self._rec("drain", bx, ((bx[0] + bx[2]) / 2, bx[3]))
        # markings: lane lines toward the vanishing point and stop boxes
        if rng.random() < 0.7:
            col = _pick(rng, ([0.85, 0.7, 0.1], [0.85, 0.85, 0.82], [0.2, 0.5, 0.25]))
            for x in rng.uniform(xmin, xmax, int(rng.integers(1, 3))):
                w = _u(rng, 0.08, 0.15)
                q = np.array([cam.floor(x, z0 * 0.5), cam.floor(x + w, z0 * 0.5), cam.floor(x + w, zb), cam.floor(x, zb)])
                cv2.fillPoly(img, [np.clip(q, -1e5, 1e5).astype(np.int32)], (np.array(col) * _u(rng, 0.7, 1.0)).tolist())
        if rng.random() < 0.3:
            z = _u(rng, z0, min(zb, z0 + 8))
            x, w, d = _u(rng, xmin, xmax - 2), _u(rng, 1, 3), _u(rng, 1, 3)
            col = [0.85, 0.7, 0.1]
            for a_, b_ in (((x, z), (x + w, z)), ((x + w, z), (x + w, z + d)), ((x + w, z + d), (x, z + d)), ((x, z + d), (x, z))):
                p1, p2 = cam.floor(*a_), cam.floor(*b_)
                t = max(1, int(0.08 * cam.f / (z + d / 2)))
                cv2.line(img, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), col, t)

    def _wall_equipment(self, img: np.ndarray, cam: _Cam, zb: float, yb: float, yt: float, c0: int, c1: int) -> None:
        import cv2

        rng, p = self.rng, self.p
        ppm = cam.f / zb
        n = int(rng.integers(p["pipes"][0], p["pipes"][1] + 1))
        for _ in range(n):
            hgt = _u(rng, 0.4, 4.0)
            yc = yb - hgt * ppm
            r = max(1.5, _u(rng, 0.05, 0.25) * ppm)
            if yc - r < 0:
                continue
            col = PAINT[int(rng.integers(len(PAINT)))] * _u(rng, 0.8, 1.1)
            metal = rng.random() < 0.3
            if metal:
                col = np.array([0.75, 0.76, 0.78], np.float32)
            self._hcyl(img, c0, c1, yc, r, col, metal)
            # flanges and valves along the run
            x = c0 + _u(rng, 0.5, 3) * ppm
            while x < c1:
                fw = max(2.0, 0.08 * ppm)
                self._vcyl(img, x, fw / 2, yc - r * 1.45, yc + r * 1.45, col * 0.8)
                kind = "flange"
                if rng.random() < 0.35:  # valve: body + handwheel or lever
                    kind = "valve"
                    bw = r * 2.2
                    self._vcyl(img, x + fw + bw / 2, bw / 2, yc - r * 1.3, yc + r * 1.3, col * 0.9)
                    wheel = _pick(rng, ([0.75, 0.1, 0.08], [0.9, 0.75, 0.1], [0.15, 0.3, 0.7], [0.2, 0.2, 0.2]))
                    cx, cy, rr = int(x + fw + bw / 2), int(yc - r * 2.6), max(2, int(r * 1.6))
                    cv2.line(img, (cx, int(yc)), (cx, cy), [0.3, 0.3, 0.3], max(1, int(r * 0.3)))
                    cv2.circle(img, (cx, cy), rr, wheel, max(1, int(rr * 0.25)))
                    for a in range(0, 180, 60):
                        ca, sa = math.cos(math.radians(a)), math.sin(math.radians(a))
                        cv2.line(img, (int(cx - rr * ca), int(cy - rr * sa)), (int(cx + rr * ca), int(cy + rr * sa)), wheel, 1)
                self._rec(kind, (x - r * 1.5, yc - r * 3, x + r * 3, yc + r * 1.6), (x, yb))
                x += _u(rng, 1.0, 5.0) * ppm
            # a drop to the floor
            if rng.random() < 0.5:
                xd = _u(rng, c0, c1)
                self._vcyl(img, xd, r, yc, yb, col, metal)
                self._vcyl(img, xd, r * 1.45, yb - 0.5 * ppm, yb - 0.5 * ppm + max(2, 0.08 * ppm), col * 0.8)
                self._rec("joint", (xd - r * 1.5, yb - 0.8 * ppm, xd + r * 1.5, yb), (xd, yb))
        # cable tray
        if rng.random() < 0.6:
            yc = yb - _u(rng, 2.0, 4.5) * ppm
            h = max(2, int(0.12 * ppm))
            if yc > 0:
                col = [0.5, 0.52, 0.55]
                cv2.rectangle(img, (c0, int(yc)), (c1, int(yc) + h), [0.15, 0.15, 0.17], -1)
                cv2.line(img, (c0, int(yc)), (c1, int(yc)), col, 1)
                cv2.line(img, (c0, int(yc) + h), (c1, int(yc) + h), col, 1)
        # doors / roller shutter
        if rng.random() < (0.8 if self.scene_type == "loading-bay" else 0.3):
            dw, dh = _u(rng, 1.0, 4.0) * ppm, _u(rng, 2.1, 4.0) * ppm
            x = _u(rng, c0, max(c0 + 1, c1 - dw))
            col = np.array(_pick(rng, ([0.6, 0.62, 0.63], [0.3, 0.4, 0.55], [0.7, 0.55, 0.2])), np.float32)
            x1, y1 = int(x), int(yb - dh)
            cv2.rectangle(img, (x1, y1), (int(x + dw), int(yb)), col.tolist(), -1)
            for yy in range(y1, int(yb), max(2, int(0.1 * ppm))):
                cv2.line(img, (x1, yy), (int(x + dw), yy), (col * 0.75).tolist(), 1)

    def _floor_objects(self, img: np.ndarray, shadow: np.ndarray, cam: _Cam, xl: float, xr: float, zb: float, outdoor: bool) -> None:
        import cv2

        rng, p = self.rng, self.p
        z0 = cam.f * cam.h / (self.rh - cam.yh)
        objs: list[tuple[str, float, float]] = []
        for kind in ("tanks", "pumps", "drums", "cabinets", "columns"):
            for _ in range(int(rng.integers(p[kind][0], p[kind][1] + 1))):
                z = _u(rng, z0 * 1.3, zb * 0.95)
                objs.append((kind, _u(rng, max(-xl, -z * 0.6) + 0.3, min(xr, z * 0.6) - 1.5), z))
        objs.sort(key=lambda o: -o[2])
        for kind, x, z in objs:
            ppm = cam.f / z
            bx, by = cam.floor(x, z)
            if kind == "tanks":
                w, h = _u(rng, 1.2, 4.0), _u(rng, 1.8, 6.0)
                self._shadow(shadow, bx, by, w * ppm, ppm)
                col = np.array(_pick(rng, ([0.85, 0.85, 0.83], [0.6, 0.62, 0.64], [0.55, 0.65, 0.55], [0.75, 0.7, 0.6])), np.float32)
                metal = rng.random() < 0.4
                self._vcyl(img, bx + w * ppm / 2, w * ppm / 2, by - h * ppm, by, col, metal)
                for k in range(1, int(h)):  # weld seams
                    yk = int(by - k * ppm)
                    cv2.line(img, (int(bx), yk), (int(bx + w * ppm), yk), (col * 0.7).tolist(), 1)
                # outlet nozzle + valve near the bottom
                ny = by - _u(rng, 0.3, 0.6) * ppm
                nx = bx + w * ppm * _u(rng, 0.2, 0.8)
                rr = max(1.5, 0.06 * ppm)
                self._hcyl(img, nx - 0.4 * ppm, nx + 0.4 * ppm, ny, rr, col * 0.7)
                self._vcyl(img, nx, max(1.0, 0.03 * ppm), ny - rr * 1.6, ny + rr * 1.6, col * 0.55)
                self._rec("tank", (bx, by - h * ppm, bx + w * ppm, by), (bx + w * ppm / 2, by))
                self._rec("valve", (nx - 0.3 * ppm, ny - 2 * rr, nx + 0.3 * ppm, ny + 2 * rr), (nx, by))
            elif kind == "pumps":
                L, hs = _u(rng, 1.2, 2.2), _u(rng, 0.15, 0.3)
                self._shadow(shadow, bx, by, L * ppm, ppm * 0.7)
                cv2.rectangle(img, (int(bx), int(by - hs * ppm)), (int(bx + L * ppm), int(by)), [0.18, 0.18, 0.2], -1)
                col = PAINT[int(rng.integers(len(PAINT)))] * _u(rng, 0.8, 1.1)
                mr = _u(rng, 0.2, 0.35) * ppm
                yc = by - hs * ppm - mr
                self._hcyl(img, bx + 0.05 * L * ppm, bx + 0.55 * L * ppm, yc, mr, col)
                guard = np.array(_pick(rng, ([0.9, 0.6, 0.1], [0.85, 0.75, 0.1], [0.4, 0.4, 0.42])), np.float32)
                cv2.rectangle(img, (int(bx + 0.55 * L * ppm), int(yc - mr * 0.6)), (int(bx + 0.68 * L * ppm), int(yc + mr * 0.6)), guard.tolist(), -1)
                cx, cr = bx + 0.82 * L * ppm, mr * 1.2
                cv2.circle(img, (int(cx), int(yc)), int(cr), (col * 0.85).tolist(), -1)
                cv2.circle(img, (int(cx), int(yc)), int(cr), (col * 0.55).tolist(), 1)
                # discharge pipe upward with a flange
                pr = max(1.5, 0.07 * ppm)
                self._vcyl(img, cx, pr, 0, yc - cr * 0.5, PAINT[int(rng.integers(len(PAINT)))])
                fy = yc - cr - 0.25 * ppm
                self._hcyl(img, cx - pr * 1.6, cx + pr * 1.6, fy, max(1.0, 0.03 * ppm), col * 0.6)
                self._rec("pump", (bx, yc - cr, bx + L * ppm, by), (cx, by))
                self._rec("joint", (cx - cr, yc - cr, cx + cr, yc + cr), (cx, by))
            elif kind == "drums":
                n = int(rng.integers(1, 4))
                col = np.array(_pick(rng, ([0.1, 0.2, 0.5], [0.08, 0.08, 0.08], [0.6, 0.1, 0.08], [0.2, 0.4, 0.2], [0.5, 0.5, 0.5])), np.float32)
                for k in range(n):
                    dx = bx + k * 0.62 * ppm
                    self._shadow(shadow, dx, by, 0.6 * ppm, ppm * 0.5)
                    self._vcyl(img, dx + 0.3 * ppm, 0.3 * ppm, by - 0.9 * ppm, by, col, rng.random() < 0.3)
                    for hh in (0.3, 0.6):
                        cv2.line(img, (int(dx), int(by - hh * ppm)), (int(dx + 0.6 * ppm), int(by - hh * ppm)), (col * 0.6).tolist(), 1)
                self._rec("drum", (bx, by - 0.9 * ppm, bx + n * 0.62 * ppm, by), (bx + 0.3 * ppm, by))
            elif kind == "cabinets":
                w, h = _u(rng, 0.6, 2.0), _u(rng, 1.2, 2.2)
                self._shadow(shadow, bx, by, w * ppm, ppm * 0.6)
                col = np.array(_pick(rng, ([0.78, 0.78, 0.75], [0.6, 0.62, 0.65], [0.85, 0.82, 0.7], [0.35, 0.4, 0.45])), np.float32)
                x1, y1, x2, y2 = int(bx), int(by - h * ppm), int(bx + w * ppm), int(by)
                cv2.rectangle(img, (x1, y1), (x2, y2), col.tolist(), -1)
                cv2.line(img, ((x1 + x2) // 2, y1), ((x1 + x2) // 2, y2), (col * 0.6).tolist(), 1)
                cv2.rectangle(img, (x1, y1), (x2, y2), (col * 0.5).tolist(), 1)
                if rng.random() < 0.6:
                    cv2.rectangle(img, (x1 + (x2 - x1) // 5, y1 + (y2 - y1) // 6), (x1 + (x2 - x1) // 2 - 2, y1 + (y2 - y1) // 3), [0.05, 0.07, 0.08], -1)
                for _ in range(int(rng.integers(0, 5))):
                    led = _pick(rng, ([0.2, 1.5, 0.2], [1.5, 0.2, 0.1], [1.5, 1.2, 0.2]))
                    cv2.circle(img, (int(_u(rng, x1 + 2, max(x1 + 3, x2 - 2))), int(_u(rng, y1 + 2, y1 + (y2 - y1) / 2))), 1, led, -1)
                self._rec("cabinet", (x1, y1, x2, y2), ((x1 + x2) / 2, y2))
            else:  # columns: floor to top of the image, hazard stripes at the base
                w = _u(rng, 0.3, 0.6) * ppm
                col = np.array(_pick(rng, ([0.7, 0.7, 0.68], [0.25, 0.35, 0.55], [0.6, 0.25, 0.1])), np.float32)
                self._shadow(shadow, bx, by, w, ppm * 0.3)
                self._vcyl(img, bx + w / 2, w / 2, 0, by, col)
                if rng.random() < 0.6:
                    sh = int(1.0 * ppm)
                    for k in range(0, sh, max(2, sh // 6)):
                        c = [0.9, 0.75, 0.1] if (k // max(2, sh // 6)) % 2 == 0 else [0.05, 0.05, 0.05]
                        cv2.rectangle(img, (int(bx), int(by - k - sh // 6)), (int(bx + w), int(by - k)), c, -1)
        if outdoor:  # pipe racks across the sky
            for _ in range(int(rng.integers(1, 4))):
                yc = _u(rng, 0.05, 0.3) * self.rh
                self._hcyl(img, 0, self.rw, yc, _u(rng, 2, 8), PAINT[int(rng.integers(len(PAINT)))])

    def _shadow(self, shadow: np.ndarray, x: float, y: float, w: float, depth: float) -> None:
        import cv2

        rng = self.rng
        c = (int(x + w / 2 + _u(rng, -0.1, 0.1) * w), int(y))
        ax = (max(1, int(w * _u(rng, 0.55, 0.8))), max(1, int(depth * _u(rng, 0.1, 0.3))))
        cv2.ellipse(shadow, c, ax, 0, 0, 360, _u(rng, 0.45, 0.75), -1)


@cache
def _radius2(h: int, w: int) -> np.ndarray:
    """Squared normalised distance from the image centre (1 at the edge midpoints), float32."""
    ii, jj = np.ogrid[0:h, 0:w]
    return (((ii - h / 2) / (h / 2)) ** 2 + ((jj - w / 2) / (w / 2)) ** 2).astype(np.float32)


@cache
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(((np.arange(256) / 255.0) ** (1.0 / gamma)) * 255 + 0.5, 0, 255).astype(np.uint8)


def _clip_poly_to_image(poly: np.ndarray, w: int, h: int, yh: float) -> list[tuple[float, float]]:
    """The visible part of the floor polygon (render pixels), clipped to the image."""
    import cv2

    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.clip(poly, -1e5, 1e5).astype(np.int32)], 1)
    mask[: int(math.ceil(yh)) + 1] = 0
    cs, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not cs:
        return []
    c = max(cs, key=cv2.contourArea)
    c = cv2.approxPolyDP(c, 1.5, True)
    return [(float(x), float(y)) for x, y in c[:, 0, :]]


def add_sensor_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Add precomputed sensor noise (level 0-2) at a random offset; uint8 in, uint8 out."""
    import cv2

    h, w = img.shape[:2]
    bank = tx.sensor_noise(level)
    if h > bank.shape[0] or w > bank.shape[1]:
        sigma = (1.5, 3.0, 5.0)[level]
        noise = np.round(rng.normal(0, sigma, img.shape)).astype(np.int16)
    else:
        oy = int(rng.integers(0, bank.shape[0] - h + 1))
        ox = int(rng.integers(0, bank.shape[1] - w + 1))
        noise = bank[oy:oy + h, ox:ox + w]
    return cv2.add(img, noise, dtype=cv2.CV_8U)


# ==================================================================================
# Spills
# ==================================================================================

class ProceduralSpillBackend:
    """Physically based liquids composited into any RGB image (synthetic or real).

    :mod:`synspill.synth.liquid` does the optics. In a ray-cast place (the layout has a
    ``room``) the spill lies on the real surface under its box with the scene's mirror image,
    lights and viewing angles; in a plant room the floor plane comes from the layout's
    horizon and camera height; in a photo (``--backgrounds``, SDXL scenes) the plane is
    estimated. Deterministic per :class:`SpillSpec` seed. Every changed pixel lies inside
    its spec's box; the reported mask is exactly the pixels the liquid covers, and the box
    is tight around it.
    """

    name = "procedural"
    uses_layout = True

    def inpaint(self, image: np.ndarray, spills: list[SpillSpec], layout: dict[str, Any] | None = None) -> SpillResult:
        """Pour ``spills`` (in order) into a copy of ``image`` (``(H, W, 3)`` uint8 RGB).

        Args:
            image: The scene.
            spills: Where and what.
            layout: The scene's layout from ``synspill scenes`` (None for photos).

        Returns:
            :class:`SpillResult` with one full-size bool mask, tight ``xyxy`` box (or None
            when nothing visible remains, e.g. a box outside the image) and parameter dict
            per spill. A later spill covers an earlier one where they overlap; masks are
            reduced accordingly.
        """
        import cv2

        from synspill.synth import cctv, liquid

        cv2.setNumThreads(1)
        img = np.ascontiguousarray(image[..., :3]).copy()
        h, w = img.shape[:2]
        lay = layout or {}
        cam = lay.get("params") or {}
        masks: list[np.ndarray] = []
        params: list[dict[str, Any]] = []
        pixel_boxes = [self._pixel_box(s.box, w, h) for s in spills]
        drawn = [bx[2] - bx[0] >= 2 and bx[3] - bx[1] >= 2 for bx in pixel_boxes]
        # a place's geometry and light, rebuilt under the boxes only
        gb = (places.gbuffer(lay, [bx for bx, ok in zip(pixel_boxes, drawn, strict=True) if ok], (w, h))[0]
              if lay.get("room") and any(drawn) else None)
        for s, (a, b, c, d), ok in zip(spills, pixel_boxes, drawn, strict=True):
            prm: dict[str, Any] = {"seed": s.seed}
            if not ok:
                prm["skipped"] = "box outside the image or under 2 px"
                m = np.zeros((h, w), bool)
            else:
                rng = np.random.default_rng([s.seed, 5])
                box = (a, b, c, d)
                if lay.get("room"):
                    surf = places.surface_for_box(lay, box, (w, h), gb)
                    prm["surface"] = "room"
                elif lay.get("horizon") is not None:
                    surf = liquid.photo_surface(img, box, rng, horizon=float(lay["horizon"]), focal=lay.get("focal"),
                                                cam_height=lay.get("cam_height"))
                    prm["surface"] = "plant"
                else:
                    surf = liquid.photo_surface(img, box, rng)
                    prm["surface"] = "photo"
                m, lp = liquid.composite(img, box, surf, s.class_id, s.seed, opacity=s.opacity / 0.75, feather=s.feather)
                prm.update(lp)
                blur = float(cam.get("blur") or 0.0)
                if blur > 0.3 and m.any():  # the camera's softness over the new pixels too
                    crop = img[b:d, a:c]
                    soft = cv2.GaussianBlur(crop, (0, 0), blur * 0.7)
                    near = cv2.dilate(m[b:d, a:c].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                    crop[near] = soft[near]
            for prev in masks:  # later spills hide earlier ones
                prev &= ~m
            masks.append(m)
            params.append(prm)
        if cam.get("osd") and any(m.any() for m in masks):  # the on-screen text stays on top of spills
            over = img.copy()
            cctv.draw_osd(over, cam["osd"])
            spilled = np.zeros((h, w), bool)
            for m in masks:
                spilled |= m
            near = cv2.dilate(spilled.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            boxes_mask = np.zeros((h, w), bool)
            for s in spills:
                x1, y1, x2, y2 = (float(v) for v in s.box)
                boxes_mask[max(0, int(math.ceil(y1))):max(0, int(y2)), max(0, int(math.ceil(x1))):max(0, int(x2))] = True
            img[near & boxes_mask] = over[near & boxes_mask]
        boxes = [tight_box(m) for m in masks]
        return SpillResult(image=img, masks=masks, boxes=boxes, params=params)

    @staticmethod
    def _pixel_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
        """The whole pixels inside a box, clipped to the image."""
        x1, y1, x2, y2 = (float(v) for v in box)
        return (max(0, int(math.ceil(x1 - 1e-6))), max(0, int(math.ceil(y1 - 1e-6))),
                min(w, int(math.floor(x2 + 1e-6))), min(h, int(math.floor(y2 + 1e-6))))


class BackgroundSceneBackend:
    """Real photos as scenes: each spec picks one image and cover-crops it to size.

    Args:
        folder: Folder of ``.jpg/.jpeg/.png/.webp/.bmp`` photos (searched recursively).

    Raises:
        DatasetError: The folder does not exist or holds no images.
    """

    name = "backgrounds"

    def __init__(self, folder: str) -> None:
        from pathlib import Path

        from synspill.errors import DatasetError
        from synspill.io import IMAGE_SUFFIXES, list_images

        root = Path(folder)
        if not root.is_dir():
            raise DatasetError(f"{root}: --backgrounds folder does not exist; pass a folder of plant photos")
        self.root = root
        self.files = list_images(root)
        if not self.files:
            raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) found; pass a folder of plant photos")

    def generate(self, specs: list[SceneSpec]) -> list[np.ndarray]:
        """One cover-cropped ``(H, W, 3)`` uint8 RGB photo per spec."""
        return [self.render(s)[0] for s in specs]

    def render(self, spec: SceneSpec) -> tuple[np.ndarray, dict[str, Any]]:
        """A photo resized/cropped to the spec size; layout has only ``source`` and ``params``."""
        import cv2
        from PIL import Image

        from synspill.errors import DatasetError

        rng = np.random.default_rng(spec.seed)
        path = self.files[int(rng.integers(len(self.files)))]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise DatasetError(f"{path}: not a readable image ({e}); remove it from the --backgrounds folder") from None
        h, w = arr.shape[:2]
        zoom = _u(rng, 1.0, 1.25)
        s = max(spec.width / w, spec.height / h) * zoom
        nw, nh = max(spec.width, int(round(w * s))), max(spec.height, int(round(h * s)))
        arr = cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        ox, oy = int(rng.integers(0, nw - spec.width + 1)), int(rng.integers(0, nh - spec.height + 1))
        arr = arr[oy:oy + spec.height, ox:ox + spec.width]
        flip = bool(rng.random() < 0.5)
        if flip:
            arr = arr[:, ::-1]
        rel = str(path.relative_to(self.root))
        return np.ascontiguousarray(arr), {"source": rel, "params": {"source": rel, "zoom": round(zoom, 3), "flip": flip,
                                                                        "crop": [ox, oy], "jpeg_quality": 92}}
