"""Reading the maintenance log: time filters, CSV/JSON export, counts and heatmaps.

The report is the predictive-maintenance view: how many spills per camera, zone and
class over time, and *where* on each camera's view they keep happening (a heatmap of
event boxes over the camera's latest snapshot). matplotlib and OpenCV load lazily.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import UsageError
from synspill.io import write_json, write_text
from synspill.watch import Bucket, ExportFormat
from synspill.watch.store import COLUMNS

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: strftime pattern of each time bucket.
BUCKETS = {Bucket.hour.value: "%Y-%m-%d %H:00", Bucket.day.value: "%Y-%m-%d", Bucket.week.value: "%G-W%V", Bucket.month.value: "%Y-%m"}


def parse_time(spec: str, now: float | None = None) -> float:
    """Epoch seconds of ``2026-05-01``, ``2026-05-01T08:00`` (local time unless it has a
    zone), or a span back from now: ``90m``, ``24h``, ``7d``, ``2w``.

    Raises:
        UsageError: Neither form.
    """
    s = spec.strip()
    m = _REL.match(s)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"time {spec!r}: use an ISO date/time (2026-05-01, 2026-05-01T08:00) or a span like 24h, 7d") from None


def iso(t: float | None) -> str:
    """ISO 8601 UTC with a ``Z`` (empty for None)."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def export_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with ISO times and the box as ``[x1, y1, x2, y2]`` (absolute pixels)."""
    out = []
    for r in rows:
        d = {k: r[k] for k in COLUMNS if k not in ("x1", "y1", "x2", "y2")}
        d["box"] = [round(r[k], 1) for k in ("x1", "y1", "x2", "y2")]
        for k in ("first_seen", "last_seen", "closed_at", "acked_at"):
            d[k] = iso(r[k])
        d["acknowledged"] = bool(r["acknowledged"])
        d["false_alarm"] = bool(r["false_alarm"])
        d["duration_s"] = round(r["last_seen"] - r["first_seen"], 1)
        out.append(d)
    return out


