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
])
def test_errors_name_the_key(tmp_path, text, pattern):
    with pytest.raises(UsageError, match=pattern):
        load_study(_write(tmp_path, text))


def test_relative_paths_resolve_against_the_file(tmp_path):
    s = load_study(_write(tmp_path, BASE))
    assert s.out == (tmp_path / "runs" / "e").resolve()
    assert s.datasets["s"].split == (0.8, 0.1, 0.1)
    assert [c.id for c in s.cells] == ["yolo__yolo11n"]
