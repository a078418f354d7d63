"""Time filters, counts per bucket and the heatmap grid of the maintenance report."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from synspill.errors import UsageError
from synspill.watch.report import counts, heatmap, parse_time


def test_parse_time():
    assert parse_time("24h", now=100_000.0) == 100_000.0 - 86_400
    assert parse_time("90m", now=10_000.0) == 10_000.0 - 5_400
    assert parse_time("2026-05-01T08:00:00Z") == datetime(2026, 5, 1, 8, tzinfo=UTC).timestamp()
    with pytest.raises(UsageError, match="ISO date"):
        parse_time("yesterday")


def row(cam, t, box, zone=None, cls="oil-spill", sev="low", wh=(100, 50)):
    return {"camera": cam, "first_seen": t, "last_seen": t + 5, "zone": zone, "class_name": cls, "severity": sev,
            "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3], "frame_w": wh[0], "frame_h": wh[1]}


def test_counts_per_bucket():
    day = datetime(2026, 5, 1, 12).timestamp()  # local noon: same local day for +-6 h
    rows = [row("a", day, (0, 0, 1, 1)), row("a", day + 3600, (0, 0, 1, 1)), row("b", day, (0, 0, 1, 1), zone="z"),
            row("a", day + 86_400, (0, 0, 1, 1))]
    table = counts(rows, "day")
    assert [(r["bucket"], r["camera"], r["zone"], r["count"]) for r in table] == [
        ("2026-05-01", "a", "-", 2), ("2026-05-01", "b", "z", 1), ("2026-05-02", "a", "-", 1)]
    with pytest.raises(UsageError, match="bucket"):
        counts(rows, "year")


def test_heatmap_counts_overlaps_and_rescales():
    rows = [row("a", 0, (0, 0, 40, 16)), row("a", 0, (24, 8, 56, 24)),
            row("a", 0, (0, 0, 20, 8), wh=(50, 25))]  # half-resolution stream: rescaled x2
    grid, wh = heatmap(rows, cell=8)
    assert wh == (100, 50) and grid.shape == (7, 13)
    assert grid[0, 0] == 2 and grid[1, 3] == 3 and grid[2, 6] == 1 and grid[5, 10] == 0
    assert np.count_nonzero(grid) == 5 * 2 + 4 * 2 - 2 * 1 + 0  # union of the two distinct boxes
