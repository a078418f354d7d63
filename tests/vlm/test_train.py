"""LoRA modes adapt exactly the intended modules and learn; save/reload; resume; QLoRA; run folders."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.vlm.conftest import PX, make_coco

LANG = re.compile(r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)")
VIS = re.compile(r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)")
MERGER = re.compile(r"model\.visual\.merger\.mlp\.[02]")


def _expected(model_dir: str, mode: str, merger: bool, rank: int) -> tuple[set[str], int]:
    """Independent reference: walk the base model's Linear layers and pick by tower."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    names, count = set(), 0
    for n, mod in m.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        hit = ("l" in mode and LANG.fullmatch(n)) or ("v" in mode and VIS.fullmatch(n)) or ("v" in mode and merger and MERGER.fullmatch(n))
        if hit:
            names.add(n)
            count += rank * (mod.in_features + mod.out_features)
    return names, count


def _cfg(tiny_vlm, data, out, **kw):
    from synspill.vlm.train import VlmTrainConfig

    base = dict(model=tiny_vlm, data=str(data), out=str(out), device="cpu", max_pixels=PX, batch=2, grad_accum=1,
                lr=1e-2, alpha=16.0, dropout=0.0, steps=6, save_every=100, warmup=0.0, gradient_checkpointing=True)
    base.update(kw)
    return VlmTrainConfig(**base)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "merger"), [("l", False), ("v", False), ("v+l", False), ("v+l", True)])
def test_lora_mode_trains_only_intended_modules_and_learns(tiny_vlm, tmp_path, mode, merger):
    from safetensors.torch import load_file

    from synspill.vlm.train import train

    data = make_coco(tmp_path / "d", n=1)
    info = {}
    res = train(_cfg(tiny_vlm, data, tmp_path / "run", lora=mode, merger=merger), on_info=info.update)
    names, count = _expected(tiny_vlm, mode, merger, rank=8)
    assert set(info["trainable_names"]) == names and names
    assert info["trainable_params"] == res.trainable_params == count
    if mode == "l":
        assert not any("visual" in n for n in names)
    if mode == "v":
        assert all(n.startswith("model.visual.blocks.") for n in names)
    assert any("merger" in n for n in names) == merger
    keys = load_file(str(tmp_path / "run" / "adapter_model.safetensors")).keys()
    assert keys and all("lora_" in k for k in keys)
    losses = [h["loss"] for h in res.history]
    # the vision tower reaches the loss only through 4 image tokens of a tiny model: smaller but steady gains
    assert losses[-1] < losses[0] - (0.05 if "l" in mode else 5e-4), losses
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["backend"] == "vlm" and run["adapter"] == "." and run["max_pixels"] == PX and run["lora"] == mode


def test_adapter_save_reload_identical_and_merge(tiny_vlm, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import load_vlm, prepare_image, score_answer
    from synspill.vlm.train import merge_adapter, target_regex

    vlm = load_vlm(tiny_vlm, "cpu")
    torch.manual_seed(0)
    vlm.model = get_peft_model(vlm.model, LoraConfig(r=8, lora_alpha=8, target_modules=target_regex("v+l")))
    with torch.no_grad():
        for n, p in vlm.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # a non-zero adapter so that the test can fail
    ps = PromptSet.default()
    im = prepare_image(np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8), PX, 3136)[0]
    chat = build_chat(ps, ps.render_user(), answer='[{"bbox_2d": [1, 2, 30, 40], "label": "oil-spill"}]')
    before = score_answer(vlm, chat, [im]).logprobs
    vlm.model.save_pretrained(str(tmp_path / "ad"))
    base = score_answer(load_vlm(tiny_vlm, "cpu"), chat, [im]).logprobs
    assert np.abs(base - before).max() > 1e-3
    after = score_answer(load_vlm(tiny_vlm, "cpu", adapter=str(tmp_path / "ad")), chat, [im]).logprobs
    np.testing.assert_array_equal(after, before)
    merged = merge_adapter(tiny_vlm, tmp_path / "ad", tmp_path / "merged", dtype="float32")
    np.testing.assert_allclose(score_answer(load_vlm(str(merged), "cpu"), chat, [im]).logprobs, before, atol=1e-4)


