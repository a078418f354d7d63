"""Faults of the machine, not of the input (#14 row 8): an unwritable --out, a full disk, too
little memory. One line naming the target path and the fix, exit 1 (2 for a bad value), never
"internal error"; nothing partial left, and the same command finishes the work afterwards."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.io import storage_error, target_of
from tests.conftest import make_image


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for i in range(3):
        make_image(tmp_path / "photos" / f"p{i}.png", 64, 48, seed=i)
    return tmp_path / "photos"


def test_target_of_temp_names():
    assert target_of("/d/.boxes.json.k2j_x9.tmp") == Path("/d/boxes.json")
    assert target_of("/d/images/.000003.jpg.s0of1.tmp") == Path("/d/images/000003.jpg")
    assert target_of("/d/boxes.json") == Path("/d/boxes.json")
    assert storage_error(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None


def test_unwritable_out_names_the_target_not_a_temp_file(photos, tmp_path, monkeypatch):
    out = tmp_path / "ro" / "boxes.json"
    out.parent.mkdir()
    from synspill import io as sio

    real = sio._create_temp

    def denied(path):
        if path.parent == out.parent:  # what creating a file in a folder without write permission raises (also as root: simulated)
            raise PermissionError(errno.EACCES, "Permission denied", str(path.with_name(f".{path.name}.a1b2c3.tmp")))
        return real(path)

    monkeypatch.setattr(sio, "_create_temp", denied)
    r = run("propose", "--scenes", photos, "--out", out)
    assert r.exit_code == 1, r.output
    assert f"{out}: permission denied; fix its permissions or choose another path" in r.output
    assert ".tmp" not in r.output and "internal error" not in r.output
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_really_unwritable_out(photos, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run("propose", "--scenes", photos, "--out", ro / "boxes.json")
    finally:
        ro.chmod(0o755)
    assert r.exit_code == 1 and f"{ro / 'boxes.json'}: permission denied" in r.output, r.output


def test_full_disk_mid_job_names_the_file_leaves_nothing_partial_and_resumes(tmp_path, monkeypatch):
    from synspill.synth import jobrunner

    out = tmp_path / "scenes"
    writes = {"n": 0}
    real_open = open

    class FullDisk:
        """A file whose writes fail with ENOSPC from the third image on (what a full disk gives)."""

        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def write(self, data):
            writes["n"] += 1
            if writes["n"] >= 3:
                self.f.write(data[: len(data) // 2])  # a part reached the disk
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(jobrunner, "open", lambda path, mode="r", **kw: FullDisk(path, mode) if "images" in str(path)
                        else real_open(path, mode, **kw), raising=False)
    args = ("scenes", "--out", out, "--n", "4", "--size", "32", "--workers", "1", "--batch-size", "1")
    r = run(*args)
    assert r.exit_code == 1, r.output
    assert f"{out / 'images' / '000003.jpg'}: no space left on the disk; free some space and run the same command again" in r.output
    assert "internal error" not in r.output and ".tmp" not in r.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000001.jpg", "000002.jpg"]  # no partial file, no temp
    monkeypatch.undo()
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "resuming: 2 finished image(s) kept, 2 to make" in r.output


def test_absurd_size_is_a_usage_error_and_out_of_memory_is_named(tmp_path, monkeypatch):
    r = run("scenes", "--out", tmp_path / "s", "--n", "1", "--size", "1000000")
    assert r.exit_code == 2 and "--size 1000000 is larger than 8192 px" in r.output, r.output
    assert not (tmp_path / "s").exists()
    from synspill.synth import scenes

    def oom(items):
        raise MemoryError

    monkeypatch.setattr(scenes, "_scene_worker", oom)
    r = run("scenes", "--out", tmp_path / "s2", "--n", "1", "--size", "32", "--workers", "1")
    assert r.exit_code == 1, r.output
    assert "out of memory; use smaller images or batches" in r.output and "internal error" not in r.output


def test_sigterm_in_process_is_exit_143_with_one_line(tmp_path, monkeypatch):
    from synspill.synth import scenes

    def terminated(items):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the job")

    monkeypatch.setattr(scenes, "_scene_worker", terminated)
    before = signal.getsignal(signal.SIGTERM)
    r = run("scenes", "--out", tmp_path / "s", "--n", "2", "--size", "32", "--workers", "1")
    assert r.exit_code == 143, r.output
    assert "terminated (SIGTERM); finished work is kept -- run the same command again to resume" in r.output
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler is gone again
