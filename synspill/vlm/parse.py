"""Turn a VLM answer into boxes: never crashes, never invents, counts every dropped item.

Rules (also in ``docs/vlm.md``):

1. **Where the JSON is.** If the answer has a fenced block (`````json`` or `````), only the
   first block is read (an unterminated fence runs to the end). Otherwise the whole text is
   scanned. Prose before or after is ignored.
2. **Which objects are boxes.** Every ``{...}`` object (nested or not) that holds a box key
   is a candidate; an object that merely contains candidates (``{"detections": [...]}``) is
   a wrapper, not a candidate. An object left open at the end of the text (truncated
   output) is dropped as ``truncated``; complete objects before it are kept.
3. **The key decides the box format.** ``bbox_2d`` / ``box_2d`` / ``bbox_xyxy`` are
   ``[x1, y1, x2, y2]`` (Qwen2.5-VL's native grounding format); ``bbox`` / ``box`` are COCO
   ``[x, y, w, h]`` (what the prompt asks for when it says "COCO JSON"). All are absolute
   pixels of the model input. Numbers given as strings are accepted; anything else that is
   not four finite numbers is ``bad_bbox``.
4. **Labels.** ``label`` (or ``category``, ``class``, ``name``, ``category_name``) is mapped
   through :func:`synspill.taxonomy.normalize_name` (aliases such as "oil" -> oil-spill);
   an integer ``category_id`` 1-8 is accepted. Unknown -> ``unknown_label``. A box without
   any label takes ``default_class`` when the prompt asked for exactly one class, else
   ``no_label``. Classes not asked for -> ``class_not_requested``.
5. **Geometry.** A box with ``x2 <= x1`` or ``y2 <= y1`` as given is ``degenerate`` (never
   swapped: that would be a guess). A box entirely outside the input image is
   ``outside_image``; one partly outside is clipped to the image; if less than 1 px
   remains on either side after clipping it is ``degenerate``.
6. **Duplicates.** A box of the same class with IoU >= 0.95 to an earlier kept box is
   ``duplicate``.

Pure Python + NumPy; the output carries character spans so that
:mod:`synspill.vlm.confidence` can score each box from the tokens that wrote it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from synspill import taxonomy
from synspill.boxes import iou

XYXY_KEYS = ("bbox_2d", "box_2d", "bbox_xyxy")
XYWH_KEYS = ("bbox", "box")
LABEL_KEYS = ("label", "category", "class", "name", "category_name")
DUP_IOU = 0.95
MIN_SIDE = 1.0

#: Every reason a parsed item can be dropped (the keys of ``ParseResult.dropped``).
DROP_REASONS = ("invalid_json", "truncated", "no_bbox", "bad_bbox", "unknown_label", "no_label",
                "class_not_requested", "degenerate", "outside_image", "duplicate")

_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?")


@dataclass
class ParsedBox:
    """One kept box.

    Attributes:
        xyxy: ``(x1, y1, x2, y2)`` absolute pixels of the MODEL INPUT, clipped to it.
        class_id: Taxonomy id (1-8).
        spans: Character spans ``(start, end)`` in the raw answer of the box's coordinates
            and label (what the confidence is computed from).
    """

    xyxy: tuple[float, float, float, float]
    class_id: int
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ParseResult:
    """All boxes of one answer and what was dropped, by reason."""

    boxes: list[ParsedBox]
    dropped: Counter

    def dropped_dict(self) -> dict[str, int]:
        """Drop counts as a plain dict with only the non-zero reasons."""
        return {k: int(v) for k, v in self.dropped.items() if v}


def _json_region(text: str) -> tuple[int, int]:
    """``(start, end)`` of the first fenced block, or the whole text."""
    m = _FENCE.search(text)
    if not m:
        return 0, len(text)
    start = m.end()
    close = text.find("```", start)
    return start, (close if close >= 0 else len(text))


def _objects(text: str, start: int, end: int) -> tuple[list[tuple[int, int, int]], bool]:
    """Brace-matched ``{...}`` spans ``(start, end, depth)`` in ``text[start:end]``; True if one is left open."""
    spans: list[tuple[int, int, int]] = []
    stack: list[int] = []
    in_str = esc = False
    for i in range(start, end):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            s = stack.pop()
            spans.append((s, i + 1, len(stack)))
    return spans, bool(stack)


def _loads(s: str) -> object:
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", s)  # trailing commas
    if "'" in fixed and '"' not in fixed:
        fixed = fixed.replace("'", '"')  # python-style quotes, only if unambiguous
    try:
        return json.loads(fixed)
    except (ValueError, RecursionError):
        return None


def _has_box_key(d: dict) -> bool:
    return any(k in d for k in XYXY_KEYS + XYWH_KEYS)


def _num(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _label(d: dict, default_class: int | None) -> tuple[int | None, str | None]:
    for k in LABEL_KEYS:
        if k in d and d[k] is not None:
            v = d[k]
            if isinstance(v, str):
                name = taxonomy.normalize_name(v)
                return (taxonomy.BY_NAME[name].id, None) if name else (None, "unknown_label")
            if isinstance(v, int) and not isinstance(v, bool) and v in taxonomy.BY_ID:
                return v, None
            return None, "unknown_label"
    cid = d.get("category_id")
    if cid is not None:
        if isinstance(cid, int) and not isinstance(cid, bool) and cid in taxonomy.BY_ID:
            return cid, None
        return None, "unknown_label"
    if default_class is not None:
        return default_class, None
    return None, "no_label"


def _spans(text: str, s: int, e: int, key: str) -> list[tuple[int, int]]:
    """Character spans of the box's coordinate array and label value inside object ``text[s:e]``."""
    obj = text[s:e]
    out = []
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*(\[[^\]]*\])', obj)
    if m:
        out.append((s + m.start(1), s + m.end(1)))
    m = re.search(r'"(?:' + "|".join(LABEL_KEYS) + r'|category_id)"\s*:\s*("[^"]*"|\d+)', obj)
    if m:
        out.append((s + m.start(1), s + m.end(1)))
    return out or [(s, e)]


