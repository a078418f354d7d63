"""Frozen config dataclasses from loose parameters: study files, the demo, CLI flags.

Each config dataclass owns its defaults. Whoever builds one passes only the values that
were actually given: a command its options that are not None (:func:`given`), the
experiment runner the keys of a study file's table, the demo its own settings. Every such
build goes through :meth:`FromParams.from_params`, which

- rejects a key that is not a field, naming where it came from and listing the valid keys
  (a typo such as ``epocs = 2`` in a study file is an error, not 100 silent epochs);
- checks the simple types a TOML file can get wrong (``epochs = "2"``, ``lr = true``);
- leaves every unset field to the dataclass default.

Light: standard library only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, Union

from synspill.errors import UsageError

T = TypeVar("T")


def config_keys(cls: type) -> set[str]:
    """The names of a config dataclass's init fields."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def given(**values: Any) -> dict[str, Any]:
    """The values a user set: drops ``None`` and turns ``str`` Enum members into their values."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None}


def check_keys(params: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise on the first key of ``params`` that is not in ``valid``.

    Raises:
        UsageError: ``<where>: unknown key 'epocs'; valid keys: batch, epochs, ...``.
    """
    allowed = set(valid)
    bad = sorted(k for k in params if k not in allowed)
    if bad:
        raise UsageError(f"{where}: unknown key {bad[0]!r}; valid keys: {', '.join(sorted(allowed))}")


def from_params(cls: type[T], params: Mapping[str, Any], where: str = "", **fixed: Any) -> T:
    """``cls(**fixed, **params)`` after checking the keys and simple types of ``params``.

    Args:
        cls: A (frozen) config dataclass.
        params: Loose values (a study-file table, given CLI flags); unset fields keep the
            dataclass default.
        where: Where ``params`` came from, for messages (``study.toml: [[methods]] yolo``).
        **fixed: Values the caller decides (paths, device, seed); ``params`` may not set them.

    Raises:
        UsageError: An unknown key (the valid ones listed) or a value of the wrong type.
    """
    prefix = where or cls.__name__
    check_keys(params, config_keys(cls) - set(fixed), prefix)
    hints = typing.get_type_hints(cls)
    kw = {k: _check_type(v, hints.get(k, Any), f"{prefix}: {k}") for k, v in params.items()}
    return cls(**fixed, **kw)


class FromParams:
    """Mixin giving a config dataclass the classmethod :meth:`from_params`."""

    @classmethod
    def from_params(cls: type[T], params: Mapping[str, Any], where: str = "", **fixed: Any) -> T:
        """Build the config from loose values (see :func:`synspill.params.from_params`)."""
        return from_params(cls, params, where, **fixed)


def _check_type(v: Any, hint: Any, what: str) -> Any:
    """``v`` if it fits ``hint`` (tuples from lists, paths from strings), else a UsageError."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return v
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if v is None and type(None) in args:
            return None
        errors: list[UsageError] = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(v, a, what)
            except UsageError as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else UsageError(f"{what} = {v!r} has the wrong type ({_words(hint)})")
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(v).value if issubclass(hint, str) else hint(v)
        except ValueError:
            raise UsageError(f"{what} = {v!r}; use one of {', '.join(str(m.value) for m in hint)}") from None
    if hint is bool:
        if not isinstance(v, bool):
            raise UsageError(f"{what} = {v!r} must be true or false")
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise UsageError(f"{what} = {v!r} must be an integer")
        return v
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UsageError(f"{what} = {v!r} must be a number")
        return v
    if hint is str:
        if not isinstance(v, str):
            raise UsageError(f"{what} = {v!r} must be a string")
        return v
    if hint is Path:
        if not isinstance(v, str | Path):
            raise UsageError(f"{what} = {v!r} must be a path")
        return Path(v)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(v, list | tuple):
            raise UsageError(f"{what} = {v!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(x, args[0], what) for x in v)
        if args and len(v) != len(args):
            raise UsageError(f"{what} = {v!r} must be a list of {len(args)} values")
        return tuple(_check_type(x, a, what) for x, a in zip(v, args, strict=True)) if args else tuple(v)
    if origin is dict or hint is dict:
        if not isinstance(v, dict):
            raise UsageError(f"{what} = {v!r} must be a table")
        return v
    return v


def _words(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "none")
