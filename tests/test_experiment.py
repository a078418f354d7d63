"""``synspill experiment``: datasets prepared once, cells run/skipped/resumed, failures recorded,
the paper-style report, ``--dry-run``, and the CPU smoke study end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.experiment import runner
from synspill.experiment.spec import load_study
from tests.detectors.conftest import make_blobs

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# fast: fake trainers / predictors with known answers
# ---------------------------------------------------------------------------------------
FAKE = """
name = "fake"
out = "out"
[models]
"3B" = "fake-3b"
"7B" = "fake-7b"
[datasets.blobs]
kind = "coco"
path = "blobs/annotations.json"
split = [0.5, 0.25, 0.25]
[[methods]]
name = "zero-shot"
kind = "zero-shot"
models = ["3B", "7B"]
[[methods]]
name = "icl"
kind = "icl"
k = [5, 10]
support = "blobs:train"
models = ["7B"]
[[methods]]
name = "yolo11"
kind = "yolo"
train = "blobs:train"
[evaluate]
on = ["blobs:test", "blobs:val"]
iou = "0.5:0.9:0.1"
"""


def _write_preds(gt: str, out: Path, mode: str) -> None:
    """Perfect boxes (``perfect``), boxes shifted by half their width (``half``: IoU 1/3), or none."""
    from synspill.coco.dataset import load_coco

    recs = []
    for a in load_coco(gt).annotations:
        x, y, w, h = a.bbox
        if mode == "perfect":
            recs.append({"image_id": a.image_id, "category_id": a.category_id, "bbox": [x, y, w, h], "score": 0.9})
        elif mode == "half":
            recs.append({"image_id": a.image_id, "category_id": a.category_id, "bbox": [x + w / 2, y, w, h], "score": 0.9})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recs))


@pytest.fixture
def fake_study(tmp_path, monkeypatch):
    """The FAKE study with trainers and predictors replaced by counters writing known answers."""
    make_blobs(tmp_path / "blobs", 12, size=64, seed=5)
    path = tmp_path / "study.toml"
    path.write_text(FAKE)
    calls = {"train": [], "predict": []}
    modes = {"zero-shot__3B": "half", "zero-shot__7B": "perfect", "icl-k5__7B": "perfect", "icl-k10__7B": "none",
             "yolo11__yolo11n": "perfect"}

    def fake_train(study, cell, data, run_dir, device, progress):
        calls["train"].append(cell.id)
        if cell.params.get("epochs") == 13:  # the failing-cell test's trigger
            raise RuntimeError("GPU on fire\nsecond line")
        run_dir.mkdir(parents=True, exist_ok=True)
        return {"run_dir": str(run_dir)}

    def fake_predict(study, cell, gt, out, eval_hash, train, data, device, progress):
        if runner._finished_preds(out, eval_hash):
            return out
        calls["predict"].append((cell.id, out.name))
        _write_preds(gt, out, modes[cell.id])
        out.with_name(out.name + ".meta.json").write_text(json.dumps({"eval_hash": eval_hash, "unscored": False}))
        return out

    monkeypatch.setitem(runner._TRAINERS, "yolo", fake_train)
    monkeypatch.setattr(runner, "_predict", fake_predict)
    return path, calls


def test_runs_every_cell_once_and_reports_known_numbers(fake_study):
    path, calls = fake_study
    r = CliRunner().invoke(app, ["experiment", "run", str(path)])
    assert r.exit_code == 0, r.output
    study = load_study(path)
    assert calls["train"] == ["yolo11__yolo11n"]
    assert len(calls["predict"]) == 5 * 2  # five cells x two evaluation sets
    for split in ("train", "val", "test", "all"):
        assert (study.out / "data" / "blobs" / f"{split}.json").is_file()
    doc = json.loads((study.out / "report.json").read_text())
    cells = {c["id"]: c for c in doc["cells"]}
    assert set(cells) == {c.id for c in study.cells} and all(c["status"] == "done" for c in cells.values())
    m = cells["zero-shot__7B"]["metrics"]["blobs:test"]
    assert m["hit_rate"]["0.5"] == 1.0 and m["hit_rate"]["0.9"] == 1.0 and m["map50"] == pytest.approx(1.0)
    half = cells["zero-shot__3B"]["metrics"]["blobs:test"]["hit_rate"]  # IoU of a half-width shift is 1/3
    assert all(v == 0.0 for v in half.values())
    assert cells["icl-k10__7B"]["metrics"]["blobs:val"]["hit_rate"]["0.5"] == 0.0
    n_test = doc["eval_sets"]["blobs:test"]
    assert n_test["images"] == 3 and n_test["boxes"] == 3
    md = (study.out / "report.md").read_text()
    # Table 2/3: rows = methods, columns = model sizes in size order
    assert re.search(r"\| Method \| 3B \| 7B \|", md)
    assert re.search(r"\| Zero-shot \| 0\.000 \| 1\.000 \|", md)
    assert re.search(r"\| ICL-5 \|  \| 1\.000 \|", md) and re.search(r"\| ICL-10 \|  \| 0\.000 \|", md)
    assert "Table 4 layout (7B + detectors)" in md and "HR@0.9" in md and "Table 5 layout" in md
    assert "| yolo11 (yolo11n) | 1.000 |" in md
    assert (study.out / "fig3a_blobs-test.png").read_bytes()[:4] == b"\x89PNG"
    assert (study.out / "report" / "blobs-test" / "eval.md").is_file()

    # second run: everything finished -> nothing trained or predicted again
    before = (study.out / "cells" / "icl-k5__7B" / "done.json").stat().st_mtime_ns
    r = CliRunner().invoke(app, ["experiment", "run", str(path)])
    assert r.exit_code == 0, r.output
    assert calls["train"] == ["yolo11__yolo11n"] and len(calls["predict"]) == 10
    assert (study.out / "cells" / "icl-k5__7B" / "done.json").stat().st_mtime_ns == before
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--dry-run"])
    assert r.exit_code == 0 and r.output.count("done") >= 5
    (study.out / "report.md").unlink()
    r = CliRunner().invoke(app, ["experiment", "report", str(path)])
    assert r.exit_code == 0 and "5/5 cells with numbers" in " ".join(r.output.split())  # rich may wrap it
    assert (study.out / "report.md").read_text() == md and len(calls["predict"]) == 10


def test_bootstrap_intervals_in_the_report(fake_study):
    """``[evaluate] bootstrap``: every cell's mAP@50 gets the interval of ``eval --bootstrap`` on its file."""
    from synspill.evaluation import evaluate_files

    path, _ = fake_study
    path.write_text(path.read_text() + "bootstrap = 200\n")
    r = CliRunner().invoke(app, ["experiment", "run", str(path)])
    assert r.exit_code == 0, r.output
    study = load_study(path)
    doc = json.loads((study.out / "report.json").read_text())
    assert doc["bootstrap"] == 200
    cells = {c["id"]: c for c in doc["cells"]}
    perfect = cells["zero-shot__7B"]["metrics"]["blobs:test"]["ci"]
    assert (perfect["map50"]["low"], perfect["map50"]["high"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert perfect["map50"]["n_boot"] == 200 and perfect["hit_rate"]["low"] == 1.0
    none = cells["icl-k10__7B"]["metrics"]["blobs:val"]["ci"]["map50"]
    assert (none["low"], none["high"]) == (0.0, 0.0)
    # a cell with hits on some images only: the report gives the interval `eval --bootstrap` gives on its file
    gt = runner.resolve_ref(study, runner.finished_datasets(study), "blobs:test")
    pred = Path(json.loads((study.out / "cells" / "zero-shot__7B" / "done.json").read_text())["preds"]["blobs:test"])
    recs = json.loads(pred.read_text())
    pred.write_text(json.dumps([q for q in recs if q["image_id"] != recs[0]["image_id"]]))
    r = CliRunner().invoke(app, ["experiment", "report", str(path)])
    assert r.exit_code == 0, r.output
    doc = json.loads((study.out / "report.json").read_text())
    got = next(c for c in doc["cells"] if c["id"] == "zero-shot__7B")["metrics"]["blobs:test"]["ci"]["map50"]
    direct = evaluate_files(gt, [pred], iou_thresholds=study.iou, n_boot=200).results[0].ci["map50"]
    assert 0.0 <= got["low"] < got["high"] <= 1.0 and (got["low"], got["high"]) == (direct.low, direct.high)
    md = (study.out / "report.md").read_text()
    assert "95% percentile bootstrap interval over images (200 draws" in md
    assert re.search(r"\| ICL-10 \| 7B \| 0\.000 \[0\.00, 0\.00\] \|", md)


def test_failing_cell_is_recorded_and_the_others_go_on(fake_study):
    path, calls = fake_study
    path.write_text(FAKE.replace('train = "blobs:train"\n[evaluate]', 'train = "blobs:train"\nepochs = 13\n[evaluate]'))
    r = CliRunner().invoke(app, ["experiment", "run", str(path)])
    assert r.exit_code == 1
    assert "failed" in r.output and "yolo11__yolo11n" in r.output
    study = load_study(path)
    failed = json.loads((study.out / "cells" / "yolo11__yolo11n" / "failed.json").read_text())
    assert failed["error"] == "RuntimeError: GPU on fire second line" and "Traceback" in failed["traceback"]
    doc = json.loads((study.out / "report.json").read_text())
    cells = {c["id"]: c for c in doc["cells"]}
    assert cells["yolo11__yolo11n"]["status"] == "failed" and cells["zero-shot__7B"]["status"] == "done"
    md = (study.out / "report.md").read_text()
    assert "| yolo11 (yolo11n) | failed |" in md and "RuntimeError: GPU on fire second line" in md
    r = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["experiment", "run", str(path), "--dry-run"])
    assert "failed: RuntimeError: GPU on fire" in r.output


def test_only_and_force_select_cells(fake_study):
    path, calls = fake_study
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--only", "zero-shot__*"])
    assert r.exit_code == 0, r.output
    assert {c for c, _ in calls["predict"]} == {"zero-shot__3B", "zero-shot__7B"}
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--only", "zero-shot__7B", "--force"])
    assert r.exit_code == 0, r.output
    assert [c for c, _ in calls["predict"]].count("zero-shot__7B") == 4  # redone on both sets
    assert [c for c, _ in calls["predict"]].count("zero-shot__3B") == 2
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--only", "nope*"])
    assert r.exit_code == 2 and "matches no cell" in r.output


def test_dry_run_lists_cells_and_needs_and_runs_nothing(tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text((ROOT / "experiments" / "paper.toml").read_text())
    r = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["experiment", "run", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    study = load_study(path)
    for c in study.cells:
        assert c.id in r.output
    assert "GPU >= 80 GB" in r.output and "todo" in r.output and "VLM weights Qwen/Qwen2.5-VL-32B-Instruct" in r.output
    assert not study.out.exists()


def test_bad_paths_give_one_clear_error(tmp_path):
    r = CliRunner().invoke(app, ["experiment", "run", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "no such experiment file" in r.output
    p = tmp_path / "s.toml"
    p.write_text(FAKE.replace("blobs/annotations.json", "missing/annotations.json"))
    r = CliRunner().invoke(app, ["experiment", "run", str(p)])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "could not be prepared" in out and "Traceback" not in r.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())  # every cell failed, with the reason
    assert {c["status"] for c in doc["cells"]} == {"failed"}
    assert "missing/annotations.json' does not exist; fix the path" in doc["cells"][0]["error"]
    assert "not available" in (tmp_path / "out" / "report.md").read_text()
    make_blobs(tmp_path / "blobs", 6, size=64)
    p.write_text(FAKE.replace('split = [0.5, 0.25, 0.25]\n', ""))  # no split, but blobs:test is asked for
    r = CliRunner().invoke(app, ["experiment", "run", str(p)])
    assert r.exit_code == 2 and "has no split" in r.output
    p.write_text(FAKE.replace("split = [0.5, 0.25, 0.25]", "split = [0.5, 0.5, 0.0]"))
    r = CliRunner().invoke(app, ["experiment", "run", str(p), "--dry-run"])
    assert r.exit_code == 2 and "blobs:test" in r.output and "is 0" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["experiment", "report", str(tmp_path / "fresh.toml")])
    assert r.exit_code == 2


def test_import_dataset_label_map_and_merged_reference(tmp_path):
    """A YOLO-layout export (class 'Wet-floor') mapped to water-leak, merged with a COCO set."""
    from PIL import Image

    from synspill import taxonomy
    from synspill.coco.dataset import load_coco

    yolo = tmp_path / "wet"
    for sub in ("images", "labels"):
        (yolo / "test" / sub).mkdir(parents=True)
    (yolo / "data.yaml").write_text("nc: 1\nnames: ['Wet-floor']\n")
    for i in range(4):
        Image.new("RGB", (80, 60), (100 + i, 90, 80)).save(yolo / "test" / "images" / f"f{i}.jpg")
        (yolo / "test" / "labels" / f"f{i}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    make_blobs(tmp_path / "blobs", 8, size=64)
    path = tmp_path / "s.toml"
    path.write_text("""
[datasets.wet]
kind = "import"
path = "wet/test"
format = "yolo"
map = { "Wet-floor" = "water-leak" }
[datasets.blobs]
kind = "coco"
path = "blobs/annotations.json"
split = [0.5, 0.5, 0.0]
[[methods]]
kind = "yolo"
train = "blobs:train+wet"
[evaluate]
on = ["wet"]
""")
    study = load_study(path)
    data = runner.prepare_datasets(study)
    wet = load_coco(data["wet"]["splits"]["all"], check_images=True)
    assert len(wet.images) == 4 and {a.category_id for a in wet.annotations} == {taxonomy.class_id("water-leak")}
    assert wet.annotations[0].bbox == pytest.approx([30.0, 15.0, 20.0, 30.0])
    assert set(data["wet"]["splits"]) == {"all"} and data["blobs"]["sizes"]["train"]["images"] == 4
    merged = load_coco(runner.resolve_ref(study, data, "blobs:train+wet"), check_images=True)
    assert len(merged.images) == 8 and len(merged.annotations) == 8
    # prepared once: a second call reuses the markers
    mtime = Path(data["wet"]["splits"]["all"]).stat().st_mtime_ns
    runner.prepare_datasets(study)
    assert Path(data["wet"]["splits"]["all"]).stat().st_mtime_ns == mtime
    with pytest.raises(Exception, match="has no images"):
        runner.resolve_ref(study, data, "blobs:test")


def test_shipped_studies_parse():
    smoke = load_study(ROOT / "experiments" / "cpu-smoke.toml")
    assert {c.kind for c in smoke.cells} >= {"yolo", "detr"}
    wet = load_study(ROOT / "experiments" / "wet-floor.toml")
    assert wet.datasets["wet_test"].options["path"].endswith("synspill/assets/wet-floor/test")
    assert Path(wet.datasets["wet_test"].options["path"]).is_dir()  # the shipped real photos
    assert {"wet_valid", "wet_test"} <= set(wet.eval_on) and wet.agnostic and wet.bootstrap == 1000
    assert {c.params.get("single_class") for c in wet.cells} == {None, "water-leak"}
    for c in wet.cells:  # trained on synthetic data only: never on the real photos
        assert str(c.params["train"]).startswith("synth:") and str(c.params.get("val", "synth:")).startswith("synth:")


# ---------------------------------------------------------------------------------------
# slow: the CPU smoke study for real (YOLO11n, RF-DETR Nano, tiny Qwen2.5-VL)
# ---------------------------------------------------------------------------------------
VLM_METHODS = """
[[methods]]
name = "zero-shot"
kind = "zero-shot"
models = ["tiny"]
max_pixels = 3136
max_new_tokens = 16
[[methods]]
name = "icl"
kind = "icl"
k = [2]
support = "synth:val"
models = ["tiny"]
max_pixels = 3136
support_max_pixels = 3136
max_new_tokens = 16
[[methods]]
name = "lora"
kind = "lora"
lora = ["v+l"]
train = "synth:train"
models = ["tiny"]
steps = 3
batch = 2
grad_accum = 1
lr = 1e-3
max_pixels = 3136
val_gen = 0
eval_every = 100
save_every = 100
max_new_tokens = 16
"""


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from tests.vlm.tiny import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen25vl"))


@pytest.mark.slow
def test_cpu_smoke_study_end_to_end_with_crash_and_resume(tmp_path, monkeypatch, tiny_vlm_dir):
    """Run 1 is interrupted inside YOLO training; run 2 resumes it (not from zero) and a crash
    after training fails the cell while the others finish; run 3 completes it without
    training again or redoing its finished prediction file."""
    import torch

    from synspill.detectors import detr, yolo

    torch.set_num_threads(1)
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    text = (ROOT / "experiments" / "cpu-smoke.toml").read_text()
    text = text.replace('out = "../runs/cpu-smoke"', 'out = "out"').replace('on = ["synth:test"]', 'on = ["synth:test", "synth:val"]')
    text = text.replace("[evaluate]", VLM_METHODS + "\n[evaluate]")
    text = text.replace("[datasets.synth]", f'[models]\ntiny = "{tiny_vlm_dir}"\n\n[datasets.synth]', 1)
    path = tmp_path / "smoke.toml"
    path.write_text(text)
    study = load_study(path)
    assert [c.id for c in study.cells] == ["yolo11__yolo11n", "rf-detr__nano", "zero-shot__tiny", "icl-k2__tiny", "lora-lorav+l__tiny"]

    def stop_in_epoch_2(task, done, total, info):
        if task.startswith("yolo11__yolo11n: train") and info.get("epoch") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_study(study, device="cpu", progress=stop_in_epoch_2)
    ydir = study.out / "cells" / "yolo11__yolo11n"
    assert (ydir / "run" / "weights" / "last.pt").is_file() and not (ydir / "run" / "run.json").exists()
    assert runner.cell_state(study, study.cells[0]).status == "partial"

    forces, real_yolo, real_predict = [], yolo.train, runner._predict
    monkeypatch.setattr(yolo, "train", lambda cfg, on_progress=None: forces.append(cfg.force) or real_yolo(cfg, on_progress))

    def crash_on_val(study_, cell, gt, out, *a, **k):
        if cell.id == "yolo11__yolo11n" and out.name == "synth-val.json":
            raise RuntimeError("simulated crash after training")
        return real_predict(study_, cell, gt, out, *a, **k)

    monkeypatch.setattr(runner, "_predict", crash_on_val)
    res = runner.run_study(study, device="cpu")
    assert forces == [False]  # resumed from last.pt, not started over
    assert res.failed == ["yolo11__yolo11n"] and set(res.ran) == {c.id for c in study.cells[1:]}
    from synspill.experiment.report import build_report

    doc = build_report(study)
    assert {c["id"]: c["status"] for c in doc["cells"]}["yolo11__yolo11n"] == "failed"
    assert "simulated crash after training" in (study.out / "report.md").read_text()
    weights = ydir / "run" / "weights" / "best.pt"
    kept = ydir / "preds" / "synth-test.json"
    w_mtime, p_mtime = weights.stat().st_mtime_ns, kept.stat().st_mtime_ns

    monkeypatch.setattr(runner, "_predict", real_predict)
    monkeypatch.setattr(yolo, "train", lambda *a, **k: pytest.fail("YOLO trained again"))
    monkeypatch.setattr(detr, "train", lambda *a, **k: pytest.fail("RF-DETR trained again"))
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert weights.stat().st_mtime_ns == w_mtime and kept.stat().st_mtime_ns == p_mtime
    assert (ydir / "preds" / "synth-val.json").is_file() and not (ydir / "failed.json").exists()
    rec = json.loads((ydir / "done.json").read_text())  # time of the interrupted attempts is kept
    assert rec["seconds"] > rec["seconds_last_attempt"] + 1.0
    doc = json.loads((study.out / "report.json").read_text())
    n_test = len(json.loads((study.out / "data" / "synth" / "test.json").read_text())["images"])
    # 12.5 % of 64 images; iterative stratification balances classes first, so +-1 image
    assert doc["eval_sets"]["synth:test"]["images"] == n_test and abs(n_test - 8) <= 1
    for c in doc["cells"]:
        assert c["status"] == "done", c
        for ref in ("synth:test", "synth:val"):
            m = c["metrics"][ref]
            assert 0.0 <= m["hit_rate"]["0.5"] <= 1.0 and set(m["hit_rate"]) == {"0.5", "0.6", "0.7", "0.8", "0.9"}
    md = (study.out / "report.md").read_text()
    for c in study.cells:
        assert f"`{c.id}`" in md
    assert "| Zero-shot |" in md and "| ICL-2 |" in md and "| LoRA-V+L |" in md and "rf-detr (nano)" in md
    assert (study.out / "fig3a_synth-test.png").is_file()
