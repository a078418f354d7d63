"""The camera model: what a CCTV camera (or a phone) does to a rendered picture.

CCTV: high mounting and wide angle come from the scene's camera; here the picture loses
resolution (a sensor smaller than the output, upscaled by the recorder), gets soft optics,
sensor noise, a colour cast, vignetting, sometimes motion blur, an on-screen display with
the date, time and camera name, and strong JPEG compression (chosen per image by the job
writer from ``jpeg_quality``). Phones and people's eye-level views are sharper and cleaner.

The on-screen display is drawn last and recorded, so that stage 3 can draw it again over
a spill (the text stays on top, as in a real recording).
"""

from __future__ import annotations

from typing import Any

import numpy as np

CAMERA_NAMES = ("CAM", "CH", "Camera", "IPC", "CCTV")
PLACES = ("AISLE", "DOCK", "LOBBY", "HALL", "STORE", "KITCHEN", "OFFICE", "STAIRS", "CORRIDOR", "ENTRANCE", "BAY", "FLOOR")


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(a + (b - a) * rng.random())


def apply(img: np.ndarray, rng: np.random.Generator, view: str, size: tuple[int, int] | None = None
          ) -> tuple[np.ndarray, dict[str, Any]]:
    """Camera model on a float RGB picture in [0, 1]; returns uint8 RGB ``size`` (``(W, H)``,
    default the input's) and its parameters. Colour and optics are applied at the input's
    resolution, noise and the on-screen display at the output's."""
    import cv2

    h, w = img.shape[:2]
    out_w, out_h = size or (w, h)
    cctv = view == "cctv"
    from synspill.synth import ablated

    if ablated("camera"):
        out = cv2.convertScaleAbs(np.asarray(img, np.float32), alpha=255.0)
        return cv2.resize(out, (out_w, out_h), interpolation=cv2.INTER_LINEAR) if (out_w, out_h) != (w, h) else out, \
            {"jpeg_quality": 95, "blur": 0.0}
    params: dict[str, Any] = {}
    x: np.ndarray = img.astype(np.float32, copy=True)
    cast = np.array([_u(rng, 0.9, 1.1), 1.0, _u(rng, 0.88, 1.1)], np.float32)
    if cctv and rng.random() < 0.3:  # washed-out colour of cheap sensors
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * _u(rng, 0.4, 0.85)
    x *= cast * _u(rng, 0.85, 1.15)
    vig = _u(rng, 0.0, 0.5 if cctv else 0.25)
    if vig > 0.02:
        yy, xx = np.ogrid[0:h, 0:w]
        r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
        x *= (1 - vig * 0.4 * r2).astype(np.float32)[..., None]
    if cctv and rng.random() < 0.6:  # resolution loss: a small sensor upscaled by the recorder
        f = _u(rng, 1.3, 2.5)
        sw, sh = max(16, int(w / f)), max(16, int(h / f))
        x = cv2.resize(cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
        params["downscale"] = round(f, 2)
    sig = _u(rng, 0.3, 1.0) if cctv else _u(rng, 0.0, 0.6)
    if sig > 0.25:
        x = cv2.GaussianBlur(x, (0, 0), sig)
    params["blur"] = round(sig * out_w / w, 3)  # in output pixels
    if rng.random() < (0.08 if cctv else 0.05):  # motion blur (camera shake, or a pan)
        k = int(_u(rng, 3, 9) * max(1.0, w / 512))
        ker: np.ndarray = np.zeros((k, k), np.float32)
        ker[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), _u(rng, 0, 180), 1.0)
        ker = cv2.warpAffine(ker, rot, (k, k))
        x = cv2.filter2D(x, -1, ker / max(ker.sum(), 1e-6))
        params["motion_blur"] = k
    out = cv2.convertScaleAbs(x, alpha=255.0)  # rounds and saturates (values are >= 0)
    if (out_w, out_h) != (w, h):
        out = cv2.resize(out, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    level = int(rng.choice(3, p=[0.2, 0.45, 0.35] if cctv else [0.6, 0.3, 0.1]))
    from synspill.synth.procedural import add_sensor_noise

    out = add_sensor_noise(out, level, rng)
    params["noise_level"] = level
    params["jpeg_quality"] = int(rng.choice((35, 45, 55, 65, 75, 85)) if cctv else rng.choice((75, 85, 90, 95)))
    if cctv and rng.random() < 0.6:
        params["osd"] = _osd(rng, out_w, out_h)
        draw_osd(out, params["osd"])
    return out, params


def _osd(rng: np.random.Generator, w: int, h: int) -> dict[str, Any]:
    y, mo, d = int(rng.integers(2019, 2027)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm, ss = int(rng.integers(0, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    stamp = (f"{y}-{mo:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}" if rng.random() < 0.6
             else f"{d:02d}/{mo:02d}/{y} {hh:02d}:{mm:02d}:{ss:02d}")
    name = f"{rng.choice(CAMERA_NAMES)} {int(rng.integers(1, 33)):02d}"
    if rng.random() < 0.6:
        name += f" {rng.choice(PLACES)} {int(rng.integers(1, 12))}"
    scale = max(0.25, w / 900) * _u(rng, 0.8, 1.3)
    corner = int(rng.integers(4))
    return {"stamp": stamp, "name": name, "scale": round(scale, 3), "corner": corner,
            "colour": [255, 255, 255] if rng.random() < 0.8 else [255, 255, 0]}


def draw_osd(img: np.ndarray, osd: dict[str, Any]) -> None:
    """Draw the recorded on-screen display onto a uint8 RGB image in place."""
    import cv2

    h, w = img.shape[:2]
    s = float(osd["scale"])
    th = max(1, int(round(s * 1.5)))
    lines = [osd["stamp"], osd["name"]] if osd["corner"] in (0, 1) else [osd["name"], osd["stamp"]]
    (tw, tht), _ = cv2.getTextSize(max(lines, key=len), cv2.FONT_HERSHEY_SIMPLEX, s, th)
    pad = max(2, int(6 * s))
    x = pad if osd["corner"] in (0, 2) else max(pad, w - tw - pad)
    y0 = pad + tht if osd["corner"] in (0, 1) else h - pad - (tht + pad) * (len(lines) - 1)
    for i, text in enumerate(lines):
        org = (x, y0 + i * (tht + pad))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, s, (0, 0, 0), th + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, s, tuple(int(c) for c in osd["colour"]), th, cv2.LINE_AA)
