"""Run a study: prepare its datasets once, then every cell (train -> predict), resumably.

Layout under the study's ``out`` folder::

    OUT/data/<dataset>/{train,val,test,all}.json   # prepared once (StageRunner markers)
    OUT/data/_merged/<ref>.json                    # "a:train+b:train" references
    OUT/cells/<cell_id>/cell.json                  # the cell's configuration (+ its hash)
    OUT/cells/<cell_id>/run/                       # training run (YOLO / RF-DETR / LoRA)
    OUT/cells/<cell_id>/preds/<eval-set>.json      # COCO results (+ .meta.json sidecar)
    OUT/cells/<cell_id>/done.json                  # written last, atomically: the cell finished
    OUT/cells/<cell_id>/failed.json                # the last attempt's error (removed on success)

*Resuming.* A cell with ``done.json`` (and the same configuration hash) is skipped. A cell
that stopped part-way keeps what it finished: a training run with ``run.json`` is reused,
an interrupted one resumes from its own checkpoint (YOLO ``weights/last.pt``, RF-DETR
``last.ckpt``, LoRA ``checkpoint/``), and a prediction file whose sidecar exists (the
sidecar is written after the results) is kept. A cell whose configuration changed (the TOML
was edited) is started over, as is every selected cell under ``force``.

*Failures.* An exception inside a cell (anything but ``KeyboardInterrupt``) is recorded in
``failed.json`` with a one-line message and the study goes on; the report shows it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synspill.errors import DatasetError, UsageError
from synspill.experiment.spec import Cell, DatasetSpec, Study
from synspill.io import write_json, write_text
from synspill.params import config_keys
from synspill.stages import StageRunner, config_hash

log = logging.getLogger(__name__)

#: Bumped when the way datasets or cells are produced changes (invalidates old markers).
FORMAT_VERSION = 1

#: ``(task, done, total, info)``: progress of the step running now (``total`` None: unknown);
#: ``info`` is what the step reports (a training epoch's ``epoch``, ``loss``, ``mAP50`` ...).
StepProgress = Callable[[str, int, int | None, dict[str, Any]], None]
#: ``(event, cell_id, info)`` with event in ``start``, ``done``, ``skipped``, ``failed``.
CellEvent = Callable[[str, str, dict[str, Any]], None]

#: Config fields a cell never takes from its ``[[methods]]`` table: the runner sets them.
RUNNER_SET = {"data", "out", "val", "model", "device", "seed", "force", "verbose"}
#: ``[[methods]]`` keys every kind has: what it is, its models, and the predict batch.
COMMON_METHOD_KEYS = {"name", "kind", "model", "models", "predict_batch"}
#: Images per generate call of VLM cells (k examples make long prompts).
VLM_PREDICT_BATCH = 1
#: Size of a ``kind = "synthetic"`` dataset without ``n`` / ``size``: small enough for a CPU study.
SYNTH_N, SYNTH_SIZE = 200, 512


def _trainable(cls: type) -> set[str]:
    return config_keys(cls) - RUNNER_SET


def method_keys(kind: str) -> set[str]:
    """Every key a ``[[methods]]`` table of this kind may have (derived from the configs it builds).

    Args:
        kind: ``yolo``, ``detr``, ``zero-shot``, ``icl`` or ``lora``.
    """
    from synspill.detectors.detr import DetrTrainConfig
    from synspill.detectors.yolo import YoloTrainConfig
    from synspill.vlm.icl import IclConfig
    from synspill.vlm.predictor import OPTION_KEYS
    from synspill.vlm.train import VlmTrainConfig

    vlm_predict = {"max_pixels", "quant", "dtype", "prompt", *OPTION_KEYS}
    keys = {
        "yolo": {"train", "val", "weights"} | _trainable(YoloTrainConfig),
        "detr": {"train", "val", "weights"} | _trainable(DetrTrainConfig),
        "lora": {"train", "val"} | _trainable(VlmTrainConfig) | vlm_predict,
        "zero-shot": vlm_predict,
        "icl": {"support"} | _trainable(IclConfig) | vlm_predict,
    }[kind]
    return COMMON_METHOD_KEYS | keys


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------
def data_root(study: Study) -> Path:
    return study.out / "data"


def _dataset_config(study: Study, spec: DatasetSpec) -> dict[str, Any]:
    return {"kind": spec.kind, "options": spec.options, "split": list(spec.split) if spec.split else None,
            "seed": study.seed, "v": FORMAT_VERSION}


def _label_map(spec: DatasetSpec) -> dict[str, str]:
    from synspill.coco.tools import parse_label_map

    m = spec.options.get("map")
    if m is None:
        return {}
    if isinstance(m, dict):
        pairs = [f"{k}={v}" for k, v in m.items()]
    elif isinstance(m, list) and all(isinstance(x, str) for x in m):
        pairs = list(m)
    else:
        raise UsageError(f"[datasets.{spec.name}] map = {m!r}; use a table like map = {{\"Wet-floor\" = \"water-leak\"}}")
    return parse_label_map(pairs)


def _synth_jobs(study: Study, spec: DatasetSpec, folder: Path, device: str) -> tuple[Any, Any]:
    """The scenes and inpaint jobs of a ``kind = "synthetic"`` dataset (keys checked by the spec)."""
    from synspill.synth.base import DiffusionOptions
    from synspill.synth.inpaint import InpaintJob
    from synspill.synth.scenes import ScenesJob
    from synspill.taxonomy import parse_classes

    o = dict(spec.options)
    where = f"{study.path}: [datasets.{spec.name}]"
    n, size = o.pop("n", SYNTH_N), o.pop("size", SYNTH_SIZE)
    if n < 3:
        raise UsageError(f"{where} n = {n}; a synthetic dataset needs at least 3 images to split")
    models = {k: o.pop(k, None) for k in ("scene_model", "inpaint_model", "style_refs")}
    common: dict[str, Any] = {k: o[k] for k in ("backend", "workers", "quality") if k in o}
    scene_diff = inpaint_diff = None
    if common.get("backend") == "sdxl":
        for key in ("scene_model", "inpaint_model"):
            if not models[key]:
                raise UsageError(f"{where} backend = \"sdxl\" needs {key} = \"/weights/...\" (SDXL base for scenes, "
                                 "SDXL-Turbo for inpainting; local folders or cached hub ids)")
        scene_diff = DiffusionOptions.from_params({"refs": str(models["style_refs"])} if models["style_refs"] else {}, where,
                                                  model=str(models["scene_model"]), device=device)
        inpaint_diff = DiffusionOptions.for_inpaint({}, where, model=str(models["inpaint_model"]), device=device)
    if isinstance(o.get("per_image"), int):
        o["per_image"] = (o["per_image"], o["per_image"])
    if o.get("classes") is not None:
        c = o["classes"]
        o["classes"] = tuple(parse_classes(c if isinstance(c, str) else ",".join(map(str, c))) or ()) or None
    scene_job = ScenesJob.from_params({**common, "n": n, "width": size, "height": size}, where,
                                           out=folder / "scenes", seed=study.seed, diffusion=scene_diff)
    inpaint_job = InpaintJob.from_params(o, where, scenes=folder / "scenes", out=folder / "dataset", propose=True,
                                              seed=study.seed, diffusion=inpaint_diff)
    return scene_job, inpaint_job


def _synthesise(study: Study, spec: DatasetSpec, folder: Path, device: str, progress: StepProgress | None) -> Path:
    from synspill.errors import OutputExists
    from synspill.synth.inpaint import run_inpaint
    from synspill.synth.scenes import run_scenes

    scene_job, inpaint_job = _synth_jobs(study, spec, folder, device)

    def cb(stage: str) -> tuple[Callable[[int, int], None], Callable[[int], None]]:
        state = {"done": 0, "total": 0}

        def on_start(prev: int, todo: int) -> None:
            state.update(done=0, total=todo)
            if progress:
                progress(f"{spec.name}: {stage}", 0, todo, {})

        def on_progress(k: int) -> None:
            state["done"] += k
            if progress:
                progress(f"{spec.name}: {stage}", state["done"], state["total"], {})

        return on_start, on_progress

    start, prog = cb("scenes")
    forced = False
    try:
        run_scenes(scene_job, on_progress=prog, on_start=start)
    except OutputExists:  # made earlier with other settings (the TOML changed): start over
        forced = True
        run_scenes(scene_job, force=True, on_progress=prog, on_start=start)
    start, prog = cb("inpaint")
    try:
        ann = run_inpaint(inpaint_job, force=forced, on_progress=prog, on_start=start)
    except OutputExists:
        ann = run_inpaint(inpaint_job, force=True, on_progress=prog, on_start=start)
    if ann is None:
        raise DatasetError(f"{folder / 'dataset'}: inpainting did not produce annotations.json")
    return Path(ann)


def _prepare_dataset(study: Study, spec: DatasetSpec, device: str, progress: StepProgress | None) -> dict[str, Any]:
    from synspill.coco.dataset import CocoDataset, load_coco, save_coco
    from synspill.coco.tools import check_split_sizes, merge, rebase, split

    folder = data_root(study) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    if spec.kind == "synthetic":
        ds: CocoDataset = load_coco(_synthesise(study, spec, folder, device, progress))
    elif spec.kind == "coco":
        if not Path(spec.options["path"]).exists():
            raise DatasetError(f"[datasets.{spec.name}] path = {spec.options['path']!r} does not exist; fix the path "
                               "(relative paths are resolved against the TOML's folder)")
        ds = load_coco(spec.options["path"], image_root=spec.options.get("images"), check_images=True)
        lm = _label_map(spec)
        if lm:
            ds = merge([ds], root=folder, label_map=lm)
    else:
        from synspill.coco.importers import import_annotations
        from synspill.params import given

        if not Path(spec.options["path"]).exists():
            raise DatasetError(f"[datasets.{spec.name}] path = {spec.options['path']!r} does not exist; fix the path "
                               "(relative paths are resolved against the TOML's folder)")
        if progress:
            progress(f"{spec.name}: import", 0, None, {})
        o = spec.options
        res = import_annotations([o["path"]], label_map=_label_map(spec), embed_dir=folder / "images",
                                 **given(fmt=o.get("format"), images=o.get("images"), strict=o.get("strict"),
                                         min_size=o.get("min_size")))
        ds = res.dataset
        write_json(folder / "import-report.json", res.report.to_dict(), indent=1)
    ds = rebase(ds, folder)
    parts = {"all": ds}
    if spec.split is not None:
        parts.update(split(ds, spec.split, seed=study.seed))
        check_split_sizes({k: v for k, v in parts.items() if k != "all"}, spec.split, len(ds.images),
                          f"[datasets.{spec.name}]", "split =")
    paths = {}
    for name, sub in parts.items():
        paths[name] = str(save_coco(rebase(sub, folder), folder / f"{name}.json"))
    sizes = {k: {"images": len(v.images), "boxes": len(v.annotations)} for k, v in parts.items()}
    return {"splits": paths, "sizes": sizes}


def prepare_datasets(study: Study, force: bool = False, device: str = "auto", progress: StepProgress | None = None,
                     names: set[str] | None = None, keep_going: bool = False) -> dict[str, dict[str, Any]]:
    """Prepare (or reuse) every dataset the study uses.

    Args:
        keep_going: Record a dataset that cannot be prepared as ``{"error": "..."}`` instead of
            raising, so that the cells not using it still run (theirs fail with that error).

    Returns:
        ``{dataset: {"splits": {split: coco path}, "sizes": {split: {images, boxes}}}}``.
    """
    runner = StageRunner(data_root(study), force=force)
    out: dict[str, dict[str, Any]] = {}
    def job(spec: DatasetSpec) -> Callable[[], dict[str, Any]]:
        return lambda: _prepare_dataset(study, spec, device, progress)

    for name, spec in study.datasets.items():
        if names is not None and name not in names:
            continue
        try:
            out[name], reused = runner.run(f"data-{name}", _dataset_config(study, spec), job(spec))
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if not keep_going:
                raise
            log.error("dataset %s cannot be prepared: %s", name, one_line(e))
            out[name] = {"error": one_line(e)}
            continue
        log.info("dataset %s: %s", name, "reused" if reused else "prepared")
    return out


def finished_datasets(study: Study) -> dict[str, dict[str, Any]]:
    """The datasets prepared earlier (no work); missing ones are left out."""
    runner = StageRunner(data_root(study))
    out = {}
    for name, spec in study.datasets.items():
        res = runner.done(f"data-{name}", _dataset_config(study, spec))
        if res is not None:
            out[name] = res
    return out


def check_refs(study: Study) -> None:
    """Refuse references to splits a dataset will not have, before anything runs.

    Raises:
        UsageError: ``name:test`` for a dataset without ``split = [...]``, or for a split whose
            fraction is 0 (names the reference, where it is used and the fix).
    """
    uses = [("[evaluate] on", ref) for ref in study.eval_on]
    for c in study.cells:
        uses += [(f"cell {c.id} {k}", str(c.params[k])) for k in ("train", "val", "support") if k in c.params]
    for where, ref in uses:
        cur = None
        for piece in ref.split("+"):
            name, _, sp = piece.partition(":")
            if name in study.datasets:
                cur = name
            elif not sp and cur is not None:
                name, sp = cur, piece
            spec = study.datasets.get(name)
            if spec is None or sp in ("", "all"):
                continue
            if spec.split is None:
                raise UsageError(f"{study.path}: {where} asks for {name}:{sp} but [datasets.{name}] has no split; "
                                 f"add split = [0.8, 0.1, 0.1] to it or refer to {name!r} (the whole dataset)")
            if spec.split[("train", "val", "test").index(sp)] == 0:
                raise UsageError(f"{study.path}: {where} asks for {name}:{sp}, whose fraction in [datasets.{name}] "
                                 f"split = {list(spec.split)} is 0; give it a share or refer to another split")


def ref_slug(ref: str) -> str:
    """A file-name-safe form of a dataset reference (``public:test`` -> ``public-test``)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", ref).strip("-")