def export(rows: list[dict[str, Any]], fmt: str, out: str | Path) -> Path:
    """Write events as ``csv`` or ``json`` (atomically).

    Raises:
        UsageError: Unknown format.
    """
    recs = export_rows(rows)
    if fmt == ExportFormat.json.value:
        write_json(out, recs, indent=1)
    elif fmt == ExportFormat.csv.value:
        buf = io.StringIO()
        fields = [k for k in COLUMNS if k not in ("x1", "y1", "x2", "y2")] + ["box", "duration_s"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        for r in recs:
            w.writerow({**r, "box": " ".join(map(str, r["box"]))})
        write_text(out, buf.getvalue())
    else:
        raise UsageError(f"--format {fmt!r}: use csv or json")
    return Path(out)


def counts(rows: list[dict[str, Any]], bucket: str = "day") -> list[dict[str, Any]]:
    """Event counts per (time bucket, camera, zone, class, severity), local time buckets."""
    if bucket not in BUCKETS:
        raise UsageError(f"--bucket {bucket!r}: use {', '.join(BUCKETS)}")
    c: Counter[tuple] = Counter()
    for r in rows:
        b = time.strftime(BUCKETS[bucket], time.localtime(r["first_seen"]))
        c[(b, r["camera"], r["zone"] or "-", r["class_name"], r["severity"])] += 1
    return [{"bucket": k[0], "camera": k[1], "zone": k[2], "class": k[3], "severity": k[4], "count": v}
            for k, v in sorted(c.items())]


def heatmap(rows: list[dict[str, Any]], cell: int = 8) -> tuple[np.ndarray, tuple[int, int]]:
    """Where spills occur on one camera's view.

    Each event adds 1 over its box (absolute ``xyxy``, rescaled to the camera's most
    common frame size) on a grid of ``cell``-pixel cells.

    Returns:
        ``(grid, (width, height))``: ``grid`` is ``(ceil(H / cell), ceil(W / cell))`` float32 counts.
    """
    sizes = Counter((int(r["frame_w"]), int(r["frame_h"])) for r in rows)
    (w, h), _ = sizes.most_common(1)[0]
    gh, gw = -(-h // cell), -(-w // cell)
    grid = np.zeros((gh, gw), np.float32)
    for r in rows:
        sx, sy = w / r["frame_w"], h / r["frame_h"]
        x1, x2 = (int(np.clip(v * sx / cell, 0, gw)) for v in (r["x1"], r["x2"]))
        y1, y2 = (int(np.clip(v * sy / cell, 0, gh)) for v in (r["y1"], r["y2"]))
        grid[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)] += 1
    return grid, (w, h)


def _background(rows: list[dict[str, Any]], size: tuple[int, int]) -> np.ndarray | None:
    import cv2

    for r in sorted(rows, key=lambda r: r["last_seen"], reverse=True):
        if r["snapshot"] and Path(r["snapshot"]).is_file():
            bgr = cv2.imread(r["snapshot"])
            if bgr is not None:
                return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
    return None


def build_report(rows: list[dict[str, Any]], out_dir: str | Path, bucket: str = "day") -> dict[str, Any]:
    """Write the maintenance report for ``rows`` (events) into ``out_dir``.

    Files: ``counts.csv`` (per bucket/camera/zone/class/severity), ``summary.json``
    (totals), ``counts_over_time.png`` (stacked bars per camera) and one
    ``heatmap_<camera>.png`` per camera.

    Returns:
        The summary dict (also in ``summary.json``), with ``files`` listing what was written.

    Raises:
        UsageError: No events match.
    """
    if not rows:
        raise UsageError("no events match these filters; nothing to report (check --db, --since, --camera)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    table = counts(rows, bucket)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["bucket", "camera", "zone", "class", "severity", "count"])
    w.writeheader()
    w.writerows(table)
    write_text(out / "counts.csv", buf.getvalue())
    files.append(str(out / "counts.csv"))

    def tally(key: str) -> dict[str, int]:
        return dict(Counter((r[key] or "-") for r in rows).most_common())

    summary: dict[str, Any] = {
        "events": len(rows), "from": iso(min(r["first_seen"] for r in rows)), "to": iso(max(r["last_seen"] for r in rows)),
        "unacknowledged": sum(1 for r in rows if not r["acknowledged"]), "open": sum(1 for r in rows if r["status"] == "open"),
        "by_camera": tally("camera"), "by_zone": tally("zone"), "by_class": tally("class_name"), "by_severity": tally("severity"),
        "by_camera_zone": dict(Counter(f"{r['camera']}/{r['zone'] or '-'}" for r in rows).most_common()),
        "mean_duration_s": round(float(np.mean([r["last_seen"] - r["first_seen"] for r in rows])), 1),
        "bucket": bucket,
    }

    per: dict[str, Counter[str]] = defaultdict(Counter)
    for row in table:
        per[row["camera"]][row["bucket"]] += row["count"]
    buckets = sorted({row["bucket"] for row in table})
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(buckets) + 3), 4), dpi=100)
    bottom = np.zeros(len(buckets))
    for cam in sorted(per):
        vals = np.array([per[cam][b] for b in buckets], float)
        ax.bar(range(len(buckets)), vals, bottom=bottom, label=cam)
        bottom += vals
    ax.set_xticks(range(len(buckets)), buckets, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("spill events")
    ax.set_title(f"Spill events per {bucket} and camera")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "counts_over_time.png")
    plt.close(fig)
    files.append(str(out / "counts_over_time.png"))

    by_cam: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cam[r["camera"]].append(r)
    for cam, crow in sorted(by_cam.items()):
        grid, (fw, fh) = heatmap(crow)
        fig, ax = plt.subplots(figsize=(6.4, 6.4 * fh / fw + 0.6), dpi=100)
        bg = _background(crow, (fw, fh))
        if bg is not None:
            ax.imshow(bg, extent=(0, fw, fh, 0), alpha=0.55)
        masked = np.ma.masked_where(grid == 0, grid)
        im = ax.imshow(masked, extent=(0, fw, fh, 0), cmap="inferno", alpha=0.75 if bg is not None else 1.0,
                       interpolation="bilinear", vmin=0)
        ax.set_xlim(0, fw)
        ax.set_ylim(fh, 0)
        fig.colorbar(im, ax=ax, fraction=0.04, label="events covering the spot")
        ax.set_title(f"{cam}: where spills occur ({len(crow)} events)")
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cam)
        fig.savefig(out / f"heatmap_{safe}.png")
        plt.close(fig)
        files.append(str(out / f"heatmap_{safe}.png"))
        summary.setdefault("hotspot", {})[cam] = _hotspot(grid, fw, fh)
    summary["files"] = files
    write_json(out / "summary.json", summary, indent=1)
    return summary


def _hotspot(grid: np.ndarray, w: int, h: int) -> dict[str, Any]:
    """The hottest cell's centre in absolute pixels and its count."""
    iy, ix = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return {"x": round((ix + 0.5) * w / grid.shape[1], 1), "y": round((iy + 0.5) * h / grid.shape[0], 1),
            "events": int(grid[iy, ix])}


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    """JSON lines of :func:`export_rows` (for ``events list --json``)."""
    return "".join(json.dumps(r) + "\n" for r in export_rows(rows))
