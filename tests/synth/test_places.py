"""Ray-cast places and physically based liquids: geometry, exact labels, determinism, optics."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.synth import liquid, room
from synspill.synth.base import SceneSpec, SpillSpec
from synspill.synth.procedural import PLACE_TYPES, ProceduralSceneBackend, ProceduralSpillBackend


def _scene(scene_type: str, seed: int = 3, size: int = 192) -> tuple[np.ndarray, dict]:
    return ProceduralSceneBackend().render(SceneSpec(seed=seed, scene_type=scene_type, width=size, height=size))


@pytest.mark.parametrize("scene_type", PLACE_TYPES)
def test_every_place_renders_with_surfaces_to_pour_on(scene_type):
    img, lay = _scene(scene_type)
    assert img.shape == (192, 192, 3) and img.dtype == np.uint8 and img.std() > 5
    assert lay["room"]["family"] in room.FAMILIES and lay["params"]["scene_type"] == scene_type
    grid = np.array([[c == "1" for c in r] for r in lay["surface_grid"]])
    assert grid.shape == (32, 32)
    gb, _ = room.gbuffer(lay)
    # the grid marks liquid-holding surfaces: the G-buffer agrees cell by cell (coarsely)
    assert abs(grid.mean() - gb.holds.mean()) < 0.1


def test_ray_hits_are_exact_on_the_floor():
    """Hand-computed: a ray from (0, 2, 0) pointing 45 degrees down along +z meets the floor at z = 2."""
    s = room.sample_scene("corridor", 1, 64, 64)
    s.boxes, s.cyls, s.people = [], [], []
    d = np.array([[0.0, -1.0, 1.0]], np.float32) / np.sqrt(2)
    hit = room.trace(s, np.array([0.0, 2.0, 0.0]), d)
    assert hit.sid[0] == 0 and np.allclose(hit.p[0], [0, 0, 2], atol=1e-5) and np.allclose(hit.n[0], [0, 1, 0])
    assert np.isclose(hit.t[0], 2 * np.sqrt(2), atol=1e-5)
    # a box in the way (z 1-1.5, up to 1.5 m): at z = 1 the ray is 1 m up, so it meets the near face
    s.boxes.append(room.Box(np.array([-1, 0, 1.0]), np.array([1, 1.5, 1.5]), s.floor, s.floor))
    hit = room.trace(s, np.array([0.0, 2.0, 0.0]), d)
    assert hit.sid[0] == 10 and np.allclose(hit.p[0], [0, 1, 1], atol=1e-5) and np.allclose(hit.n[0], [0, 0, -1])
    # a lower, deeper box: the ray comes down onto its top (y = 0.5 at z = 1.5)
    s.boxes[0] = room.Box(np.array([-1, 0, 1.2]), np.array([1, 0.5, 3.0]), s.floor, s.floor)
    hit = room.trace(s, np.array([0.0, 2.0, 0.0]), d)
    assert hit.sid[0] == 10 and np.allclose(hit.p[0], [0, 0.5, 1.5], atol=1e-5) and np.allclose(hit.n[0], [0, 1, 0])


def test_camera_projection_inverts_its_rays():
    cam = room.Camera.make(160, 120, 70.0, np.array([0.5, 2.5, -1.0]), 0.3, 0.6, 0.05, "cctv")
    d = cam.rays()
    pts = cam.pos + d[[10, 60, 110], [5, 80, 150]] * np.array([[3.0], [5.0], [2.0]])
    uv = cam.project(pts)
    assert np.allclose(uv, [[5.5, 10.5], [80.5, 60.5], [150.5, 110.5]], atol=1e-3)


def test_gbuffer_is_rebuilt_identically_from_the_layout():
    img, lay = _scene("office", seed=7)
    room._cached.cache_clear()
    gb1, _ = room.gbuffer(lay)
    room._cached.cache_clear()
    gb2, _ = room.gbuffer(lay)
    assert np.array_equal(gb1.p, gb2.p) and np.array_equal(gb1.sid, gb2.sid) and np.array_equal(gb1.reflection, gb2.reflection)
    img2, lay2 = _scene("office", seed=7)
    assert np.array_equal(img, img2) and lay == lay2


@pytest.mark.parametrize("scene_type", ["retail", "hallway", "desk", "warehouse"])
@pytest.mark.parametrize("cls", [1, 2, 5, 8])
def test_liquid_labels_are_exact_and_inside_the_box(scene_type, cls):
    img, lay = _scene(scene_type, seed=cls)
    rng = np.random.default_rng(cls)
    from synspill.synth.propose import SIZES

    boxes = room.propose(lay, 192, 192, rng, 2, [cls], SIZES, 2.0, 12)
    if not boxes:
        pytest.skip("no surface to pour on in this view")
    specs = [SpillSpec(box=b, class_id=c, seed=10 + k) for k, (b, c) in enumerate(boxes)]
    res = ProceduralSpillBackend().inpaint(img, specs, layout=lay)
    changed = np.any(res.image != img, axis=2)
    allowed = np.zeros_like(changed)
    for s in specs:
        x1, y1, x2, y2 = s.box
        allowed[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)] = True
    assert not (changed & ~allowed).any()  # nothing outside the requested boxes moved
    for m, b, s in zip(res.masks, res.boxes, specs, strict=True):
        if b is None:
            assert not m.any()
            continue
        ys, xs = np.nonzero(m)
        assert b == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight around the visible liquid
        assert s.box[0] - 1e-6 <= b[0] and s.box[1] - 1e-6 <= b[1] and b[2] <= s.box[2] + 1e-6 and b[3] <= s.box[3] + 1e-6
        assert np.abs(res.image.astype(int) - img.astype(int)).sum(2)[m].mean() > 3  # the labelled pixels did change


def test_liquid_never_covers_what_stands_in_front():
    """A spill under a desk: the desk's legs and objects in front stay untouched and unlabelled."""
    img, lay = _scene("office", seed=21, size=256)
    gb, _ = room.gbuffer(lay)
    res = ProceduralSpillBackend().inpaint(img, [SpillSpec(box=(0, 96, 256, 256), class_id=2, seed=1)], layout=lay)
    m = res.masks[0]
    surf = room.surface_for_box(lay, (0, 96, 256, 256), (256, 256))
    # every labelled pixel shows the chosen surface (never a leg, a chair or a wall)
    assert m[96:256].sum() > 0 and not (m[96:256] & ~surf.on).any()