def _split_path(study: Study, data: dict[str, dict[str, Any]], name: str, split_name: str) -> str:
    if name not in data:
        raise UsageError(f"{study.path}: dataset {name!r} is not prepared; run `synspill experiment run {study.path}` first")
    if "error" in data[name]:
        raise DatasetError(f"dataset {name!r} could not be prepared: {data[name]['error']}")
    splits = data[name]["splits"]
    if split_name not in splits:
        raise UsageError(f"{study.path}: {name}:{split_name} is asked for but [datasets.{name}] has no split; "
                         f"add split = [0.8, 0.1, 0.1] to it or refer to {name!r} (the whole dataset)")
    size = data[name]["sizes"].get(split_name, {})
    if size.get("images") == 0:
        raise DatasetError(f"{study.path}: {name}:{split_name} has no images (split {list(study.datasets[name].split or [])}); "
                           "give that split a non-zero fraction or refer to another split")
    return str(splits[split_name])


def resolve_ref(study: Study, data: dict[str, dict[str, Any]], ref: str) -> str:
    """The COCO file of a reference: ``name``, ``name:split``, ``name:train+val`` or ``a:train+b:train``.

    A reference to several parts is merged once into ``OUT/data/_merged/<ref>.json``.
    """
    from synspill.coco.dataset import load_coco, save_coco
    from synspill.coco.tools import merge

    parts: list[str] = []
    for piece in ref.split("+"):
        name, _, sp = piece.partition(":")
        if name in study.datasets:
            cur = name
            parts.append(_split_path(study, data, name, sp or "all"))
        elif not sp and parts and piece in ("train", "val", "test", "all"):  # "name:train+val"
            parts.append(_split_path(study, data, cur, piece))
        else:
            raise UsageError(f"{study.path}: reference {ref!r}: {piece!r} is not a dataset in [datasets]")
    if len(parts) == 1:
        return parts[0]
    dest = data_root(study) / "_merged" / f"{ref_slug(ref)}.json"
    conf = {"parts": parts, "datasets": _ref_datasets(study, [ref]), "v": FORMAT_VERSION}
    runner = StageRunner(data_root(study) / "_merged")
    res, _ = runner.run(f"merge-{ref_slug(ref)}", conf,
                        lambda: {"path": str(save_coco(merge([load_coco(p) for p in parts], root=dest.parent), dest))})
    return str(res["path"])