@pytest.mark.slow
def test_resume_after_crash_continues_step_count(tiny_vlm, tmp_path):
    from synspill.errors import OutputExists, UsageError
    from synspill.vlm.train import train

    data = make_coco(tmp_path / "d", n=2)
    out = tmp_path / "run"

    class Crash(Exception):
        pass

    def crash_at_3(step, total, logs):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(_cfg(tiny_vlm, data, out, steps=5, save_every=1, lora="l"), on_step=crash_at_3)
    assert (out / "checkpoint" / "trainer_state.pt").is_file() and not (out / "run.json").exists()
    with pytest.raises(UsageError, match="rank"):
        train(_cfg(tiny_vlm, data, out, steps=5, save_every=1, lora="l", rank=4))
    info, steps = {}, []
    res = train(_cfg(tiny_vlm, data, out, steps=5, save_every=1, lora="l"), on_info=info.update,
                on_step=lambda s, t, logs: steps.append(s))
    assert info["resumed_from"] == 3 and steps == [4, 5] and res.steps == 5
    assert [h["step"] for h in res.history] == [1, 2, 3, 4, 5]
    with pytest.raises(OutputExists):
        train(_cfg(tiny_vlm, data, out, steps=5, lora="l"))


@pytest.mark.slow
def test_cli_finetune_then_predict_from_run_folder_and_budget_guard(tiny_vlm, tmp_path):
    from synspill.cli import app
    from synspill.errors import UsageError
    from synspill.predictors import PredictorConfig, infer_backend, load_predictor

    data = make_coco(tmp_path / "d", n=2)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", "vlm", "-m", tiny_vlm, "--data", str(data), "--val", str(data), "--out", str(out),
                                 "--lora", "v", "--steps", "2", "--batch", "2", "--grad-accum", "2", "--eval-every", "1",
                                 "--val-gen", "2", "--max-pixels", str(PX), "--device", "cpu", "--lr", "1e-3", "--merge"])
    assert r.exit_code == 0, r.output
    assert "trainable" in r.output
    run = json.loads((out / "run.json").read_text())
    assert run["weights"] == "merged" and (out / "merged" / "config.json").is_file()
    meta = json.loads((out / "synspill_vlm.json").read_text())
    assert meta["max_pixels"] == PX and meta["prompts"]["system"] and meta["lora"] == "v"
    hist = json.loads((out / "history.json").read_text())
    assert "val_loss" in hist[0] and "val_hit_rate" in hist[0]
    assert infer_backend(str(out)) == "vlm"
    p = load_predictor(PredictorConfig(model=str(out), device="cpu", options={"max_new_tokens": 8}))
    assert p.max_pixels == PX
    assert len(p.predict([np.zeros((40, 60, 3), np.uint8)])) == 1
    # base + adapter, at another budget: refused, unless overridden
    with pytest.raises(UsageError, match="differs from"):
        load_predictor(PredictorConfig(model=tiny_vlm, backend="vlm", adapter=str(out), device="cpu", max_pixels=4 * PX))
    p2 = load_predictor(PredictorConfig(model=tiny_vlm, backend="vlm", adapter=str(out), device="cpu", max_pixels=4 * PX,
                                        options={"allow_pixel_mismatch": True}))
    assert p2.max_pixels == 4 * PX


@pytest.mark.slow
def test_qlora_4bit_on_cpu(tiny_vlm, tmp_path):
    pytest.importorskip("bitsandbytes")
    from synspill.errors import DeviceError
    from synspill.vlm.train import train

    data = make_coco(tmp_path / "d", n=1)
    try:
        res = train(_cfg(tiny_vlm, data, tmp_path / "run", quant="4bit", lora="v+l", steps=4))
    except DeviceError as e:
        pytest.skip(f"bitsandbytes 4-bit unavailable on this CPU: {e}")
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0], losses
    import bitsandbytes as bnb

    from synspill.vlm.model import load_vlm

    q = load_vlm(tiny_vlm, "cpu", quant="4bit", adapter=str(tmp_path / "run"))
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in q.model.modules()) > 0
    assert json.loads((tmp_path / "run" / "synspill_vlm.json").read_text())["quant"] == "4bit"


