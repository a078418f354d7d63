"""from_params: unknown keys and wrong types are errors naming where; defaults stay in the config."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from synspill.errors import UsageError
from synspill.params import FromParams, from_params, given


class Colour(str, Enum):
    red = "red"
    blue = "blue"


@dataclass(frozen=True)
class Cfg(FromParams):
    out: str
    epochs: int = 100
    lr: float = 1e-4
    name: str | None = None
    flag: bool = False
    size: tuple[int, int] = (1, 3)
    ids: tuple[int, ...] | None = None
    opts: dict = None  # type: ignore[assignment]
    path: Path | None = None


def test_defaults_stay_in_the_config_and_fixed_values_win():
    c = Cfg.from_params({"epochs": 2}, "study.toml: [[methods]] yolo", out="runs/x")
    assert (c.out, c.epochs, c.lr, c.size) == ("runs/x", 2, 1e-4, (1, 3))
    assert Cfg.from_params({}, out="o") == Cfg(out="o")


@pytest.mark.parametrize(("params", "message"), [
    ({"epocs": 2}, r"study\.toml: \[\[methods\]\] yolo: unknown key 'epocs'; valid keys: epochs, flag, ids, lr, name, opts, path, size"),
    ({"out": "elsewhere"}, r"unknown key 'out'"),  # fixed by the caller, not settable
    ({"epochs": "2"}, r"epochs = '2' must be an integer"),
    ({"epochs": 2.5}, r"epochs = 2.5 must be an integer"),
    ({"epochs": True}, r"epochs = True must be an integer"),
    ({"lr": "fast"}, r"lr = 'fast' must be a number"),
    ({"flag": 1}, r"flag = 1 must be true or false"),
    ({"name": 5}, r"name = 5 must be a string"),
    ({"size": [1, 2, 3]}, r"size = \[1, 2, 3\] must be a list of 2 values"),
    ({"size": 4}, r"size = 4 must be a list"),
    ({"ids": [1, "x"]}, r"ids = 'x' must be an integer"),
    ({"opts": [1]}, r"opts = \[1\] must be a table"),
])
def test_bad_params_name_where_key_and_fix(params, message):
    with pytest.raises(UsageError, match=message):
        from_params(Cfg, params, "study.toml: [[methods]] yolo", out="o")


def test_lists_become_tuples_and_strings_paths():
    c = Cfg.from_params({"size": [2, 4], "ids": [1, 2], "lr": 1, "path": "a/b", "opts": {"k": 1}}, out="o")
    assert c.size == (2, 4) and c.ids == (1, 2) and c.lr == 1 and c.path == Path("a/b") and c.opts == {"k": 1}


def test_given_drops_unset_and_unwraps_enums():
    assert given(a=None, b=0, c=False, d=Colour.blue, e="") == {"b": 0, "c": False, "d": "blue", "e": ""}


def test_real_configs_reject_typos():
    from synspill.detectors.detr import DetrTrainConfig
    from synspill.vlm.train import VlmTrainConfig

    with pytest.raises(UsageError, match="unknown key 'grad_acum'.*grad_accum"):
        DetrTrainConfig.from_params({"grad_acum": 2}, "x", data="d", out="o")
    assert VlmTrainConfig.from_params({"lora": "v", "alpha": 1}, "x", model="m", data="d", out="o").alpha == 1