def _default_val(study: Study, data: dict[str, dict[str, Any]], train_ref: str) -> str | None:
    """The val split of the (first) training dataset when it has images; else None."""
    name, _, sp = train_ref.split("+")[0].partition(":")
    if sp not in ("train", ""):
        return None
    sizes = data.get(name, {}).get("sizes", {})
    if sizes.get("val", {}).get("images", 0) > 0:
        return resolve_ref(study, data, f"{name}:val")
    return None


# ---------------------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------------------
def cell_dir(study: Study, cell: Cell) -> Path:
    return study.out / "cells" / cell.id


def _ref_datasets(study: Study, refs: list[str]) -> dict[str, Any]:
    used = {piece.partition(":")[0] for ref in refs for piece in ref.split("+")}
    return {n: _dataset_config(study, study.datasets[n]) for n in sorted(used) if n in study.datasets}


def cell_config(study: Study, cell: Cell, with_eval: bool = True) -> dict[str, Any]:
    """What a cell's results depend on (its hash decides whether old work is reused).

    Args:
        with_eval: Include the evaluation sets. Without them it is the *training* configuration:
            when only ``[evaluate] on`` changes, the trained model and the finished prediction
            files are kept and only the new sets are predicted.
    """
    train_refs = [str(cell.params[k]) for k in ("train", "val", "support") if k in cell.params]
    conf = {"id": cell.id, "kind": cell.kind, "model": cell.model, "params": cell.params, "seed": study.seed,
            "v": FORMAT_VERSION, "datasets": _ref_datasets(study, train_refs)}
    if with_eval:
        conf["eval_on"] = {ref: _ref_datasets(study, [ref]) for ref in study.eval_on}
    return conf