def test_mask_labels_keeps_only_the_answer(tiny_vlm):
    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import encode, load_vlm, prepare_image
    from synspill.vlm.train import mask_labels

    vlm = load_vlm(tiny_vlm, "cpu")
    tok = vlm.processor.tokenizer
    ps = PromptSet.default()
    ims = [prepare_image(np.zeros((h, 60, 3), np.uint8), PX * 2, 3136)[0] for h in (40, 90)]
    answers = ['```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "oil-spill"}]\n```', "```json\n[]\n```"]
    chats = [build_chat(ps, ps.render_user(), answer=a) for a in answers]
    b = encode(vlm, chats, [[im] for im in ims], add_generation_prompt=False, padding_side="right")
    lab = mask_labels(b["input_ids"], b["attention_mask"], tok.convert_tokens_to_ids("<|im_start|>"),
                      tok.convert_tokens_to_ids("<|im_end|>"), len(tok("assistant\n")["input_ids"]))
    for row, a in zip(lab, answers, strict=True):
        assert tok.decode(row[row != -100]) == a + "<|im_end|>"


def test_config_errors(tiny_vlm, tmp_path):
    from synspill.errors import UsageError
    from synspill.vlm.train import VlmTrainConfig, target_regex

    with pytest.raises(UsageError, match="--lora"):
        target_regex("x")
    with pytest.raises(UsageError, match="merger"):
        VlmTrainConfig(model="m", data="d", out="o", lora="l", merger=True)
    with pytest.raises(UsageError, match="--rank"):
        VlmTrainConfig(model="m", data="d", out="o", rank=0)
    assert re.fullmatch(target_regex("l"), "model.language_model.layers.3.mlp.up_proj")
    assert not re.fullmatch(target_regex("l"), "model.visual.blocks.0.mlp.up_proj")
    assert not re.fullmatch(target_regex("v"), "model.visual.merger.mlp.0")
    assert re.fullmatch(target_regex("v", merger=True), "model.visual.merger.mlp.0")


@pytest.mark.slow
def test_early_stopping_on_rising_val_loss(tiny_vlm, tmp_path):
    from synspill.vlm.train import train

    data = make_coco(tmp_path / "d", n=1)
    # a destructive learning rate: the val loss rises after the first evaluation
    res = train(_cfg(tiny_vlm, data, tmp_path / "run", val=str(data), steps=10, eval_every=1, early_stopping=1,
                     lr=3.0, val_gen=0, lora="l"))
    assert res.stopped_early and res.steps < 10
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["stopped_early"] is True and run["best_val_loss"] == min(h["val_loss"] for h in res.history)


def test_cli_usage_errors(tmp_path):
    from synspill.cli import app

    r = CliRunner().invoke(app, ["finetune", "vlm", "-m", "x", "--data", "d.json", "--out", str(tmp_path / "o"), "--lora", "vision"])
    assert r.exit_code == 2 and "Invalid value for '--lora'" in r.output and "v+l" in r.output
    r = CliRunner().invoke(app, ["icl", "-m", "x", "--support", "s.json", "--images", "i", "--out", str(tmp_path / "p.json"), "--k", "0"])
    assert r.exit_code == 2 and "--k 0" in r.output
    r = CliRunner().invoke(app, ["icl", "-m", str(tmp_path / "nope"), "--support", "s.json", "--images", str(tmp_path),
                                 "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 1 and "Traceback" not in r.output


@pytest.mark.parametrize("old_transformers", [False, True])
def test_checkpointing_under_either_transformers_name(tiny_vlm, monkeypatch, old_transformers):
    # transformers 5.17 (what a GPU image had) has only gradient_checkpointing_enable; calling the
    # newer activation_checkpointing_enable there raised AttributeError in `finetune vlm`.
    from transformers import PreTrainedModel, Qwen2_5_VLForConditionalGeneration

    from synspill.vlm.train import enable_checkpointing

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_vlm)
    layers = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]
    assert layers and not any(m.gradient_checkpointing for m in layers)
    seen = []
    if old_transformers:  # 5.17: only the old name, which does the work itself
        def old_enable(self, gradient_checkpointing_kwargs=None):
            seen.append(gradient_checkpointing_kwargs)
            self._activation_checkpointing_enable(gradient_checkpointing_kwargs)

        monkeypatch.delattr(PreTrainedModel, "activation_checkpointing_enable")
        monkeypatch.setattr(PreTrainedModel, "gradient_checkpointing_enable", old_enable)
        assert not hasattr(model, "activation_checkpointing_enable")
    enable_checkpointing(model)
    assert all(m.gradient_checkpointing for m in layers)
    assert seen == ([{"use_reentrant": False}] if old_transformers else [])
