"""Issue #14, data side: no silent loss, no silent success, every fault named.

One section per row of the issue (rows 1, 6, 9, 10, 11, 12, 13, 14, 15). Bad inputs are
tables: the input, the expected exit code (1 bad input, 2 usage) and a message fragment;
every CLI case also checks that no traceback is printed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from tests.conftest import make_image


@pytest.fixture(autouse=True)
def wide_console():
    from synspill.console import console

    old = console.width
    console.width = 300  # no wrapping of paths in the tables the tests read
    yield
    console.width = old


def run(*args: object):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def flat(text: str) -> str:
    """Output with line breaks (rich wraps long lines) turned into spaces."""
    return " ".join(text.split())


# ---- row 10: atomically written files honour the umask -------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_files_honour_the_umask(tmp_path, umask_022):
    from synspill.io import save_image, write_bytes, write_json, write_text

    write_text(tmp_path / "a.txt", "x")
    write_bytes(tmp_path / "b.bin", b"x")
    write_json(tmp_path / "c.json", {})
    save_image(tmp_path / "d.png", __import__("numpy").zeros((4, 4, 3), "uint8"))
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {n: 0o644 for n in ("a.txt", "b.bin", "c.json", "d.png")}
    os.umask(0o007)
    write_text(tmp_path / "a.txt", "y")  # replacing a file: the new one follows the umask too
    assert _mode(tmp_path / "a.txt") == 0o660


def test_command_outputs_are_readable_by_others(tmp_path, umask_022, tiny_coco):
    out = tmp_path / "split"
    r = run("dataset", "split", tiny_coco, "--out", out, "--fractions", "0.34,0.33,0.33")
    assert r.exit_code == 0, r.output
    assert {p.name: _mode(p) for p in out.iterdir()} == {n: 0o644 for n in ("train.json", "val.json", "test.json", "split.json")}