@dataclass
class CellState:
    """Where one cell stands.

    Attributes:
        cell: The cell.
        status: ``done``, ``todo``, ``partial`` (started, will resume) or ``failed``.
        error: The last failure's one-line message.
        record: ``done.json`` contents when done.
    """

    cell: Cell
    status: str
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def cell_state(study: Study, cell: Cell) -> CellState:
    """Read a cell's markers (no work)."""
    d = cell_dir(study, cell)
    h = config_hash(cell_config(study, cell))
    done = _read_json(d / "done.json")
    if done and done.get("config_hash") == h:
        return CellState(cell, "done", record=done)
    failed = _read_json(d / "failed.json")
    if failed and failed.get("config_hash") == h:
        return CellState(cell, "failed", error=str(failed.get("error")), record=failed)
    started = _read_json(d / "cell.json")
    if started and started.get("config_hash") == config_hash(cell_config(study, cell, with_eval=False)):
        return CellState(cell, "partial")
    return CellState(cell, "todo")


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def select_cells(study: Study, only: str | None) -> list[Cell]:
    """The cells matching ``only`` (comma-separated globs over cell ids; None: all).

    Raises:
        UsageError: The pattern matches no cell (lists the ids).
    """
    if not only:
        return list(study.cells)
    pats = [p.strip() for p in only.split(",") if p.strip()]
    cells = [c for c in study.cells if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]
    if not cells:
        raise UsageError(f"--only {only!r} matches no cell of {study.path}; cells: {', '.join(c.id for c in study.cells)}")
    return cells


