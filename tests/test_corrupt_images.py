"""A corrupt input image is handled the same way everywhere (#14 row 5): the run stops with one
line naming the file and the fix (exit 1), before any work where the damage can be seen cheaply
(a truncated file), else when the image is reached (finished work kept); never "internal error"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app


def jpeg(path: Path, seed: int, size: int = 64) -> Path:
    import simplejpeg

    rng = np.random.default_rng(seed)
    img = np.repeat(rng.integers(100, 200, (size, size, 1), dtype=np.uint8), 3, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(simplejpeg.encode_jpeg(img, quality=90))
    return path


@pytest.fixture
def truncated(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of three scene JPEGs; the second is cut in half (an interrupted copy)."""
    folder = tmp_path / "scenes"
    for i in range(3):
        jpeg(folder / f"s{i}.jpg", i)
    bad = folder / "s1.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return folder, bad


@pytest.mark.parametrize("command", [
    ["propose", "--scenes", "{scenes}", "--out", "{out}/boxes.json"],
    ["inpaint", "--scenes", "{scenes}", "--propose", "--out", "{out}/spills", "--workers", "1"],
    ["predict", "--model", "py:tests.watch.blobs:load", "--images", "{scenes}", "--out", "{out}/preds.json"],
    ["scenes", "--backgrounds", "{scenes}", "--n", "2", "--size", "32", "--out", "{out}/bg"],
], ids=lambda c: c[0])
def test_truncated_image_stops_before_any_work_naming_it(truncated, tmp_path, command):
    scenes, bad = truncated
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [a.format(scenes=scenes, out=out) for a in command])
    assert r.exit_code == 1, r.output
    assert f"{bad}: image file is truncated" in r.output and "replace it with a complete copy" in r.output
    assert "internal error" not in r.output
    assert not out.exists() or not any(out.rglob("*.*")), list(out.rglob("*"))  # nothing written


@pytest.mark.parametrize("workers", ["1", "2"])
def test_undecodable_scene_is_named_when_reached(tmp_path, workers):
    import json

    from synspill import taxonomy

    folder = tmp_path / "scenes"
    for i in range(4):
        jpeg(folder / f"s{i}.jpg", i)
    # a COCO scenes file: nothing reads the pixels before inpaint does
    (folder / "annotations.json").write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": f"s{i}.jpg", "width": 64, "height": 64} for i in range(4)],
        "annotations": [], "categories": taxonomy.coco_categories()}))
    bad = folder / "s2.jpg"
    junk = np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes()
    bad.write_bytes(b"\xff\xd8\xff" + junk + b"\xff\xd9")  # complete (end marker), but no decoder can read it
    r = CliRunner().invoke(app, ["inpaint", "--scenes", str(folder), "--propose", "--out", str(tmp_path / "o"),
                                 "--workers", workers, "--batch-size", "1"])
    assert r.exit_code == 1, r.output
    assert f"{bad}: not a readable image" in r.output and "internal error" not in r.output
    assert "run the same command again (finished images are kept)" in r.output


def test_unreadable_image_is_named_after_ultralytics_patched_pillow(tmp_path):
    """Once ultralytics is imported (any YOLO run in the process), its patched ``Image.open``
    fails on an unknown file with an ImportError (pi_heif): still one line naming the file."""
    import ultralytics.utils.patches  # noqa: F401

    folder = tmp_path / "imgs"
    jpeg(folder / "a.jpg", 0)
    bad = folder / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8).tobytes() + b"\xff\xd9")
    r = CliRunner().invoke(app, ["predict", "--model", "py:tests.watch.blobs:load", "--images", str(folder),
                                 "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 1 and f"{bad}: not a readable image" in r.output and "internal error" not in r.output, r.output
