"""Zero-shot generation end to end on the tiny model; batching; confidence from token probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.vlm.conftest import PX


def _images(n: int = 3) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 255, (40 + 10 * i, 70, 3), dtype=np.uint8) for i in range(n)]


def test_zero_shot_through_predictors_into_coco_results(tiny_vlm, tmp_path):
    from synspill.detections import Detections, read_results, write_results
    from synspill.predictors import PredictorConfig, load_predictor

    p = load_predictor(PredictorConfig(model=tiny_vlm, backend="vlm", device="cpu", max_pixels=PX, batch=2,
                                       options={"max_new_tokens": 12}))
    dets = p.predict(_images())
    assert len(dets) == 3 and all(isinstance(d, Detections) for d in dets)
    from synspill.vlm.geometry import Resize

    for d, im in zip(dets, _images(), strict=True):
        r = Resize.for_image(im.shape[1], im.shape[0], max_pixels=PX)
        assert d.meta["input_size"] == [r.in_w, r.in_h] and isinstance(d.meta["raw"], str)
        assert isinstance(d.meta["dropped"], dict)
    recs = [r for i, d in enumerate(dets) for r in d.to_results(i + 1)]
    write_results(tmp_path / "p.json", recs)
    assert read_results(tmp_path / "p.json") == recs


def test_batched_equals_one_at_a_time_with_left_padding(tiny_vlm):
    """Different prompt lengths in one batch (ICL-free: different image sizes -> different token counts)."""
    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import generate, load_vlm, prepare_image

    vlm = load_vlm(tiny_vlm, "cpu")
    ps = PromptSet.default()
    ims = [prepare_image(a, 28 * 28 * 8, 3136)[0] for a in _images(3)]
    assert len({im.size for im in ims}) > 1
    chats = [build_chat(ps, ps.render_user([1 + i])) for i in range(3)]
    batched = generate(vlm, chats, [[im] for im in ims])
    single = [generate(vlm, [c], [[im]])[0] for c, im in zip(chats, ims, strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert b.text == s.text
        np.testing.assert_allclose(b.logprobs, s.logprobs, atol=2e-4)


def test_generated_logprobs_equal_teacher_forced(tiny_vlm):
    """The confidence source is the model's own probability of what it wrote (raw logits)."""
    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import Decoding, generate, load_vlm, prepare_image, score_answer

    vlm = load_vlm(tiny_vlm, "cpu")
    ps = PromptSet.default()
    im = prepare_image(_images(1)[0], PX, 3136)[0]
    chat = build_chat(ps, ps.render_user())
    g = generate(vlm, [chat], [[im]], Decoding(max_new_tokens=8, repetition_penalty=1.0))[0]
    assert len(g.logprobs) == len(g.pieces) > 0 and (g.logprobs <= 0).all()
    forced = score_answer(vlm, build_chat(ps, ps.render_user(), answer=g.text), [im])
    if forced.pieces == g.pieces:  # same tokenisation of the text (true unless BPE re-merges)
        np.testing.assert_allclose(forced.logprobs, g.logprobs, atol=1e-4)


def test_span_confidence_geometric_mean():
    from synspill.vlm.confidence import span_confidence, token_offsets

    pieces = ['[{"bbox_2d": ', "[1", "0, ", "20]", ', "label": ', '"oil"', "}]"]
    lp = np.log([0.9, 0.5, 0.8, 1.0, 0.9, 0.25, 0.9])
    off = token_offsets(pieces)
    text = "".join(pieces)
    s = text.index("[10"), text.index("]", text.index("[10")) + 1
    lab = text.index('"oil"'), text.index('"oil"') + 5
    assert span_confidence(lp, off, [s, lab]) == pytest.approx((0.5 * 0.8 * 1.0 * 0.25) ** 0.25)
    assert math.isnan(span_confidence(lp, off, [(1000, 1001)]))
    assert math.isnan(span_confidence(np.zeros(0), token_offsets([]), [(0, 1)]))


