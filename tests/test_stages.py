"""Stage markers: reuse on same config, re-run on change/force, nothing recorded on failure."""

import pytest

from synspill.stages import StageRunner


def test_reuse_rerun_and_failure(tmp_path):
    calls = []
    r = StageRunner(tmp_path)

    def fn():
        calls.append(1)
        return {"n": len(calls)}

    assert r.run("a", {"x": 1}, fn) == ({"n": 1}, False)
    assert r.run("a", {"x": 1}, fn) == ({"n": 1}, True)
    assert r.run("a", {"x": 2}, fn) == ({"n": 2}, False)
    assert StageRunner(tmp_path, force=True).run("a", {"x": 2}, fn) == ({"n": 3}, False)

    def boom():
        raise RuntimeError("crash mid-stage")

    with pytest.raises(RuntimeError):
        r.run("b", {}, boom)
    assert r.done("b", {}) is None and not r.marker("b").exists()
