"""``predict`` is resumable (#14 row 16): per-image results appended durably, finished images
skipped on the next run, the final COCO results written atomically at the end (the same bytes
as an uninterrupted run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.errors import OutputExists
from synspill.inference import partial_path, predict_to_results
from tests.detectors.conftest import make_blobs
from tests.watch.blobs import DarkBlobPredictor


class Stopping(DarkBlobPredictor):
    """Dark blobs, but Ctrl-C arrives once ``stop_after`` images have been predicted."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.seen = 0

    def predict(self, images):
        if self.stop_after is not None and self.seen + len(images) > self.stop_after:
            raise KeyboardInterrupt
        self.seen += len(images)
        return super().predict(images)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_blobs(tmp_path / "data", 9, size=64, seed=7)


def test_interrupted_predict_resumes_to_the_same_bytes(data, tmp_path):
    ref = predict_to_results(DarkBlobPredictor(), data, tmp_path / "ref.json", batch=2).results
    assert json.loads(ref.read_text()) and not partial_path(ref).exists()
    out = tmp_path / "preds.json"
    with pytest.raises(KeyboardInterrupt):
        predict_to_results(Stopping(stop_after=5), data, out, batch=2)
    assert not out.exists()  # nothing final before every image is done
    lines = partial_path(out).read_text().splitlines()
    assert len(lines) == 1 + 4  # settings + the two finished batches
    with open(partial_path(out), "a") as f:
        f.write('{"image_id": 5, "resu')  # a kill mid-write leaves a torn line
    again = Stopping()
    s = predict_to_results(again, data, out, batch=2)
    assert again.seen == 9 - 4  # only the unfinished images were predicted again
    assert out.read_bytes() == ref.read_bytes()
    assert s.meta_data["resumed_images"] == 4 and s.n_detections == len(json.loads(ref.read_text()))
    assert not partial_path(out).exists()


def stopping(cfg) -> Stopping:
    """``py:tests.test_predict_resume:stopping``: Ctrl-C after $STOP_AFTER images."""
    import os

    return Stopping(int(os.environ["STOP_AFTER"]) if os.environ.get("STOP_AFTER") else None)


def test_cli_resume_other_settings_and_force(data, tmp_path, monkeypatch):
    def predict(*extra: str):
        return CliRunner().invoke(app, ["predict", "--model", "py:tests.test_predict_resume:stopping", "--images", str(data),
                                        "--batch-size", "1", *extra])

    out = tmp_path / "p.json"
    monkeypatch.setenv("STOP_AFTER", "3")
    r = predict("--out", str(out))
    assert r.exit_code == 130 and "interrupted" in r.output, r.output
    monkeypatch.delenv("STOP_AFTER")
    r = predict("--out", str(out), "--conf", "0.5")
    assert r.exit_code == 1 and "holds an unfinished prediction run with other settings (conf: 0.001 -> 0.5)" in r.output, r.output
    r = predict("--out", str(out))
    assert r.exit_code == 0, r.output
    assert "resuming: 3 already predicted" in r.output
    ref = predict_to_results(DarkBlobPredictor(), data, tmp_path / "ref.json", batch=8).results
    assert out.read_bytes() == ref.read_bytes()
    # --force starts over (and would overwrite finished results)
    monkeypatch.setenv("STOP_AFTER", "2")
    assert predict("--out", str(tmp_path / "q.json")).exit_code == 130
    monkeypatch.delenv("STOP_AFTER")
    r = predict("--out", str(tmp_path / "q.json"), "--force")
    assert r.exit_code == 0 and "resuming" not in r.output, r.output


def test_other_settings_refused_in_the_library(data, tmp_path):
    out = tmp_path / "p.json"
    with pytest.raises(KeyboardInterrupt):
        predict_to_results(Stopping(stop_after=1), data, out, batch=1, extra_meta={"conf": 0.1})
    with pytest.raises(OutputExists, match=r"other settings \(conf: 0.1 -> 0.2\)"):
        predict_to_results(DarkBlobPredictor(), data, out, extra_meta={"conf": 0.2})
    predict_to_results(DarkBlobPredictor(), data, out, extra_meta={"conf": 0.2}, resume=False)
    assert out.exists() and not partial_path(out).exists()


def test_decoding_threads_keep_order_and_errors(data, tmp_path):
    """Several decoding threads give the same bytes as one; a missing image is still named."""
    from synspill.errors import DatasetError

    one = predict_to_results(DarkBlobPredictor(), data, tmp_path / "one.json", batch=2, workers=1).results
    four = predict_to_results(DarkBlobPredictor(), data, tmp_path / "four.json", batch=2, workers=4).results
    assert json.loads(one.read_text()) and one.read_bytes() == four.read_bytes()
    victim = sorted((data.parent / "images").iterdir())[5]
    victim.write_bytes(b"\xff\xd8" + bytes(range(256)) * 8)  # passes the up-front check, fails to decode in a thread
    with pytest.raises(DatasetError, match=victim.name):
        predict_to_results(DarkBlobPredictor(), data, tmp_path / "gone.json", batch=2, workers=4, resume=False)
    r = CliRunner().invoke(app, ["predict", "--model", "py:tests.test_predict_resume:stopping", "--images", str(data),
                                 "--out", str(tmp_path / "w.json"), "--workers", "0"])
    assert r.exit_code == 2 and "--workers 0 must be at least 1" in r.output, r.output
    from synspill.errors import UsageError

    # the library refuses it too (it used to mean "auto" there)
    with pytest.raises(UsageError, match="--workers 0 must be at least 1"):
        predict_to_results(DarkBlobPredictor(), data, tmp_path / "zero.json", batch=2, workers=0)
