"""k-of-n confirmation, association of a growing spill, re-alerts, closing, severity rule."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.errors import UsageError
from synspill.watch.alerts import AlertPolicy, EventEngine, SeverityRule
from synspill.watch.tracker import SpillTracker, pair_stats
from synspill.watch.zones import Zone, zone_of

WH = (320, 240)


def step(eng, boxes, t, score=0.9, cls=1):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return eng.step(b, np.full(len(b), score, np.float32), np.full(len(b), cls), t, WH)


def test_pair_stats_against_hand_computed_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30]], np.float32)
    iou, ios, dist = pair_stats(a, b)
    np.testing.assert_allclose(iou[0], [50 / 150, 4 / 100, 0], atol=1e-6)
    np.testing.assert_allclose(ios[0], [0.5, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(dist[0], [5 / 10, np.hypot(2, 2) / 10, np.hypot(20, 20) / 10], atol=1e-6)


@pytest.mark.parametrize("pattern,confirmed_at", [
    ("11100", 2), ("10101", 4), ("11011", 3), ("10010", None), ("10001", None), ("1", None),
])
def test_k_of_n_confirmation(pattern, confirmed_at):
    eng = EventEngine("c", AlertPolicy(k=3, n=5, close_after=1e9), SeverityRule())
    opened_at = None
    for i, ch in enumerate(pattern):
        changes = step(eng, [[100, 100, 140, 130]] if ch == "1" else [], float(i))
        if any(c.kind == "opened" for c in changes):
            opened_at = i
    assert opened_at == confirmed_at


def test_low_confidence_does_not_count():
    eng = EventEngine("c", AlertPolicy(threshold=0.5), SeverityRule())
    for i in range(6):
        assert step(eng, [[10, 10, 50, 50]], float(i), score=0.49) == []


def test_growing_spill_is_one_event_with_rising_severity():
    eng = EventEngine("c", AlertPolicy(cooldown=0, close_after=5.0), SeverityRule())
    kinds, levels = [], []
    for i in range(40):
        r = 5 + 3 * i  # grows well beyond IoU 0.3 between far-apart samples
        changes = step(eng, [[160 - r, 120 - r * 0.7, 160 + r, 120 + r * 0.7]], i * 0.5)
        for c in changes:
            kinds.append(c.kind)
            if c.publish:
                levels.append(c.event.severity)
    assert kinds.count("opened") == 1
    assert len({c for c in kinds if c != "seen"}) >= 2  # opened and at least one update
    order = ["low", "medium", "high", "critical"]
    idx = [order.index(lv) for lv in levels]
    assert idx == sorted(idx) and idx[-1] > idx[0]
    assert len(eng.events) == 1


def test_cooldown_limits_growth_realerts_and_close_after_unseen():
    rule = SeverityRule(w_area=0.0, w_growth=0.0, w_zone=1.0, w_class=0.0)  # constant level: only growth re-alerts
    eng = EventEngine("c", AlertPolicy(cooldown=10.0, realert_growth=1.5, close_after=3.0), rule)
    ups = []
    for i in range(30):
        s = 10 * (1.1 ** i)
        for c in step(eng, [[100, 100, 100 + s, 100 + s]], float(i)):
            if c.kind == "updated":
                ups.append((i, c.reason))
    assert ups and all(r == "growth" for _, r in ups)
    assert all(b - a >= 10 for (a, _), (b, _) in zip(ups, ups[1:], strict=False))
    closed = []
    for i in range(30, 40):
        closed += [c for c in step(eng, [], float(i)) if c.kind == "closed"]
    assert len(closed) == 1 and closed[0].event.closed_at == 32.0


def test_two_separate_spills_are_two_events_and_split_boxes_merge():
    eng = EventEngine("c", AlertPolicy(), SeverityRule())
    opened = []
    for i in range(5):
        boxes = [[10, 10, 40, 40], [200, 150, 260, 200]]
        if i % 2:  # the right spill detected as two touching halves
            boxes = [[10, 10, 40, 40], [200, 150, 230, 200], [230, 150, 260, 200]]
        opened += [c for c in step(eng, boxes, float(i)) if c.kind == "opened"]
    assert len(opened) == 2
    assert len(eng.tracker.tracks) == 2


def test_class_is_majority_by_confidence():
    tr = SpillTracker(k=1, n=1)
    for cls, s in ((4, 0.6), (1, 0.9), (1, 0.8), (4, 0.6)):
        tr.update(np.array([[0, 0, 10, 10]]), np.array([s]), np.array([cls]), 0.0)
    assert tr.tracks[0].class_id == 1


@pytest.mark.parametrize("area_frac,growth,crit,cls,level", [
    (0.0, 0.0, 0.0, 4, "low"),          # tiny old stain nowhere critical
    (0.01, 0.0, 0.5, 1, "low"),         # 0.4*0.1+0.25*0.5+0.15*0.8 = 0.285
    (0.05, 0.0, 0.5, 1, "medium"),      # 0.2+0.125+0.12 = 0.445
    (0.10, 0.0, 0.75, 3, "high"),       # 0.4+0.1875+0.15 = 0.7375
    (0.20, 2.0, 1.0, 3, "critical"),    # everything maxed = 1.0
])
def test_severity_rule_table(area_frac, growth, crit, cls, level):
    rule = SeverityRule()
    assert rule.level(rule.score(area_frac, growth, crit, cls)) == level


def test_severity_rule_validation():
    with pytest.raises(UsageError, match="levels"):
        SeverityRule(levels={"medium": 0.6, "high": 0.5, "critical": 0.9})
    with pytest.raises(UsageError, match="not a class"):
        SeverityRule(class_weights={"lava": 1.0})
    with pytest.raises(UsageError, match="k=6"):
        AlertPolicy(k=6, n=5)


def test_zones_normalised_and_absolute():
    tri = Zone("tri", ((0, 0), (100, 0), (0, 100)), 0.75)
    assert tri.area(WH) == 5000
    assert tri.contains((10, 10), WH) and not tri.contains((90, 90), WH)
    half = Zone("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)), 1.0)
    assert half.area(WH) == 160 * 240
    assert zone_of((tri, half), (10, 10), WH).name == "left"  # most critical wins
    assert zone_of((tri, half), (300, 10), WH) is None


def test_zone_sets_area_fraction_and_criticality():
    z = Zone("pump", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)), 1.0)
    eng = EventEngine("c", AlertPolicy(), SeverityRule(), (z,))
    ev = None
    for i in range(3):
        for c in step(eng, [[10, 10, 50, 50]], float(i)):
            ev = c.event
    assert ev.zone == "pump"
    assert ev.area_frac == pytest.approx(1600 / (160 * 240))
