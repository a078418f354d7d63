"""Job runner: COCO outputs, determinism, resume after a crash, shards == single run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synspill.coco.dataset import load_coco
from synspill.errors import DatasetError, OutputExists
from synspill.synth.inpaint import InpaintJob, rle_encode, run_inpaint
from synspill.synth.jobrunner import encode_jpeg, parse_range, parse_shard
from synspill.synth.procedural import ProceduralSceneBackend, ProceduralSpillBackend
from synspill.synth.scenes import ScenesJob, load_scenes, merge_scenes, run_scenes, scene_prompt

SIZE = 128


def scenes_job(out: Path, n: int = 6, **kw) -> ScenesJob:
    kw.setdefault("batch_size", 2)
    return ScenesJob(out=out, n=n, seed=7, width=SIZE, height=SIZE, **kw)


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((d / "images").glob("*.jpg"))}


def manifest(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scenes")
    run_scenes(scenes_job(d, n=6))
    return d


def test_scenes_outputs(scenes_dir):
    ds = load_coco(scenes_dir / "scenes.json", check_images=True)
    assert [im.id for im in ds.images] == list(range(1, 7)) and not ds.annotations
    # every scene says where liquids can lie: a floor polygon (plant rooms) or a surface grid (places)
    assert all((im.extra["layout"].get("floor") or im.extra["layout"].get("surface_grid")) and im.width == SIZE for im in ds.images)
    recs = manifest(scenes_dir)
    assert [r["index"] for r in recs] == list(range(6))
    r = recs[0]
    assert r["backend"] == "procedural" and r["versions"]["numpy"] == np.__version__ and "synspill" in r["versions"]
    assert isinstance(r["seed"], int) and r["params"]["jpeg_quality"] and r["scene_type"]
    assert len({x["seed"] for x in recs}) == 6


def test_manifest_record_regenerates_the_image(scenes_dir):
    from synspill.synth.base import SceneSpec

    r = manifest(scenes_dir)[3]
    img, _ = ProceduralSceneBackend().render(SceneSpec(r["seed"], r["scene_type"], r["width"], r["height"]))
    assert encode_jpeg(img, r["params"]["jpeg_quality"]) == (scenes_dir / r["file_name"]).read_bytes()


def test_same_seed_same_bytes_other_seed_differs(scenes_dir, tmp_path):
    run_scenes(scenes_job(tmp_path / "a", n=6, batch_size=4))
    assert files(tmp_path / "a") == files(scenes_dir)
    run_scenes(ScenesJob(out=tmp_path / "b", n=2, seed=8, width=SIZE, height=SIZE))
    assert files(tmp_path / "b")["000001.jpg"] != files(scenes_dir)["000001.jpg"]


def _crash_after(monkeypatch, cls, method: str, k: int) -> None:
    orig = getattr(cls, method)
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > k:
            raise RuntimeError("simulated crash")
        return orig(self, *a, **kw)

    monkeypatch.setattr(cls, method, flaky)


def test_scenes_resume_after_crash(scenes_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    with monkeypatch.context() as m:
        _crash_after(m, ProceduralSceneBackend, "render", 3)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_scenes(scenes_job(out, n=6, batch_size=1))
    first = {r["file_name"]: (out / r["file_name"]).stat().st_mtime_ns for r in
             (json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines())}
    assert len(first) == 3 and not (out / "scenes.json").exists()
    # a torn last line (killed mid-write) and a stray temp file must not break the resume
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"index": 4, "file_na')
    (out / "images" / ".000005.jpg.s0of1.tmp").write_bytes(b"partial")
    done = []
    run_scenes(scenes_job(out, n=6, batch_size=1), on_start=lambda d, t: done.append((d, t)))
    assert done == [(3, 3)]
    recs = manifest(out)
    assert [r["index"] for r in recs] == list(range(6))  # no duplicates, none missing
    for name, mt in first.items():
        assert (out / name).stat().st_mtime_ns == mt  # finished files untouched
    assert files(out) == files(scenes_dir)  # and the dataset is the uninterrupted one
    assert not list((out / "images").glob(".*"))
    # resuming a finished run does nothing
    run_scenes(scenes_job(out, n=6), on_start=lambda d, t: done.append((d, t)))
    assert done[-1] == (6, 0)


def test_resume_redoes_a_missing_or_changed_file(scenes_dir, tmp_path):
    import shutil

    out = tmp_path / "c"
    shutil.copytree(scenes_dir, out)
    (out / "images" / "000002.jpg").unlink()
    (out / "images" / "000004.jpg").write_bytes(b"garbage")
    (out / "scenes.json").unlink()
    done = []
    run_scenes(scenes_job(out, n=6), on_start=lambda d, t: done.append((d, t)))
    assert done == [(4, 2)] and files(out) == files(scenes_dir)


def test_other_settings_refused(scenes_dir):
    with pytest.raises(OutputExists, match="other settings"):
        run_scenes(ScenesJob(out=scenes_dir, n=6, seed=999, width=SIZE, height=SIZE))


def test_shards_merge_to_the_single_run(scenes_dir, tmp_path):
    out = tmp_path / "s"
    assert run_scenes(scenes_job(out, n=6, shard=(1, 3))) is None
    assert run_scenes(scenes_job(out, n=6, shard=(2, 3))) is None
    assert (out / "manifest.1-of-3.jsonl").exists()
    assert run_scenes(scenes_job(out, n=6, shard=(0, 3)), merge_wait_s=5) == out / "scenes.json"
    assert files(out) == files(scenes_dir)
    a, b = json.loads((out / "scenes.json").read_text()), json.loads((scenes_dir / "scenes.json").read_text())
    assert a["images"] == b["images"]
    assert [r["index"] for r in manifest(out)] == list(range(6))
    assert not list(out.glob("manifest.*-of-*")) and not list(out.glob(".done*"))


def test_merge_reports_missing_shards(tmp_path):
    out = tmp_path / "m"
    run_scenes(scenes_job(out, n=4, shard=(1, 2)))
    with pytest.raises(DatasetError, match="not finished"):
        merge_scenes(out)


def test_shard_from_accelerate_env(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard(None) == (2, 4)
    assert parse_shard("1/2") == (1, 2)
    monkeypatch.delenv("RANK")
    assert parse_shard(None) == (0, 1)


# ---- inpaint ---------------------------------------------------------------------------
def inpaint_job(scenes: Path, out: Path, **kw) -> InpaintJob:
    kw.setdefault("propose", kw.get("boxes") is None)
    kw.setdefault("per_image", (1, 3))
    return InpaintJob(scenes=scenes, out=out, seed=3, batch_size=2, **kw)


@pytest.fixture(scope="module")
def inpainted(scenes_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inp") / "o"
    run_inpaint(inpaint_job(scenes_dir, out, per_image=(2, 3)))
    return out


def test_inpaint_coco_masks_and_boxes(inpainted):
    from pycocotools import mask as mask_utils

    ds = load_coco(inpainted / "annotations.json", check_images=True)
    assert len(ds.images) == 6 and len(ds.annotations) >= 6
    assert ds.annotations[0].id == 1 and [a.id for a in ds.annotations] == list(range(1, len(ds.annotations) + 1))
    for a in ds.annotations:
        assert a.extra["auto"] is True
        m = mask_utils.decode({"size": a.segmentation["size"], "counts": a.segmentation["counts"].encode()}).astype(bool)
        ys, xs = np.nonzero(m)
        assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == a.bbox  # tight
        rx1, ry1, rx2, ry2 = a.extra["requested_box"]
        assert rx1 <= xs.min() and ry1 <= ys.min() and xs.max() + 1 <= rx2 and ys.max() + 1 <= ry2
        assert a.area == m.sum()
    from PIL import Image

    with Image.open(inpainted / "contact_sheet.png") as im:
        assert im.size[0] > 300 and np.asarray(im).std() > 10


def test_inpaint_from_boxes_file(scenes_dir, tmp_path):
    from synspill.coco.dataset import save_coco
    from synspill.synth.propose import propose_dataset

    boxes = propose_dataset(load_scenes(scenes_dir), (1, 2), [1, 6], seed=5)
    boxes.annotations = [a for a in boxes.annotations if a.image_id != 2]
    for a in boxes.annotations:
        a.extra = {}  # expert boxes
    save_coco(boxes, tmp_path / "boxes.json")
    out = tmp_path / "o"
    run_inpaint(inpaint_job(scenes_dir, out, boxes=tmp_path / "boxes.json"))
    ds = load_coco(out / "annotations.json")
    assert len(ds.images) == 6  # images without boxes stay in as negatives
    assert not [a for a in ds.annotations if a.image_id == 2]
    assert {a.category_id for a in ds.annotations} <= {1, 6}
    assert all(a.extra["auto"] is False for a in ds.annotations)
    assert 0 < len(ds.annotations) <= len(boxes.annotations)


def test_inpaint_boxes_for_unknown_image(scenes_dir, tmp_path):
    from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord, save_coco

    ds = CocoDataset(images=[ImageRecord(1, "images/nope.jpg", SIZE, SIZE)],
                     annotations=[Annotation(1, 1, 1, [10, 10, 20, 20])])
    save_coco(ds, tmp_path / "b.json")
    with pytest.raises(DatasetError, match="not among the scenes"):
        run_inpaint(inpaint_job(scenes_dir, tmp_path / "o", boxes=tmp_path / "b.json"))
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_inpaint_refuses_places_rendered_by_another_version(tmp_path):
    """Stage 3 rebuilds a place's G-buffer from (family, seed): scenes drawn by another version
    would get liquids that mirror and hide behind things the picture does not show."""
    from synspill.synth import room

    scenes = tmp_path / "scenes"
    run_scenes(ScenesJob(out=scenes, n=2, seed=7, width=64, height=64, scene_types=("retail",)))
    run_inpaint(inpaint_job(scenes, tmp_path / "ok"))  # this version's scenes are fine
    doc = json.loads((scenes / "scenes.json").read_text())
    for im in doc["images"]:
        im["layout"]["room"]["v"] = room.VERSION - 1
    (scenes / "scenes.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=rf"000001\.jpg: rendered by another synspill \(place layout v{room.VERSION - 1}; "
                                           rf"this one rebuilds v{room.VERSION}\); run `synspill scenes` again"):
        run_inpaint(inpaint_job(scenes, tmp_path / "old"))
    assert not (tmp_path / "old").exists()  # nothing written for bad input


def test_inpaint_deterministic_resume_and_shards(scenes_dir, inpainted, tmp_path, monkeypatch):
    out = tmp_path / "r"
    with monkeypatch.context() as m:
        _crash_after(m, ProceduralSpillBackend, "inpaint", 2)
        with pytest.raises(RuntimeError):
            run_inpaint(InpaintJob(scenes=scenes_dir, out=out, propose=True, per_image=(2, 3), seed=3, batch_size=1))
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("*.jpg")}
    assert len(kept) == 2
    run_inpaint(InpaintJob(scenes=scenes_dir, out=out, propose=True, per_image=(2, 3), seed=3, batch_size=1))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("*.jpg") if p.name in kept} == kept
    assert files(out) == files(inpainted)
    assert (out / "annotations.json").read_text() == (inpainted / "annotations.json").read_text()
    sh = tmp_path / "sh"
    run_inpaint(inpaint_job(scenes_dir, sh, per_image=(2, 3), shard=(1, 2)))
    run_inpaint(inpaint_job(scenes_dir, sh, per_image=(2, 3), shard=(0, 2)), merge_wait_s=5)
    assert files(sh) == files(inpainted)
    a, b = json.loads((sh / "annotations.json").read_text()), json.loads((inpainted / "annotations.json").read_text())
    assert a["annotations"] == b["annotations"] and a["images"] == b["images"]


@pytest.mark.slow
def test_worker_pool_gives_the_same_bytes(scenes_dir, inpainted, tmp_path):
    run_scenes(scenes_job(tmp_path / "p", n=6, workers=2))
    assert files(tmp_path / "p") == files(scenes_dir)
    run_inpaint(inpaint_job(scenes_dir, tmp_path / "q", per_image=(2, 3), workers=2))
    assert files(tmp_path / "q") == files(inpainted)


def test_load_scenes_plain_folder(tmp_path):
    from tests.conftest import make_image

    for i in range(3):
        make_image(tmp_path / "ph" / f"{i}.png", 64, 48, seed=i)
    ds = load_scenes(tmp_path / "ph")
    assert [im.file_name for im in ds.images] == ["0.png", "1.png", "2.png"] and ds.images[0].width == 64
    with pytest.raises(DatasetError, match="does not exist"):
        load_scenes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_scenes(tmp_path / "empty")


def test_parse_range():
    from synspill.errors import UsageError

    assert parse_range("0.2:0.4", "x") == (0.2, 0.4)
    assert parse_range("0.5", "x") == (0.5, 0.5)
    for bad in ("a:b", "0.4:0.2", "1:2:3"):
        with pytest.raises(UsageError):
            parse_range(bad, "x")
    with pytest.raises(UsageError, match="within"):
        parse_range("0.5:1.5", "--strength", 0, 1)


@pytest.mark.parametrize("seed", range(4))
def test_rle_matches_pycocotools(seed):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    m = np.zeros((37, 53), bool)
    x1, x2 = sorted(rng.integers(0, 53, 2))
    m[rng.integers(0, 37):, x1:x2 + 1] = rng.random((1, x2 + 1 - x1)) > 0.3 if seed % 2 else True
    if seed == 3:
        m[:] = False
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
    assert rle_encode(m)["counts"] == ref
    assert rle_encode(m, (x1, 0, x2 + 1, 37))["counts"] == ref


def test_scene_prompts_recorded(tmp_path):
    prompts = {"positive": "A factory interior.", "negative": "text, watermark",
               "types": {"corridor": {"variations": ["Long corridor", "Narrow hall"]}}}
    pos, neg = scene_prompt(prompts, "corridor", 1)
    assert pos.endswith(", A factory interior.") and pos.split(",")[0] in ("Long corridor", "Narrow hall")
    assert neg == "text, watermark" and scene_prompt({}, "corridor", 1) == ("", "")
    run_scenes(ScenesJob(out=tmp_path / "p", n=2, width=64, height=64, scene_types=("corridor",), scene_prompts=prompts))
    recs = manifest(tmp_path / "p")
    assert all(r["prompt"].endswith("A factory interior.") and r["negative_prompt"] == neg for r in recs)


def test_jobs_with_worker_pools_run_one_after_another_in_one_process(tmp_path):
    """A second pooled job in the same process used to hang: its workers were forked while
    OpenCV's thread pool (busy with the first job's contact sheet) had threads they lacked."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom pathlib import Path\n"
        "from synspill.synth.scenes import ScenesJob, run_scenes\n"
        "from synspill.synth.inpaint import InpaintJob, run_inpaint\n"
        "t = Path(sys.argv[1])\n"
        "for k in range(2):\n"
        "    run_scenes(ScenesJob(out=t / f's{k}', n=8, seed=k, width=96, height=96, workers=2, batch_size=2))\n"
        "    run_inpaint(InpaintJob(scenes=t / f's{k}', out=t / f'i{k}', propose=True, seed=k, workers=2, batch_size=2))\n"
        "print('done')\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the second job's pool hung")
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]
    assert len(list((tmp_path / "i1" / "images").iterdir())) == 8