def one_line(e: BaseException) -> str:
    """``Type: message`` on one line (for failed.json and the report)."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@dataclass
class StudyResult:
    """What :func:`run_study` did."""

    states: list[CellState]
    ran: list[str]
    skipped: list[str]
    failed: list[str]
    seconds: float


def run_study(study: Study, device: str = "auto", only: str | None = None, force: bool = False,
              progress: StepProgress | None = None, on_cell: CellEvent | None = None) -> StudyResult:
    """Prepare the datasets, then run (or resume) every selected cell.

    Args:
        study: The parsed study.
        device: ``auto``, ``cpu``, ``cuda[:N]`` for training and prediction.
        only: Comma-separated globs over cell ids (None: every cell).
        force: Redo the selected cells (and re-prepare the datasets) from scratch.
        progress: Progress of the running step.
        on_cell: ``(event, cell_id, info)`` as cells start / finish / are skipped / fail.

    Returns:
        A :class:`StudyResult`; failed cells are recorded, not raised.
    """
    t0 = time.perf_counter()
    check_refs(study)
    cells = select_cells(study, only)
    study.out.mkdir(parents=True, exist_ok=True)
    write_text(study.out / "study.toml", study.path.read_text(encoding="utf-8"))
    data = prepare_datasets(study, force=force, device=device, progress=progress, keep_going=True)
    ran, skipped, failed = [], [], []
    for cell in cells:
        st = cell_state(study, cell)
        if st.status == "done" and not force:
            skipped.append(cell.id)
            if on_cell:
                on_cell("skipped", cell.id, st.record)
            continue
        if on_cell:
            on_cell("start", cell.id, {"status": st.status})
        try:
            rec = run_cell(study, cell, data, device=device, force=force, progress=progress)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failing cell must not stop the study
            log.debug("cell %s failed", cell.id, exc_info=True)
            d = cell_dir(study, cell)
            d.mkdir(parents=True, exist_ok=True)
            write_json(d / "failed.json", {"config_hash": config_hash(cell_config(study, cell)), "error": one_line(e),
                                           "traceback": traceback.format_exc(), "failed_at": time.time()}, indent=2)
            failed.append(cell.id)
            if on_cell:
                on_cell("failed", cell.id, {"error": one_line(e)})
            continue
        ran.append(cell.id)
        if on_cell:
            on_cell("done", cell.id, rec)
    states = [cell_state(study, c) for c in study.cells]
    return StudyResult(states, ran, skipped, failed, time.perf_counter() - t0)


def run_cell(study: Study, cell: Cell, data: dict[str, dict[str, Any]], device: str = "auto", force: bool = False,
             progress: StepProgress | None = None) -> dict[str, Any]:
    """Train (if the method trains), predict on every evaluation set, write ``done.json``.

    Returns:
        The ``done.json`` record.
    """
    d = cell_dir(study, cell)
    h = config_hash(cell_config(study, cell))
    base = cell_config(study, cell, with_eval=False)
    hb = config_hash(base)
    started = _read_json(d / "cell.json")
    if d.exists() and (force or not started or started.get("config_hash") != hb):
        shutil.rmtree(d)  # another training configuration (or --force): start this cell over
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "cell.json").exists():
        write_json(d / "cell.json", {"config_hash": hb, "config": base}, indent=2)
    (d / "done.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    earlier = float((_read_json(d / "attempts.json") or {}).get("seconds", 0.0))
    try:
        train = _TRAINERS[cell.kind](study, cell, data, d / "run", device, progress) if cell.kind in _TRAINERS else {}
        preds = {}
        for ref in study.eval_on:
            gt = resolve_ref(study, data, ref)
            ref_data = _ref_datasets(study, [ref])
            eh = config_hash([ref_data, "agnostic-nms"] if study.agnostic else ref_data)
            preds[ref] = str(_predict(study, cell, gt, d / "preds" / f"{ref_slug(ref)}.json", eh, train, data, device, progress))
    except BaseException:  # keep the time spent, so the report shows what the cell cost in all
        write_json(d / "attempts.json", {"seconds": round(earlier + time.perf_counter() - t0, 2)})
        raise
    rec = {"config_hash": h, "id": cell.id, "kind": cell.kind, "model": cell.model, "model_label": cell.model_label,
           "train": train, "preds": preds, "seconds": round(earlier + time.perf_counter() - t0, 2),
           "seconds_last_attempt": round(time.perf_counter() - t0, 2), "finished_at": time.time()}
    (d / "failed.json").unlink(missing_ok=True)
    write_json(d / "done.json", rec, indent=2)  # last, atomically: the cell is finished
    return rec


# ---- training --------------------------------------------------------------------------
def local_path(study: Study, value: str) -> str:
    """``value`` resolved against the TOML's folder when that names an existing file/folder; else unchanged.

    Lets ``weights = "weights/yolo11s.pt"`` and ``[models] "7B" = "../weights/qwen7b"`` be
    written relative to the study file, while hub ids (``Qwen/...``) pass through.
    """
    p = Path(value)
    if p.is_absolute():
        return value
    cand = study.path.parent / p
    return str(cand.resolve()) if cand.exists() else value


def _reuse_run(run_dir: Path) -> dict[str, Any] | None:
    rec = _read_json(run_dir / "run.json")
    if rec is not None:
        log.info("%s: finished training run found, reusing it", run_dir)
    return rec


def _train_progress(progress: StepProgress | None, task: str) -> Callable[..., None]:
    def cb(done: int, total: int, info: dict[str, Any] | None = None) -> None:
        if progress:
            progress(task, done, total or None, info or {})
    return cb


def _where(study: Study, cell: Cell) -> str:
    return f"{study.path}: [[methods]] {cell.method} (cell {cell.id})"


def _params_for(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """The keys of a cell's ``params`` that are fields of ``cls`` (the spec rejected all others)."""
    return {k: v for k, v in params.items() if k in _trainable(cls)}


