"""Zones: named polygons on a camera's view with a criticality each (pure Python).

Polygon vertices are ``(x, y)`` absolute pixels, or normalised to [0, 1] of the frame
when every coordinate is <= 1 (then the zone follows the stream's resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Named criticalities accepted in config files.
CRITICALITY: dict[str, float] = {"low": 0.25, "medium": 0.5, "high": 0.75, "critical": 1.0}


@dataclass(frozen=True)
class Zone:
    """A named polygon with a criticality in [0, 1].

    Attributes:
        name: Zone name (shown in events and reports).
        polygon: ``(x, y)`` vertices, absolute pixels or all normalised to [0, 1].
        criticality: How much a spill here matters (0-1; ``high`` = 0.75).
    """

    name: str
    polygon: tuple[tuple[float, float], ...]
    criticality: float = 0.5

    @property
    def normalised(self) -> bool:
        return all(0.0 <= v <= 1.0 for p in self.polygon for v in p)

    def points(self, frame_wh: tuple[int, int]) -> list[tuple[float, float]]:
        """Vertices in absolute pixels of a ``(width, height)`` frame."""
        if self.normalised:
            w, h = frame_wh
            return [(x * w, y * h) for x, y in self.polygon]
        return [(float(x), float(y)) for x, y in self.polygon]

    def area(self, frame_wh: tuple[int, int]) -> float:
        """Polygon area in square pixels (shoelace formula)."""
        pts = self.points(frame_wh)
        s = 0.0
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            s += x1 * y2 - x2 * y1
        return abs(s) / 2.0

    def contains(self, point: tuple[float, float], frame_wh: tuple[int, int]) -> bool:
        """Whether the absolute pixel ``point`` lies inside (even-odd ray casting)."""
        x, y = point
        pts = self.points(frame_wh)
        inside = False
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            if (y1 > y) != (y2 > y):
                xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if x < xc:
                    inside = not inside
        return inside


def zone_of(zones: tuple[Zone, ...], point: tuple[float, float], frame_wh: tuple[int, int]) -> Zone | None:
    """The most critical zone containing ``point`` (absolute pixels), or None."""
    hits = [z for z in zones if z.contains(point, frame_wh)]
    return max(hits, key=lambda z: z.criticality) if hits else None
