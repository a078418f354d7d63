"""Procedural scene and spill backends: determinism, geometry invariants, class appearance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synspill.synth.base import SceneSpec, SpillSpec
from synspill.synth.procedural import PLANT_TYPES, ProceduralSceneBackend, ProceduralSpillBackend


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    img, _ = ProceduralSceneBackend().render(SceneSpec(seed=3, scene_type="pump-room", width=256, height=256))
    return img


def test_scene_deterministic_and_seed_dependent():
    be = ProceduralSceneBackend()
    a, la = be.render(SceneSpec(seed=11, scene_type="corridor", width=192, height=128))
    b, lb = be.render(SceneSpec(seed=11, scene_type="corridor", width=192, height=128))
    c, _ = be.render(SceneSpec(seed=12, scene_type="corridor", width=192, height=128))
    assert a.shape == (128, 192, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, c)
    assert np.array_equal(be.generate([SceneSpec(seed=11, scene_type="corridor", width=192, height=128)])[0], a)


@pytest.mark.parametrize("scene_type", PLANT_TYPES)
def test_layout_geometry_inside_image(scene_type):
    w, h = 256, 192
    img, lay = ProceduralSceneBackend().render(SceneSpec(seed=5, scene_type=scene_type, width=w, height=h))
    assert img.std() > 5  # not a flat frame
    assert 0 <= lay["horizon"] <= h and lay["cam_height"] > 0 and lay["focal"] > 0
    for x, y in lay["floor"]:
        assert -1 <= x <= w + 1 and lay["horizon"] - 1 <= y <= h + 1
    for e in lay["equipment"]:
        x1, y1, x2, y2 = e["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert len(lay["floor_grid"]) == 32 and all(len(r) == 32 for r in lay["floor_grid"])
    assert lay["params"]["scene_type"] == scene_type


def test_scenes_vary():
    be = ProceduralSceneBackend()
    imgs = [be.render(SceneSpec(seed=s, scene_type="", width=128, height=128))[0] for s in range(6)]
    means = [im.reshape(-1, 3).mean(0) for im in imgs]
    # different seeds give clearly different pictures (not one template with noise)
    d = [np.abs(imgs[i].astype(int) - imgs[j].astype(int)).mean() for i in range(6) for j in range(i + 1, 6)]
    assert min(d) > 8
    assert np.ptp(np.array(means), axis=0).max() > 15


@pytest.mark.parametrize("cls", range(1, 9))
def test_spill_inside_box_tight_and_nothing_else_changes(scene, cls):
    box = (40.0, 150.0, 200.0, 230.0)
    res = ProceduralSpillBackend().inpaint(scene, [SpillSpec(box=box, class_id=cls, seed=cls)])
    m, b = res.masks[0], res.boxes[0]
    assert m.shape == scene.shape[:2] and m.dtype == bool and m.any()
    ys, xs = np.nonzero(m)
    assert b == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight
    assert box[0] <= b[0] and box[1] <= b[1] and b[2] <= box[2] and b[3] <= box[3]
    changed = np.any(res.image != scene, axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= box[0] and ys.min() >= box[1] and xs.max() < box[2] and ys.max() < box[3]
    # visible pixels really changed
    diff = np.abs(res.image.astype(int) - scene.astype(int)).sum(2)
    assert diff[m].mean() > 10
    assert res.params[0]["liquid"] and res.params[0]["surface"] == "photo"


def test_spill_deterministic(scene):
    specs = [SpillSpec(box=(10, 140, 120, 220), class_id=1, seed=4), SpillSpec(box=(130, 150, 250, 250), class_id=2, seed=5)]
    a = ProceduralSpillBackend().inpaint(scene, specs)
    b = ProceduralSpillBackend().inpaint(scene, specs)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks, strict=True))
    c = ProceduralSpillBackend().inpaint(scene, [SpillSpec(box=(10, 140, 120, 220), class_id=1, seed=99)])
    assert not np.array_equal(a.masks[0], c.masks[0])


def test_box_outside_image_is_invisible(scene):
    res = ProceduralSpillBackend().inpaint(scene, [SpillSpec(box=(300, 300, 400, 400), class_id=1, seed=1)])
    assert res.boxes == [None] and not res.masks[0].any() and np.array_equal(res.image, scene)


def test_later_spill_hides_earlier(scene):
    specs = [SpillSpec(box=(20, 140, 200, 240), class_id=2, seed=1), SpillSpec(box=(20, 140, 200, 240), class_id=1, seed=2)]
    res = ProceduralSpillBackend().inpaint(scene, specs)
    assert not (res.masks[0] & res.masks[1]).any()


def _lum(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_liquids_look_different():
    """Independent of the renderer's code: measured colour statistics per liquid, many seeds."""
    be, sp = ProceduralSceneBackend(), ProceduralSpillBackend()
    stats: dict[str, list[tuple[float, float, float]]] = {}
    for seed in range(10):
        img, _ = be.render(SceneSpec(seed=100 + seed, scene_type="corridor", width=256, height=256))
        for c in (1, 2, 6, 8):
            r = sp.inpaint(img, [SpillSpec(box=(30, 150, 220, 240), class_id=c, seed=seed)])
            m = r.masks[0]
            if r.params[0].get("blend") == "poisson":  # gradient-domain blending keeps the floor's tone
                continue
            before, after = _lum(img)[m].mean(), _lum(r.image)[m].mean()
            rg = r.image[m][:, 0].astype(float).mean() / (r.image[m][:, 1].astype(float).mean() + 1)
            stats.setdefault(r.params[0]["liquid"], []).append((after, after - before, rg))
    mean = {k: np.mean(np.array(v), axis=0) for k, v in stats.items()}
    assert {"oil", "water", "rust"} <= set(mean) and any(k.startswith("powder") for k in mean)
    assert mean["oil"][0] < mean["water"][0]          # oil darker than water
    assert mean["oil"][1] < 0 and mean["water"][1] < 0  # both darken the floor
    powder = [v[1] for k, v in mean.items() if k.startswith("powder")]
    assert np.mean(powder) > 0                         # powder brightens it
    assert mean["rust"][2] > mean["water"][2] + 0.1    # rust is redder than water


