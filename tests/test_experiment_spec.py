"""Experiment TOML -> cells: expansion, stable ids, validation errors naming the key."""

from pathlib import Path

import pytest

from synspill.errors import UsageError
from synspill.experiment.spec import load_study

ROOT = Path(__file__).resolve().parents[1]


def test_paper_design_expands_to_the_papers_cells():
    s = load_study(ROOT / "experiments" / "paper.toml")
    ids = [c.id for c in s.cells]
    # 3 zero-shot + 9 ICL + 9 LoRA + YOLO + RF-DETR
    assert len(ids) == 3 + 9 + 9 + 1 + 1
    assert "icl-k10__7B" in ids and "lora-lorav+l__32B" in ids and "zero-shot__3B" in ids
    c = next(c for c in s.cells if c.id == "lora-lorav__7B")
    assert c.model == "Qwen/Qwen2.5-VL-7B-Instruct" and c.params["lora"] == "v" and c.params["steps"] == 800
    assert any("GPU" in n for n in c.needs)
    assert s.eval_on == ["public:test", "plant:test"]


def _write(tmp_path, text):
    p = tmp_path / "e.toml"
    p.write_text(text)
    return p


BASE = """
[datasets.s]
kind = "synthetic"
[[methods]]
kind = "yolo"
train = "s:train"
[evaluate]
on = ["s:test"]
"""


@pytest.mark.parametrize("text,pattern", [
    (BASE.replace('kind = "synthetic"', 'kind = "magic"'), r"\[datasets.s\] kind = 'magic'"),
    (BASE.replace('train = "s:train"', 'train = "x:train"'), r"methods\[0\].train refers to dataset 'x'"),
    (BASE.replace('on = ["s:test"]', 'on = ["s:nope"]'), r"split 'nope'"),
    (BASE.replace('train = "s:train"', ''), r"needs train ="),
    (BASE + '[[methods]]\nkind = "icl"\nsupport = "s:train"\nk = [0]\nmodels = ["7B"]\n', r"k = 0"),
    ("name = [", r"malformed TOML"),
    (BASE.replace('on = ["s:test"]', 'on = ["s:test"]\nbootstrap = -5'), r"\[evaluate\] bootstrap = -5; use a number of draws"),
    (BASE.replace('on = ["s:test"]', 'on = ["s:test"]\nbootstrap = true'), r"\[evaluate\] bootstrap = True"),
])
def test_errors_name_the_key(tmp_path, text, pattern):
    with pytest.raises(UsageError, match=pattern):
        load_study(_write(tmp_path, text))


def test_relative_paths_resolve_against_the_file(tmp_path):
    s = load_study(_write(tmp_path, BASE))
    assert s.out == (tmp_path / "runs" / "e").resolve()
    assert s.datasets["s"].split == (0.8, 0.1, 0.1)
    assert [c.id for c in s.cells] == ["yolo__yolo11n"]
    assert s.bootstrap == 0 and load_study(_write(tmp_path, BASE + "bootstrap = 200\n")).bootstrap == 200


@pytest.mark.parametrize("text,pattern", [  # every key of a study file is checked, naming file, table and key
    (BASE.replace('train = "s:train"', 'train = "s:train"\nepocs = 2'),
     r"e\.toml: methods\[0\] \(yolo, kind = 'yolo'\): unknown key 'epocs'; valid keys: .*epochs"),
    (BASE.replace('kind = "yolo"', 'kind = "detr"') + "", None),  # detr takes train: fine
    (BASE.replace('train = "s:train"', 'train = "s:train"\nrank = 8'), r"unknown key 'rank'"),  # a LoRA key on YOLO
    (BASE + '[[methods]]\nkind = "icl"\nsupport = "s:train"\nselect = "random"\nsteps = 3\nmodels = ["7B"]\n',
     r"methods\[1\] \(icl, kind = 'icl'\): unknown key 'steps'"),
    (BASE.replace('kind = "synthetic"', 'kind = "synthetic"\nsize = 64\nnn = 3'),
     r"\[datasets\.s\] \(kind = 'synthetic'\): unknown key 'nn'; valid keys: .*\bn\b"),
    (BASE.replace('kind = "synthetic"', 'kind = "synthetic"\nbackend = "magic"'), r"backend = 'magic'; use procedural or sdxl"),
    (BASE.replace('on = ["s:test"]', 'on = ["s:test"]\niuo = "0.5"'), r"\[evaluate\]: unknown key 'iuo'; valid keys: .*iou"),
    ('nmae = "x"\n' + BASE, r"top level: unknown key 'nmae'"),
    (BASE + '[report]\niou_table = "7B"\n', r"\[report\]: unknown key 'iou_table'"),
])
def test_unknown_keys_are_errors(tmp_path, text, pattern):
    if pattern is None:
        load_study(_write(tmp_path, text))
        return
    with pytest.raises(UsageError, match=pattern):
        load_study(_write(tmp_path, text))


def test_every_known_method_key_is_accepted(tmp_path):
    from synspill.experiment.runner import method_keys

    lora = BASE + '[[methods]]\nkind = "lora"\ntrain = "s:train"\nmodels = ["7B"]\n' + "".join(
        f"{k} = {v}\n" for k, v in {"steps": 2, "batch": 1, "alpha": 1, "max_new_tokens": 8, "predict_batch": 2,
                                    "temperature": 0.5, "merge": "false"}.items())
    s = load_study(_write(tmp_path, lora))
    assert s.cells[-1].params["steps"] == 2
    assert {"epochs", "imgsz", "batch", "patience", "weights", "options"} <= method_keys("yolo")
    assert "epochs" not in method_keys("lora") and "k" in method_keys("icl") and "device" not in method_keys("yolo")
