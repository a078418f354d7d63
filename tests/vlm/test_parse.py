"""Answer parsing: table of cases with the expected boxes and drop reasons, and a fuzz test."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synspill.vlm.parse import DROP_REASONS, format_answer, parse_answer

W, H = 200, 100


@pytest.mark.parametrize(
    ("text", "boxes", "dropped"),
    [
        ('```json\n[{"bbox_2d": [10, 20, 50, 60], "label": "oil-spill"}]\n```', [((10, 20, 50, 60), 1)], {}),
        # COCO xywh under "bbox"
        ('[{"bbox": [10, 20, 30, 40], "label": "rust"}]', [((10, 20, 40, 60), 6)], {}),
        # prose around, alias, category_id
        ('Sure! [{"bbox_2d": [1,2,3,4], "label": "Oil"}, {"bbox_2d": [5,5,9,9], "category_id": 3}] Hope it helps.',
         [((1, 2, 3, 4), 1), ((5, 5, 9, 9), 3)], {}),
        # truncated: complete objects kept
        ('```json\n[{"bbox_2d": [10, 20, 50, 60], "label": "oil-spill"}, {"bbox_2d": [70, 2', [((10, 20, 50, 60), 1)], {"truncated": 1}),
        ('[{"bbox_2d": [10, 20, 50, 60], "label": "unicorn"}]', [], {"unknown_label": 1}),
        ('[{"bbox_2d": [10, 20, 50, 60]}]', [], {"no_label": 1}),
        ('[{"bbox_2d": [10, 20, 50, 60], "label": "oil"}, {"bbox_2d": [10, 20, 50, 60], "label": "oil-spill"}]',
         [((10, 20, 50, 60), 1)], {"duplicate": 1}),
        ('[{"bbox_2d": [50, 20, 10, 60], "label": "oil"}]', [], {"degenerate": 1}),
        ('[{"bbox_2d": [300, 20, 400, 60], "label": "oil"}]', [], {"outside_image": 1}),
        ('[{"bbox_2d": [-10, 20, 250, 160], "label": "oil"}]', [((0, 20, 200, 100), 1)], {}),
        ('[{"bbox_2d": [199.5, 20, 260, 60], "label": "oil"}]', [], {"degenerate": 1}),
        ('[{"bbox_2d": [1, 2, "x", 4], "label": "oil"}, {"bbox_2d": [1, 2, 3], "label": "oil"}]', [], {"bad_bbox": 2}),
        ('[{"bbox_2d": ["1", "2", "30", "40"], "label": "oil"}]', [((1, 2, 30, 40), 1)], {}),
        ('{"detections": [{"bbox_2d": [1, 2, 30, 40], "label": "water"}]}', [((1, 2, 30, 40), 2)], {}),
        ("[{'bbox_2d': [1, 2, 30, 40], 'label': 'oil'},]", [((1, 2, 30, 40), 1)], {}),
        ('[{"bbox_2d": [1, 2, 30, 40], "label": "oil" "x"}]', [], {"invalid_json": 1}),
        ("No spills visible. []", [], {}),
        ("", [], {}),
    ],
)
def test_cases(text, boxes, dropped):
    r = parse_answer(text, W, H)
    assert [(b.xyxy, b.class_id) for b in r.boxes] == [(tuple(float(v) for v in xy), c) for xy, c in boxes]
    assert r.dropped_dict() == dropped


def test_default_class_and_requested_classes():
    r = parse_answer('[{"bbox_2d": [1, 2, 30, 40]}]', W, H, classes={4}, default_class=4)
    assert [b.class_id for b in r.boxes] == [4]
    r = parse_answer('[{"bbox_2d": [1, 2, 30, 40], "label": "oil"}]', W, H, classes={4}, default_class=4)
    assert r.boxes == [] and r.dropped_dict() == {"class_not_requested": 1}


def test_spans_point_at_coordinates_and_label():
    text = 'x ```json\n[{"bbox_2d": [10, 20, 50, 60], "label": "oil-spill"}]\n```'
    (b,) = parse_answer(text, W, H).boxes
    assert [text[s:e] for s, e in b.spans] == ["[10, 20, 50, 60]", '"oil-spill"']


def test_format_answer_round_trips():
    text = format_answer([(10.4, 20.6, 50, 60), (1, 1, 5, 5)], [1, 8])
    r = parse_answer(text, W, H)
    assert [(b.xyxy, b.class_id) for b in r.boxes] == [((10, 21, 50, 60), 1), ((1, 1, 5, 5), 8)]
    assert format_answer([], []) == "```json\n[]\n```"


_num = st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.none())
_obj = st.fixed_dictionaries(
    {},
    optional={"bbox_2d": st.lists(_num, max_size=5), "bbox": st.lists(_num, max_size=5),
              "label": st.one_of(st.sampled_from(["oil", "rust-stain", "nope", "Water Leak", ""]), st.integers(-2, 10)),
              "category_id": st.integers(-1, 10)},
)


@settings(max_examples=300, deadline=None)
@given(objs=st.lists(_obj, max_size=6), prefix=st.text(max_size=20), cut=st.integers(0, 400), fence=st.booleans(),
       w=st.integers(1, 500), h=st.integers(1, 500))
def test_fuzz_structured_never_raises_and_kept_boxes_valid(objs, prefix, cut, fence, w, h):
    body = json.dumps(objs, allow_nan=True)
    text = prefix + ("```json\n" + body + "\n```" if fence else body)
    text = text[: len(text) - cut % (len(text) + 1)]
    r = parse_answer(text, w, h)
    for b in r.boxes:
        x1, y1, x2, y2 = b.xyxy
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and x2 - x1 >= 1 and y2 - y1 >= 1
        assert 1 <= b.class_id <= 8
    assert set(r.dropped) <= set(DROP_REASONS)
    assert len(r.boxes) + sum(r.dropped.values()) <= len(objs) + 1 + text.count("{")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('{}[]",:\\ bboxlabe_2d0123456789-.oil\n`json')), max_size=200))
def test_fuzz_garbage_never_raises(text):
    r = parse_answer(text, 100, 100)
    for b in r.boxes:
        x1, y1, x2, y2 = b.xyxy
        assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 100