@settings(max_examples=30, deadline=None)
@given(x1=st.floats(-50, 150), y1=st.floats(-50, 150), w=st.floats(1, 200), h=st.floats(1, 200),
       cls=st.integers(1, 8), seed=st.integers(0, 2**31), feather=st.floats(0, 80), opacity=st.floats(0.05, 1.0))
def test_spill_invariants_any_box(x1, y1, w, h, cls, seed, feather, opacity):
    img = np.full((128, 160, 3), 120, np.uint8)
    img[::7] = 90
    box = (x1, y1, x1 + w, y1 + h)
    res = ProceduralSpillBackend().inpaint(img, [SpillSpec(box=box, class_id=cls, seed=seed, feather=feather, opacity=opacity)])
    m, b = res.masks[0], res.boxes[0]
    changed = np.any(res.image != img, axis=2)
    if changed.any():
        ys, xs = np.nonzero(changed)
        assert xs.min() >= box[0] - 1e-6 and ys.min() >= box[1] - 1e-6 and xs.max() + 1 <= box[2] + 1e-6 and ys.max() + 1 <= box[3] + 1e-6
    if b is None:
        assert not m.any()
    else:
        ys, xs = np.nonzero(m)
        assert b == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 <= b[0] < b[2] <= 160 and 0 <= b[1] < b[3] <= 128
        assert box[0] - 1e-6 <= b[0] and box[1] - 1e-6 <= b[1] and b[2] <= box[2] + 1e-6 and b[3] <= box[3] + 1e-6


def test_backgrounds_backend(tmp_path):
    from PIL import Image

    from synspill.errors import DatasetError
    from synspill.synth.procedural import BackgroundSceneBackend

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (90 + i * 10, 140, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    be = BackgroundSceneBackend(str(tmp_path))
    a, lay = be.render(SceneSpec(seed=1, scene_type="", width=128, height=96))
    b, _ = be.render(SceneSpec(seed=1, scene_type="", width=128, height=96))
    assert a.shape == (96, 128, 3) and np.array_equal(a, b) and lay["source"].startswith("p")
    with pytest.raises(DatasetError, match="no images"):
        BackgroundSceneBackend(str(tmp_path / "nope")) if False else BackgroundSceneBackend(str(_empty(tmp_path)))
    with pytest.raises(DatasetError, match="does not exist"):
        BackgroundSceneBackend(str(tmp_path / "missing"))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