def test_spills_are_deterministic_per_seed():
    img, lay = _scene("kitchen", seed=5)
    spec = [SpillSpec(box=(20, 100, 180, 190), class_id=2, seed=4)]
    a = ProceduralSpillBackend().inpaint(img, spec, layout=lay)
    b = ProceduralSpillBackend().inpaint(img, spec, layout=lay)
    c = ProceduralSpillBackend().inpaint(img, [SpillSpec(box=(20, 100, 180, 190), class_id=2, seed=5)], layout=lay)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes and np.array_equal(a.masks[0], b.masks[0])
    assert not np.array_equal(a.image, c.image)


def test_fresnel_mirror_grows_toward_grazing_angles():
    """Schlick's term for water: 2 % head-on, rising steeply toward grazing views."""
    f = liquid._schlick(np.array([1.0, 0.5, 0.2, 0.05]), 1.33)
    assert np.isclose(f[0], ((1.33 - 1) / 2.33) ** 2, atol=1e-6)
    assert np.all(np.diff(f) > 0) and f[-1] > 0.6


def _pour(surface_kw: dict, name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    h, w = 64, 64
    u, v = np.meshgrid(np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    bg = np.full((h, w, 3), 0.55, np.float32)
    kw = dict(u=u, v=v, on=np.ones((h, w), bool), cosv=np.full((h, w), 0.7, np.float32),
              mirror=np.full((h, w, 3), 0.02, np.float32), light=np.ones((h, w, 3), np.float32), porous=0.5)
    kw.update(surface_kw)
    surf = liquid.Surface(**kw)
    hfield = np.zeros((h, w), np.float32)
    hfield[16:48, 16:48] = 1.0
    out, _ = liquid.shade_liquid(bg, hfield, liquid.LIQUIDS[name], surf, np.random.default_rng(seed), 2.0)
    return bg, out


def test_wet_porous_surfaces_darken_more_than_sealed_ones():
    bg, wet_concrete = _pour({"porous": 1.0}, "water")
    _, wet_tile = _pour({"porous": 0.0}, "water")
    c = (slice(24, 40), slice(24, 40))
    assert wet_concrete[c].mean() < wet_tile[c].mean() < bg[c].mean() + 0.05


def test_water_mirrors_a_bright_window_at_grazing_angles():
    bright = {"mirror": np.full((64, 64, 3), 3.0, np.float32)}
    _, head_on = _pour({**bright, "cosv": np.full((64, 64), 0.95, np.float32)}, "water")
    _, grazing = _pour({**bright, "cosv": np.full((64, 64), 0.08, np.float32)}, "water")
    c = (slice(24, 40), slice(24, 40))
    assert grazing[c].mean() > head_on[c].mean() + 0.1


def test_tea_absorbs_blue_more_than_red_and_milk_is_white():
    bg, tea = _pour({}, "tea")
    _, milk = _pour({}, "milk")
    c = (slice(24, 40), slice(24, 40))
    assert tea[c][..., 0].mean() > tea[c][..., 2].mean() + 0.05
    assert milk[c].mean() > bg[c].mean() + 0.1


def test_photo_surface_puts_the_mirror_above_the_box():
    img = np.zeros((100, 80, 3), np.uint8)
    img[:40] = 250  # a bright wall above the floor
    surf = liquid.photo_surface(img, (10, 60, 70, 95), np.random.default_rng(0), horizon=30.0)
    # rows just below the box's top mirror the rows just above it (bright), further down the dark floor
    assert surf.mirror[:5].mean() < surf.mirror.mean() + 1 and surf.u.shape == (35, 60)
    assert np.all(np.diff(surf.v[:, 0]) < 0)  # rows further down are nearer the camera


def test_docs_show_a_contact_sheet_of_every_scene_family():
    import re
    from pathlib import Path

    from synspill.synth.procedural import PLACE_TYPES

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "synth.md").read_text()
    shown = dict(re.findall(r"\| ([a-z-]+) \| !\[[^\]]*\]\((img/[^)]+)\) \|", doc))
    assert set(PLACE_TYPES) | {"plant"} <= set(shown), sorted(shown)
    for image in shown.values():
        assert (root / "docs" / image).stat().st_size > 10_000, image
    script = (root / "scripts" / "contact_sheets.sh").read_text()
    assert all(f in script for f in PLACE_TYPES)  # the script that makes them covers every family


def test_caution_signs_show_a_warning_triangle_and_text():
    """The sign's face: dark ink in the middle half of its tile (the face), none in the outer quarters."""
    from synspill.synth import surfaces

    t = surfaces.texture("sign").mean(axis=2)
    ink = t < 0.2
    assert ink[:, 160:352].mean() > 0.05 and not ink[:, :96].any() and not ink[:, -96:].any()
    s = next(s for s in (room.sample_scene("retail", k, 64, 64) for k in range(40)) if "sign" in s.params)
    sign = next(b for b in s.boxes if b.side.kind == "sign")
    x0, z0, x1, z1, h = s.params["sign"]
    assert np.allclose([sign.lo[0], sign.lo[2], sign.hi[0], sign.hi[1]], [x0, z0, x1, h], atol=2e-3)
    # the face's centre maps to the tile's centre, its top edge to the tile's top
    m = sign.side
    u, v = (x0 + x1) / 2, -h
    assert np.isclose((u + m.offset[0]) / m.tile_m * surfaces.TILE, surfaces.TILE / 2, atol=1)
    assert np.isclose((v + m.offset[1]) / m.tile_m * surfaces.TILE, 0, atol=1)


@pytest.mark.parametrize("size", [(192, 192), (640, 360)])
def test_gbuffer_of_the_boxes_only_equals_the_full_frame_there(size):
    """Stage 3 re-traces only the pixels around its boxes: each box's surface must be exactly the
    full frame's (shadows and reflections are interpolated from sparse grids across the margin)."""
    w, h = size
    for scene_type, seed in (("warehouse", 4), ("desk", 9), ("retail", 2)):
        _, lay = ProceduralSceneBackend().render(SceneSpec(seed=seed, scene_type=scene_type, width=w, height=h))
        boxes = [(0, 0, w // 4, h // 4), (w // 3, h // 2, w // 3 + 37, h // 2 + 23), (w - 50, h - 30, w, h)]
        room._cached.cache_clear()
        part, _ = room.gbuffer(lay, boxes, (w, h))
        assert (part.sid == -1).mean() > 0.2  # most of the frame was not traced
        for box in boxes:
            full = room.surface_for_box(lay, box, (w, h))
            mine = room.surface_for_box(lay, box, (w, h), part)
            for name in ("u", "v", "on", "cosv", "mirror", "light", "porous", "view", "points"):
                assert np.array_equal(getattr(full, name), getattr(mine, name)), (scene_type, box, name)
            assert full.meta == mine.meta and all(np.array_equal(a, b) for a, b in zip(full.lights, mine.lights, strict=True))


def test_layouts_without_their_exposure_rebuild_the_whole_frame():
    _, lay = _scene("office", seed=7)
    assert lay["room"]["exposure"] > 0
    old = {**lay, "room": {k: v for k, v in lay["room"].items() if k != "exposure"}}
    gb, _ = room.gbuffer(old, [(0, 0, 20, 20)], (192, 192))
    assert (gb.sid >= 0).all() and gb.exposure == lay["room"]["exposure"]


def test_photo_surface_light_is_the_linear_luminance_around_the_box():
    """Reference: the float formula (to_linear of the whole picture, channel mean) the LUT replaces."""
    import cv2

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    img[40:] = cv2.GaussianBlur(img[40:], (0, 0), 3)
    surf = liquid.photo_surface(img, (20, 50, 100, 85), np.random.default_rng(1), horizon=30.0)
    lin = liquid.to_linear(img.astype(np.float32) / 255.0)
    small = cv2.resize(lin.mean(axis=2), (130 // 16, 90 // 16), interpolation=cv2.INTER_AREA)
    local = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.0), (130, 90), interpolation=cv2.INTER_LINEAR)[50:85, 20:100]
    assert np.array_equal(surf.light[..., 1], np.clip(local / 0.35, 0.2, 3.0).astype(np.float32))