def _train_data(study: Study, cell: Cell, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    p = cell.params
    train = resolve_ref(study, data, str(p["train"]))
    val = resolve_ref(study, data, str(p["val"])) if p.get("val") else _default_val(study, data, str(p["train"]))
    return {"data": train, "val": val}


def _train_yolo(study: Study, cell: Cell, data: dict[str, dict[str, Any]], run_dir: Path, device: str,
                progress: StepProgress | None) -> dict[str, Any]:
    from synspill.detectors import yolo

    p = cell.params
    rec = _reuse_run(run_dir)
    if rec is None:
        # a study trains for all its epochs unless it sets patience
        params = {"patience": p.get("epochs", yolo.YoloTrainConfig.epochs), **_params_for(yolo.YoloTrainConfig, p)}
        fresh = not (run_dir / "weights" / "last.pt").exists()  # else: ultralytics resumes from last.pt
        cfg = yolo.YoloTrainConfig.from_params(params, _where(study, cell), out=str(run_dir), device=device, seed=study.seed,
                                               force=fresh, model=local_path(study, str(p.get("weights") or cell.model)),
                                               **_train_data(study, cell, data))
        rec = yolo.train(cfg, on_progress=_train_progress(progress, f"{cell.id}: train"))
    return {"run_dir": str(run_dir), "metrics": rec.get("metrics", {}), "imgsz": rec.get("imgsz")}


def _train_detr(study: Study, cell: Cell, data: dict[str, dict[str, Any]], run_dir: Path, device: str,
                progress: StepProgress | None) -> dict[str, Any]:
    from synspill.detectors import detr

    p = cell.params
    rec = _reuse_run(run_dir)
    if rec is None:
        fresh = not (run_dir / "last.ckpt").exists()  # else: rfdetr resumes from last.ckpt
        cfg = detr.DetrTrainConfig.from_params(_params_for(detr.DetrTrainConfig, p), _where(study, cell), out=str(run_dir),
                                               device=device, seed=study.seed, force=fresh,
                                               model=local_path(study, str(p.get("weights") or cell.model)),
                                               **_train_data(study, cell, data))
        rec = detr.train(cfg, on_progress=_train_progress(progress, f"{cell.id}: train"))
    return {"run_dir": str(run_dir), "metrics": rec.get("metrics", {})}


def _train_lora(study: Study, cell: Cell, data: dict[str, dict[str, Any]], run_dir: Path, device: str,
                progress: StepProgress | None) -> dict[str, Any]:
    from synspill.vlm import train as vtrain

    if _reuse_run(run_dir) is None:
        cfg = vtrain.VlmTrainConfig.from_params(_params_for(vtrain.VlmTrainConfig, cell.params), _where(study, cell),
                                                model=local_path(study, cell.model), out=str(run_dir), device=device,
                                                seed=study.seed, **_train_data(study, cell, data))
        vtrain.train(cfg, on_step=_train_progress(progress, f"{cell.id}: train"))  # resumes from OUT/checkpoint
    return {"run_dir": str(run_dir)}


_TRAINERS = {"yolo": _train_yolo, "detr": _train_detr, "lora": _train_lora}


# ---- prediction ------------------------------------------------------------------------
def _finished_preds(path: Path, eval_hash: str) -> bool:
    """True when ``path`` and its sidecar exist and were made for this evaluation set."""
    from synspill.detections import find_sidecar

    side = find_sidecar(path) if path.is_file() else None
    meta = _read_json(side) if side else None
    return meta is not None and meta.get("eval_hash") == eval_hash


def _predictor_config(study: Study, cell: Cell, train: dict[str, Any], device: str) -> Any:
    """The :class:`~synspill.models.PredictorConfig` of a cell's predictions."""
    from synspill.models import PredictorConfig
    from synspill.vlm.predictor import OPTION_KEYS

    p = cell.params
    where = _where(study, cell)
    if cell.kind in ("yolo", "detr"):
        batch = {"batch": p["predict_batch"]} if "predict_batch" in p else {}
        imgsz = {"imgsz": train["imgsz"]} if cell.kind == "yolo" and train.get("imgsz") else {}
        # class-agnostic studies suppress overlapping boxes across classes too (one box per spill)
        opts = {"agnostic_nms": True} if study.agnostic and cell.kind == "yolo" else {}
        return PredictorConfig.from_params({**batch, **imgsz}, where, model=train["run_dir"], backend=cell.kind, device=device,
                                           options=opts)
    model = train["run_dir"] if cell.kind == "lora" else local_path(study, cell.model)
    params: dict[str, Any] = {"batch": p.get("predict_batch", VLM_PREDICT_BATCH),
                              **{k: p[k] for k in ("max_pixels", "quant", "dtype", "prompt") if k in p}}
    return PredictorConfig.from_params(params, where, model=model, backend="vlm", device=device, conf=0.0,
                                       options={k: p[k] for k in OPTION_KEYS if k in p})


def _predict(study: Study, cell: Cell, gt: str, out: Path, eval_hash: str, train: dict[str, Any],
             data: dict[str, dict[str, Any]], device: str, progress: StepProgress | None) -> Path:
    """Write (or keep) the cell's COCO results on one evaluation set (``eval_hash`` goes into the sidecar)."""
    if _finished_preds(out, eval_hash):
        log.info("%s: finished predictions found, keeping them", out)
        return out
    from synspill.coco.dataset import load_coco

    n = len(load_coco(gt).images)
    task = f"{cell.id}: predict {out.stem}"
    done = [0]

    def tick(k: int = 1) -> None:
        done[0] += k
        if progress:
            progress(task, done[0], n, {})

    out.parent.mkdir(parents=True, exist_ok=True)
    pcfg = _predictor_config(study, cell, train, device)
    meta = {"cell": cell.id, "eval_hash": eval_hash}
    if cell.kind == "icl":
        from synspill.vlm.icl import IclConfig, icl_to_results

        icfg = IclConfig.from_params(_params_for(IclConfig, cell.params), _where(study, cell), seed=study.seed)
        support = resolve_ref(study, data, str(cell.params["support"]))
        icl_to_results(pcfg, support, gt, out, icfg, force=True, extra_meta=meta, on_item=tick)
        return out
    from synspill.inference import predict_files

    predict_files(pcfg, gt, out, force=True, extra_meta={**meta, "method": cell.kind}, on_item=lambda *_: tick())
    return out


# ---------------------------------------------------------------------------------------
# dry run
# ---------------------------------------------------------------------------------------
def plan(study: Study, only: str | None = None) -> list[CellState]:
    """The selected cells with their status, without running anything (references are checked)."""
    check_refs(study)
    return [cell_state(study, c) for c in select_cells(study, only)]
