"""Demo: the spill video reveals the spill monotonically; a re-run reuses every stage."""

from __future__ import annotations

import numpy as np
import pytest


def _frames(path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    return out


def test_spill_video_appears_and_grows(tmp_path):
    from synspill.demo import make_spill_video

    h, w = 96, 128
    clean = np.full((h, w, 3), 160, np.uint8)
    spilled = clean.copy()
    mask = np.zeros((h, w), bool)
    mask[40:80, 30:100] = True
    spilled[mask] = 20
    path = make_spill_video(clean, spilled, mask, tmp_path / "v.mp4", fps=4, seconds=4)
    frames = _frames(path)
    assert len(frames) == 16
    dark = [float((f[mask].mean(-1) < 90).mean()) for f in frames]  # share of the spill visible
    assert dark[0] < 0.05 and dark[3] < 0.05  # the first quarter is clean
    assert dark[-1] > 0.9  # fully visible at the end
    assert all(b >= a - 0.05 for a, b in zip(dark, dark[1:], strict=False))  # grows, never shrinks
    outside = ~mask
    outside[36:84, 26:104] = False  # ignore the blur band and codec ringing at the edge
    assert np.abs(frames[-1][outside].astype(int) - 160).mean() < 6  # nothing else changes


@pytest.mark.slow
def test_tiny_demo_runs_then_reuses_every_stage(tmp_path):
    from synspill.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=tmp_path / "demo", n_images=24, size=128, epochs=1, imgsz=128, batch=8, workers=1, device="cpu")
    first = run_demo(cfg)
    assert first.reused == []
    assert (tmp_path / "demo" / "eval" / "eval.md").is_file()
    assert (tmp_path / "demo" / "eval" / "hit_rate_vs_iou.png").stat().st_size > 1000
    assert first.watch["samples"] > 0 and (tmp_path / "demo" / "watch" / "events.sqlite").is_file()
    # the real-photo check scored the shipped real sets with their sample sizes
    real = first.real["methods"]["lite0"]
    assert [(r["name"], r["n_images"], r["n_boxes"]) for r in real] == [("wet-floor-valid", 21, 36), ("wet-floor-test", 11, 16)]
    assert all(0.0 <= r["map50"] <= 1.0 and 0.0 <= r["hit_rate50"] <= 1.0 for r in real)
    assert all(0.0 <= r["map50_ci"][0] <= r["map50_ci"][1] <= 1.0 for r in real)  # the 95 % bootstrap interval
    weights = tmp_path / "demo" / "runs" / "yolo" / "weights" / "best.pt"
    mtime = weights.stat().st_mtime_ns
    again = run_demo(cfg)
    assert again.reused == ["data", "train-yolo", "eval", "real", "watch"]
    assert weights.stat().st_mtime_ns == mtime  # nothing retrained
    assert again.metrics == first.metrics
