"""ICL: reproducible support selection, support answers in support-input pixels, CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.vlm.conftest import PX, make_coco


@pytest.fixture
def support(tmp_path):
    from synspill.vlm.icl import load_support

    return load_support(make_coco(tmp_path / "s", n=6))


def test_random_is_reproducible_and_excludes_query(support):
    from synspill.vlm.icl import select_support

    a = select_support(support, 3, "random", seed=1)
    assert a == select_support(support, 3, "random", seed=1)
    assert len(set(a)) == 3
    assert {tuple(select_support(support, 3, "random", seed=s)) for s in range(6)} != {tuple(a)}
    assert 0 not in select_support(support, 5, "random", seed=1, exclude=support[0].path)


def test_stratified_shows_every_class_first(support):
    from synspill.vlm.icl import select_support

    for seed in range(5):
        idx = select_support(support, 2, "stratified", seed=seed)
        assert {int(support[i].class_ids[0]) for i in idx} == {1, 2}


def test_similar_picks_same_colour(support):
    from PIL import Image

    from synspill.vlm.icl import select_support

    blue = np.asarray(Image.open(support[2].path).convert("RGB"))  # image 3 is the blue one
    assert select_support(support, 1, "similar", seed=0, query=blue)[0] == 2
    assert select_support(support, 1, "similar", seed=0, query=blue, exclude=support[2].path)[0] != 2


def test_errors(support):
    from synspill.errors import UsageError
    from synspill.vlm.icl import select_support

    with pytest.raises(UsageError, match="--k 7"):
        select_support(support, 7, "random", 0)
    with pytest.raises(UsageError, match="--select"):
        select_support(support, 1, "best", 0)


def test_support_answers_are_in_support_input_pixels(support):
    from synspill.vlm.geometry import to_original
    from synspill.vlm.icl import resize_of, support_context
    from synspill.vlm.parse import parse_answer

    ims, answers = support_context(support, [0, 1], 28 * 28 * 9, 3136)
    for i, (im, ans) in enumerate(zip(ims, answers, strict=True)):
        r = resize_of(support[i], 28 * 28 * 9, 3136)
        assert im.size == (r.in_w, r.in_h)
        (b,) = parse_answer(ans, r.in_w, r.in_h).boxes
        np.testing.assert_allclose(to_original([b.xyxy], r), support[i].boxes, atol=1 / min(r.sx, r.sy))


def test_icl_cli_end_to_end(tiny_vlm, tmp_path):
    from synspill.cli import app
    from synspill.detections import read_results

    sup = make_coco(tmp_path / "s", n=4)
    qry = make_coco(tmp_path / "q", n=2, sizes=((70, 50),))
    out = tmp_path / "preds.json"
    args = ["icl", "-m", tiny_vlm, "--support", str(sup), "--images", str(qry), "--out", str(out), "--k", "2",
            "--select", "similar", "--max-pixels", str(PX), "--max-new-tokens", "16", "--device", "cpu", "--batch", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    read_results(out, image_ids={1, 2})
    meta = json.loads(out.with_name("preds.meta.json").read_text())
    assert meta["backend"] == "vlm" and meta["unscored"] is False and isinstance(meta["parse_dropped"], dict)
    assert meta["k"] == 2 and set(meta["support_images"]) == {"1", "2"}
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 1 and "--force" in r2.output