def parse_answer(text: str, width: int, height: int, classes: set[int] | None = None,
                 default_class: int | None = None) -> ParseResult:
    """Parse one VLM answer into boxes in model-input pixels.

    Args:
        text: The generated answer (anything; never raises).
        width: Model-input width ``W_in`` (boxes are clipped to it).
        height: Model-input height ``H_in``.
        classes: Taxonomy ids that were asked for (None: all).
        default_class: Class of boxes without a label (set when exactly one class was asked for).

    Returns:
        A :class:`ParseResult`; every kept box has ``0 <= x1 < x2 <= width``,
        ``0 <= y1 < y2 <= height`` with sides of at least 1 px.
    """
    dropped: Counter = Counter()
    boxes: list[ParsedBox] = []
    if not isinstance(text, str) or width <= 0 or height <= 0:
        return ParseResult(boxes, dropped)
    start, end = _json_region(text)
    spans, left_open = _objects(text, start, end)
    if left_open:
        dropped["truncated"] += 1
    parsed: list[tuple[int, int, object]] = [(s, e, _loads(text[s:e])) for s, e, _ in spans]
    cand = [(s, e, d) for s, e, d in parsed if isinstance(d, dict) and _has_box_key(d)]
    # wrappers: objects that contain a candidate
    cand = [(s, e, d) for s, e, d in cand if not any(s < s2 and e2 < e for s2, e2, _ in cand)]
    # objects that failed to parse and are not inside / around a candidate: count once each
    for s, e, d in parsed:
        if d is None and not any(s2 <= s and e <= e2 for s2, e2, _ in cand) and '"' in text[s:e]:
            inner = any(s < s2 and e2 < e for s2, e2, d2 in parsed if d2 is None)
            if not inner and re.search(r"bbox|box", text[s:e]):
                dropped["invalid_json"] += 1
    cand.sort(key=lambda t: t[0])
    for s, e, d in cand:
        assert isinstance(d, dict)
        key = next((k for k in XYXY_KEYS + XYWH_KEYS if k in d), None)
        if key is None:
            dropped["no_bbox"] += 1
            continue
        raw = d[key]
        vals = [_num(v) for v in raw] if isinstance(raw, list) and len(raw) == 4 else None
        if vals is None or any(v is None for v in vals):
            dropped["bad_bbox"] += 1
            continue
        x1, y1, a, b = (float(v) for v in vals)  # type: ignore[arg-type]
        x2, y2 = (a, b) if key in XYXY_KEYS else (x1 + a, y1 + b)
        cid, why = _label(d, default_class)
        if cid is None:
            dropped[why or "unknown_label"] += 1
            continue
        if classes is not None and cid not in classes:
            dropped["class_not_requested"] += 1
            continue
        if not (x2 > x1 and y2 > y1):
            dropped["degenerate"] += 1
            continue
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            dropped["outside_image"] += 1
            continue
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
        if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE:
            dropped["degenerate"] += 1
            continue
        if any(p.class_id == cid and iou(p.xyxy, box) >= DUP_IOU for p in boxes):
            dropped["duplicate"] += 1
            continue
        boxes.append(ParsedBox(box, cid, _spans(text, s, e, key)))
    return ParseResult(boxes, dropped)


def format_answer(xyxy: list[tuple[float, float, float, float]], class_ids: list[int]) -> str:
    """The training target for one image: a fenced JSON list in Qwen2.5-VL's native format.

    Args:
        xyxy: Boxes in MODEL-INPUT absolute pixels (see :func:`synspill.vlm.geometry.to_input`).
        class_ids: Taxonomy ids, one per box.

    Returns:
        E.g. ``'```json\\n[{"bbox_2d": [12, 30, 140, 96], "label": "oil-spill"}]\\n```'``;
        ``[]`` when there is no box. Coordinates are rounded to whole pixels.
    """
    items = [
        '{"bbox_2d": [' + ", ".join(str(round(v)) for v in b) + '], "label": "' + taxonomy.BY_ID[int(c)].name + '"}'
        for b, c in zip(xyxy, class_ids, strict=True)
    ]
    return "```json\n[" + ", ".join(items) + "]\n```"