def test_confidence_high_for_likely_answer_low_for_unlikely(tiny_vlm):
    """Forced answers scored via the same parse -> span -> geometric mean path as predict()."""
    import torch

    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.geometry import Resize
    from synspill.vlm.model import load_vlm, prepare_image, score_answer
    from synspill.vlm.predictor import to_detections

    vlm = load_vlm(tiny_vlm, "cpu")
    ps = PromptSet.default()
    im, r = prepare_image(_images(1)[0], PX, 3136)
    answer = '```json\n[{"bbox_2d": [4, 6, 40, 30], "label": "oil-spill"}]\n```'
    chat = build_chat(ps, ps.render_user(), answer=answer)
    low = to_detections(score_answer(vlm, chat, [im]), r, None, None)
    # make the model confident in exactly this answer: bias lm_head towards each next token
    # is not possible for a sequence, so fit it: a few full-parameter steps on this one example
    from synspill.vlm.model import encode
    from synspill.vlm.train import mask_labels

    tok = vlm.processor.tokenizer
    batch = encode(vlm, [chat], [[im]], add_generation_prompt=False, padding_side="right")
    batch["labels"] = mask_labels(batch["input_ids"], batch["attention_mask"], tok.convert_tokens_to_ids("<|im_start|>"),
                                  tok.convert_tokens_to_ids("<|im_end|>"), len(tok("assistant\n")["input_ids"]))
    vlm.model.train()
    opt = torch.optim.Adam(vlm.model.parameters(), lr=3e-3)
    for _ in range(70):
        opt.zero_grad()
        vlm.model(**batch).loss.backward()
        opt.step()
    vlm.model.eval()
    high = to_detections(score_answer(vlm, chat, [im]), r, None, None)
    assert len(low) == len(high) == 1
    assert 0.0 <= low.score[0] < 0.2 < 0.8 < high.score[0] <= 1.0
    assert isinstance(r, Resize)


def test_per_class_protocol_runs_one_prompt_per_class(tiny_vlm):
    from synspill.predictors import PredictorConfig, load_predictor

    p = load_predictor(PredictorConfig(model=tiny_vlm, backend="vlm", device="cpu", max_pixels=PX, batch=8,
                                       classes=(1, 4, 6), options={"max_new_tokens": 6, "per_class": True}))
    (d,) = p.predict(_images(1))
    assert isinstance(d.meta["raw"], list) and len(d.meta["raw"]) == 3
    assert set(d.class_id.tolist()) <= {1, 4, 6}


def test_decoding_settings_reach_generate(tiny_vlm):
    """Paper decoding; repetition penalty only on generated tokens; built-in penalty disabled."""
    from transformers import RepetitionPenaltyLogitsProcessor

    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import Decoding, generate, load_vlm, prepare_image

    vlm = load_vlm(tiny_vlm, "cpu")
    seen = {}
    orig = vlm.model.generate

    def spy(**kw):
        seen.update(kw)
        return orig(**kw)

    vlm.model.generate = spy
    ps = PromptSet.default()
    im = prepare_image(_images(1)[0], PX, 3136)[0]
    generate(vlm, [build_chat(ps, ps.render_user(), examples=["[]"])], [[im, im]], Decoding(max_new_tokens=3))
    assert seen["do_sample"] is True and seen["temperature"] == 0.1 and seen["top_p"] == 0.001
    assert seen["repetition_penalty"] == 1.0 and seen["output_logits"] and seen["return_dict_in_generate"]
    (rp,) = [p for p in seen["logits_processor"] if isinstance(p, RepetitionPenaltyLogitsProcessor)]
    assert rp.penalty == 1.2 and rp.prompt_ignore_length == seen["input_ids"].shape[1]
    assert seen["image_grid_thw"].shape[0] == 2  # k + 1 images
