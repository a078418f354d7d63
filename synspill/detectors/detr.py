"""RF-DETR backend (rfdetr): offline fine-tuning from COCO and batched inference.

Self-contained: everything RF-DETR-specific lives in this file. Training exports the COCO
data once to rfdetr's Roboflow-style layout (:func:`synspill.coco.export.export_rfdetr`,
cached by content) and runs rfdetr's own training loop (PyTorch Lightning) into a fresh
run folder::

    RUN_DIR/
      checkpoint_best_total.pth         best checkpoint (rfdetr; reload with rfdetr.from_checkpoint)
      checkpoint_best_ema.pth, last.ckpt ... rfdetr's other checkpoints (last.ckpt resumes)
      metrics.csv, results.png          per-epoch losses and validation mAP, and their plot
      train.log                         rfdetr's own console output
      run.json                          {"backend": "detr", "weights": "checkpoint_best_total.pth", ...}
      .synspill-run.json                the job's settings, from its start (resume / clean restart)

Offline: ``RF_HOME`` defaults to ``<synspill cache>/rfdetr`` (where rfdetr looks for its
published checkpoints, e.g. ``rf-detr-nano.pth``), ``HF_HUB_OFFLINE=1``; an architecture name
builds the model with ``pretrain_weights=None`` (random init) instead of downloading.
RF-DETR Base is the exception: with patch size 14 it initialises its backbone from
Hugging Face ``facebook/dinov2-small``, which must then be in the local cache.

rfdetr predicts a 0-based ``class_id`` into ``model.class_names``; synspill's export makes
those the eight taxonomy names in order, so the taxonomy id is ``class_id + 1``
(:func:`synspill.coco.export.rfdetr_class_to_taxonomy`, by name).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from synspill import taxonomy
from synspill.coco.export import cache_dir, export_rfdetr, rfdetr_class_to_taxonomy, training_splits
from synspill.detections import Detections
from synspill.envinfo import versions
from synspill.errors import ModelNotFound, OutputExists, UsageError
from synspill.models import PredictorConfig, read_run
from synspill.params import FromParams
from synspill.runtime import default_workers, is_main_process, quiet_logger, world_size

log = logging.getLogger(__name__)

#: Variant name -> (rfdetr class name, published checkpoint file name).
VARIANTS: dict[str, tuple[str, str]] = {
    "nano": ("RFDETRNano", "rf-detr-nano.pth"),
    "small": ("RFDETRSmall", "rf-detr-small.pth"),
    "medium": ("RFDETRMedium", "rf-detr-medium.pth"),
    "base": ("RFDETRBase", "rf-detr-base.pth"),
    "large": ("RFDETRLarge", "rf-detr-large-2026.pth"),
}
BEST = "checkpoint_best_total.pth"
ProgressFn = Callable[[int, int, dict[str, Any]], None]
#: Settings that may differ when an unfinished run folder is continued (the rest must match its marker).
_RESUMABLE = ("out", "force", "verbose", "device", "workers")
_NAME_RE = re.compile(r"^(?:rf-?detr[-_]?)?(nano|small|medium|base|large)$", re.IGNORECASE)


def configure_offline() -> Path:
    """Keep rfdetr and Hugging Face offline; returns rfdetr's checkpoint folder (``RF_HOME``)."""
    os.environ.setdefault("RF_HOME", str(cache_dir() / "rfdetr"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    return Path(os.environ["RF_HOME"])


# ---- model spec ----------------------------------------------------------------------------
def resolve_model(spec: str, variant: str | None = None) -> tuple[str, str | None]:
    """Turn ``--model`` into ``(variant, checkpoint or None)``.

    Args:
        spec: An architecture (``nano``, ``small``, ``medium``, ``base``, ``large``, also as
            ``rfdetr-nano`` / ``RFDETRNano``) to train from random init, or a local ``.pth``
            checkpoint to fine-tune (a published rfdetr checkpoint or a synspill run's).
        variant: The architecture of a ``.pth`` whose file name does not say it.

    Raises:
        ModelNotFound: A ``.pth`` that is not on disk; the message says where to put it.
        UsageError: Neither a checkpoint nor a known architecture.
    """
    m = _NAME_RE.match(spec.replace("RFDETR", "rfdetr-").replace("--", "-"))
    if m and not spec.endswith(".pth"):
        return m.group(1).lower(), None
    p = Path(spec).expanduser()
    if p.suffix in (".pth", ".pt", ".ckpt"):
        if not p.is_file():
            home = configure_offline()
            cached = home / p.name
            if len(p.parts) == 1 and cached.is_file():
                p = cached
            else:
                raise ModelNotFound(
                    f"--model {spec!r}: checkpoint not found; synspill never downloads at run time. Put the file at "
                    f"{cached} (rfdetr's RF_HOME) or pass its path; to train from random init pass an architecture "
                    f"({', '.join(VARIANTS)})"
                )
        v = variant or _variant_from_name(p.name) or _variant_from_checkpoint(p)
        if v is None:
            raise UsageError(f"--model {spec!r}: cannot tell which RF-DETR size this checkpoint is; pass --variant nano|small|medium|base|large")
        return v, str(p)
    raise UsageError(f"--model {spec!r} is neither an RF-DETR size ({', '.join(VARIANTS)}) nor a .pth checkpoint")


def _variant_from_name(name: str) -> str | None:
    for v in VARIANTS:
        if re.search(rf"(^|[-_]){v}([-_.]|$)", name.lower()):
            return v
    return None


def _variant_from_checkpoint(path: Path) -> str | None:
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a corrupt or foreign file: say so rather than guessing
        raise ModelNotFound(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    name = str(ck.get("model_name") or "") if isinstance(ck, dict) else ""
    for v, (cls, _) in VARIANTS.items():
        if cls.lower() == name.lower():
            return v
    return None


def _model_class(variant: str) -> Any:
    with warnings.catch_warnings():  # import-time deprecation chatter of its dependencies
        warnings.simplefilter("ignore")
        import rfdetr

    return getattr(rfdetr, VARIANTS[variant][0])


def _split_options(variant: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split extra options into model-config and train-config keyword arguments (checked by name)."""
    model_cls = _model_class(variant)
    from rfdetr.config import TrainConfig

    model_fields = set(model_cls._model_config_class.model_fields)
    train_fields = set(TrainConfig.model_fields)
    reserved = {"dataset_dir", "output_dir", "epochs", "batch_size", "grad_accum_steps", "resolution", "device",
                "pretrain_weights", "resume", "seed", "early_stopping", "early_stopping_patience"}
    mk, tk = {}, {}
    for k, v in options.items():
        if k in reserved:
            raise UsageError(f"option {k!r} is set by synspill's own flags; use those instead")
        if k in model_fields:
            mk[k] = v
        elif k in train_fields:
            tk[k] = v
        else:
            raise UsageError(f"option {k!r} is neither an RF-DETR model nor a training setting (see rfdetr.config.TrainConfig)")
    return mk, tk


# ---- training --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetrTrainConfig(FromParams):
    """One RF-DETR fine-tuning job (saved in ``run.json``).

    Attributes:
        data: Training COCO file, or a dataset folder holding ``annotations.json``.
        out: The run folder (fresh per run; an interrupted one is resumed).
        val: Validation COCO; None splits ``val_fraction`` off ``data`` (seeded).
        model: Architecture (``nano`` ... ``large``: random init) or a local ``.pth`` to fine-tune.
        variant: Architecture of a ``.pth`` whose name does not say it.
        epochs: Maximum epochs.
        resolution: Square input size (multiple of 32 for Nano-Large, 56 for Base); None: the variant's default.
        batch: Images per step per device.
        grad_accum: Gradient accumulation steps (effective batch = batch x grad_accum x devices).
        lr: Learning rate of the decoder (the encoder gets 1.5x, rfdetr's ratio).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps`` (several GPUs: launch with torchrun).
        seed: Random seed.
        patience: Early stopping after this many epochs without improvement (0: off).
        val_fraction: Share held out when ``val`` is None.
        workers: Data-loader worker processes per training process (default: the usable CPU cores
            shared among the torchrun processes, up to 8; too few starve a GPU).
        force: Replace an existing run in ``out``.
        verbose: Show rfdetr's own output instead of writing it to ``train.log``.
        options: Extra rfdetr model-config or train-config settings, checked by name
            (e.g. ``{"num_queries": 100, "use_ema": False}``).
        negatives: COCO files or folders (e.g. from ``synspill events false-alarm``) whose
            images are added to the training split as background images (no boxes).
    """

    data: str
    out: str
    val: str | None = None
    model: str = "nano"
    variant: str | None = None
    epochs: int = 50
    resolution: int | None = None
    batch: int = 4
    grad_accum: int = 4
    lr: float = 1e-4
    device: str = "auto"
    seed: int = 0
    patience: int = 10
    val_fraction: float = 0.2
    workers: int = field(default_factory=default_workers)
    force: bool = False
    verbose: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    negatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs} must be at least 1")
        if self.resolution is not None and (self.resolution < 32 or self.resolution % 32 and self.resolution % 56):
            raise UsageError(f"--resolution {self.resolution} must be a multiple of 32 (Nano-Large) or 56 (Base)")
        if self.batch < 1 or self.grad_accum < 1:
            raise UsageError(f"--batch-size {self.batch} and --grad-accum {self.grad_accum} must be at least 1")
        if self.patience < 0:
            raise UsageError(f"--patience {self.patience} must be 0 or more")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be 0 or more")
        if self.lr <= 0:
            raise UsageError(f"--lr {self.lr} must be positive")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"validation fraction {self.val_fraction} must be between 0 and 1")
        if self.variant is not None and self.variant not in VARIANTS:
            raise UsageError(f"--variant {self.variant!r} is unknown; use {', '.join(VARIANTS)}")


def train(cfg: DetrTrainConfig, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Fine-tune (or train from random init) an RF-DETR detector on COCO data; returns the run record.

    A folder with rfdetr's ``last.ckpt`` but no ``run.json`` is an interrupted run and is
    resumed from it; one that this job started (its marker, :mod:`synspill.runfolder`) but
    that has no checkpoint yet starts again cleanly; any other non-empty folder, or other
    settings than the marker's, need ``force`` (rfdetr would silently keep an old best
    checkpoint in a reused folder).

    Args:
        cfg: The job.
        on_progress: Called as ``on_progress(done_batches, total_batches, info)`` after every
            batch; ``info`` holds ``epoch`` and, after validation, ``mAP50``/``mAP50-95``.

    Returns:
        The ``run.json`` contents (also written to ``cfg.out/run.json``).
    """
    from synspill import runfolder
    from synspill.runtime import apply_threads, resolve_device, seed_everything

    t0 = time.time()
    apply_threads()
    out = Path(cfg.out).absolute()
    resume: Path | None = None
    main = is_main_process()
    settings = {**asdict(cfg), "data": str(Path(cfg.data).absolute()), "val": str(Path(cfg.val).absolute()) if cfg.val else None}
    restart = False
    if not main:  # other DDP ranks (torchrun): rank 0 owns the folder checks and run.json
        resume = out / "last.ckpt" if (out / "last.ckpt").exists() and not cfg.force else None
    elif not cfg.force:
        marker = runfolder.read_marker(out)
        if (out / "run.json").exists():
            raise OutputExists(f"{out} already holds a finished run (run.json); pass --force to replace it or choose another --out")
        if marker is not None and (diff := runfolder.changes(marker, "detr", settings, _RESUMABLE)):
            raise OutputExists(f"{out} holds an unfinished RF-DETR run with other settings ({'; '.join(diff[:3])}); run with "
                               "the same settings to continue it, pass --force to start over, or choose another --out")
        if (out / "last.ckpt").exists():
            resume = out / "last.ckpt"
        elif marker is not None:  # ours, stopped before its first checkpoint: nothing to keep
            log.info("%s was stopped before its first checkpoint; starting it again", out)
            restart = True
        elif out.exists() and any(out.iterdir()):
            raise OutputExists(f"{out} exists and is not empty; rfdetr needs a fresh folder per run: choose another --out or pass --force")
    wipe = main and (cfg.force or restart) and out.exists()  # done once the inputs are known to be good

    configure_offline()
    variant, ckpt = resolve_model(cfg.model, cfg.variant)
    train_ds, val_ds, val_src = training_splits(cfg.data, cfg.val, cfg.val_fraction, cfg.seed, cfg.negatives)
    export = export_rfdetr({"train": train_ds, "val": val_ds}, sources={"train": str(cfg.data), "val": val_src})
    device = resolve_device(cfg.device)
    if device.startswith("cuda") and (cfg.device.strip().lower() == "cuda" or world_size() > 1):
        device = "cuda"  # no index: Lightning uses every visible GPU (one per torchrun process)
    if variant == "base" and ckpt is None:
        _check_dinov2()
    if wipe:
        shutil.rmtree(out)
    if main:
        runfolder.write_marker(out, "detr", settings)
    log.info("RF-DETR data: %s (%s)", export.root, "cached" if export.cached else f"new export, {export.link_mode}")

    model_kw, train_kw = _split_options(variant, cfg.options)
    seed_everything(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    log.info("%s", f"RF-DETR {variant}: fine-tuning {ckpt}" if ckpt else f"RF-DETR {variant}: training from random init (no checkpoint)")
    with _quiet(out / "train.log", cfg.verbose):
        model = _model_class(variant)(pretrain_weights=ckpt, device=device, **model_kw)
        resolution = cfg.resolution or model.model_config.resolution
        kwargs = dict(
            dataset_dir=str(export.root), output_dir=str(out), epochs=cfg.epochs, batch_size=cfg.batch,
            grad_accum_steps=cfg.grad_accum, resolution=resolution, device=device, lr=cfg.lr, lr_encoder=cfg.lr * 1.5,
            seed=cfg.seed, num_workers=cfg.workers, early_stopping=cfg.patience > 0,
            early_stopping_patience=max(cfg.patience, 1), tensorboard=False, progress_bar=None, run_test=False,
            eval_backend="faster_coco_eval", class_names=list(taxonomy.NAMES),
        )
        kwargs.update(train_kw)
        if resume is not None:
            kwargs["resume"] = str(resume)
        with _progress_hook(on_progress):
            model.train(**kwargs)
    best = out / BEST
    if not best.exists() and main:
        raise ModelNotFound(f"{out}: rfdetr finished without writing {BEST}; see {out / 'train.log'}")
    metrics = _metrics(out / "metrics.csv")
    if main:
        _plot_curves(out / "metrics.csv", out / "results.png")
    record = {
        "backend": "detr",
        "weights": BEST,
        "variant": variant,
        "resolution": int(resolution),
        "imgsz": int(resolution),
        "classes": list(taxonomy.NAMES),
        "class_names": list(getattr(model.model, "class_names", None) or taxonomy.NAMES),
        "from_scratch": ckpt is None,
        "model_source": ckpt or f"RF-DETR {variant} (random init)",
        "config": {**asdict(cfg), "data": str(Path(cfg.data).absolute()), "out": str(out),
                   "val": str(Path(cfg.val).absolute()) if cfg.val else None},
        "metrics": metrics,
        "data": {"export": str(export.root), "counts": export.counts, "boxes": export.boxes, "train": str(cfg.data), "val": val_src},
        "resumed": resume is not None,
        "time_s": round(time.time() - t0, 1),
        "versions": versions(("synspill", "rfdetr", "torch", "pytorch_lightning")),
    }
    if main:
        from synspill.io import write_json

        write_json(out / "run.json", record, indent=2)
    return record


def _check_dinov2() -> None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache("facebook/dinov2-small", "config.json")
    except Exception:  # an unreadable cache counts as missing
        hit = None
    if not isinstance(hit, str):
        raise ModelNotFound(
            "RF-DETR base from random init loads its backbone from Hugging Face 'facebook/dinov2-small', which is not in "
            "the local cache; run `huggingface-cli download facebook/dinov2-small` once, pass a local rf-detr-base.pth "
            "to fine-tune, or use --model nano/small/medium/large (they start offline)"
        )


@contextlib.contextmanager
def _quiet(logfile: Path, verbose: bool) -> Iterator[None]:
    """Send rfdetr/Lightning console output (tables, tips, warnings) to ``logfile`` unless ``verbose``.

    stdout is always kept clean (it is for data): in verbose mode the output goes to stderr.
    """
    with open(logfile, "a", encoding="utf-8") as f, warnings.catch_warnings():
        if not verbose:
            def to_log(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                       file: TextIO | None = None, line: str | None = None) -> None:
                f.write(f"{filename}:{lineno}: {category.__name__}: {message}\n")

            warnings.showwarning = to_log
        import pytorch_lightning  # noqa: F401  (create the loggers now, to redirect them)
        import rfdetr  # noqa: F401

        prefixes = ("pytorch_lightning", "lightning", "lightning_fabric", "rfdetr", "rf-detr")
        names = {n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes} | set(prefixes)
        handler = logging.StreamHandler(f if not verbose else sys.stderr)
        saved = {}
        for n in names:
            lg = logging.getLogger(n)
            saved[n] = (lg.handlers[:], lg.propagate)
            lg.handlers[:] = [handler] if lg.handlers or n in prefixes else []
            if n in prefixes:
                lg.propagate = False
        try:
            with contextlib.redirect_stdout(sys.stderr if verbose else f):
                yield
        finally:
            for n, (hs, prop) in saved.items():
                logging.getLogger(n).handlers[:] = hs
                logging.getLogger(n).propagate = prop


@contextlib.contextmanager
def _progress_hook(on_progress: ProgressFn | None) -> Iterator[None]:
    """Add a Lightning callback to the trainer rfdetr builds, for per-batch progress."""
    if on_progress is None:
        yield
        return
    import pytorch_lightning as pl
    import rfdetr.training as rt

    report: ProgressFn = on_progress

    class _Progress(pl.Callback):
        def __init__(self) -> None:
            self.done = 0
            self.info: dict[str, Any] = {}

        def _total(self, trainer: Any) -> int:
            nb = trainer.num_training_batches
            return int(nb * trainer.max_epochs) if nb and nb != float("inf") else 0

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.done += 1
            report(self.done, self._total(trainer), {"epoch": trainer.current_epoch + 1, **self.info})

        def on_validation_end(self, trainer: Any, *args: Any) -> None:
            m = trainer.callback_metrics
            for key, name in (("val/mAP_50", "mAP50"), ("val/mAP_50_95", "mAP50-95")):
                if key in m:
                    self.info[name] = round(float(m[key]), 4)
            report(self.done, self._total(trainer), {"epoch": trainer.current_epoch + 1, **self.info})

    original = rt.build_trainer

    def build_trainer(*args: Any, **kwargs: Any) -> Any:
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(_Progress())  # type: ignore[attr-defined]
        return trainer

    rt.build_trainer = build_trainer
    try:
        yield
    finally:
        rt.build_trainer = original


def _metrics(path: Path) -> dict[str, Any]:
    """Best validation mAP over epochs (regular or EMA weights, as rfdetr's best-total checkpoint picks)."""
    rows = _read_csv(path)
    evals = []
    for r in rows:
        for prefix in ("val/", "val/ema_"):
            v = r.get(f"{prefix}mAP_50_95")
            if v not in (None, ""):
                evals.append((float(v), float(r.get(f"{prefix}mAP_50") or 0), int(float(r["epoch"])) + 1, prefix))
    out: dict[str, Any] = {"epochs_run": len({r["epoch"] for r in rows if r.get("epoch") not in (None, "")})}
    if evals:
        m95, m50, ep, prefix = max(evals)
        out.update({"mAP50": round(m50, 5), "mAP50-95": round(m95, 5), "best_epoch": ep, "best_weights": "ema" if "ema" in prefix else "regular"})
        last = [r for r in rows if r.get("val/mAP_50") not in (None, "")]
        if last:
            out["last_mAP50"] = round(float(last[-1]["val/mAP_50"]), 5)
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _plot_curves(csv_path: Path, png: Path) -> None:
    """Plot training loss and validation mAP per epoch (rfdetr writes only the CSV)."""
    rows = _read_csv(csv_path)
    loss = [(int(r["epoch"]) + 1, float(r["train/loss"])) for r in rows if r.get("train/loss")]
    m50 = [(int(r["epoch"]) + 1, float(r["val/mAP_50"])) for r in rows if r.get("val/mAP_50")]
    m95 = [(int(r["epoch"]) + 1, float(r["val/mAP_50_95"])) for r in rows if r.get("val/mAP_50_95")]
    if not (loss or m50):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if loss:
        a.plot(*zip(*loss, strict=True), marker="o")
    a.set(title="train loss", xlabel="epoch")
    for pts, lab in ((m50, "mAP50"), (m95, "mAP50-95")):
        if pts:
            b.plot(*zip(*pts, strict=True), marker="o", label=lab)
    b.set(title="validation", xlabel="epoch", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)


# ---- inference ------------------------------------------------------------------------------
def resolve_weights(model: str) -> tuple[Path, dict[str, Any] | None]:
    """Find the checkpoint of a run folder or a ``.pth`` path; returns ``(checkpoint, run.json or None)``."""
    p = Path(model).expanduser()
    if p.is_dir():
        run = read_run(p)
        if run is None or run.get("backend") != "detr":
            raise ModelNotFound(f"{p}: not an RF-DETR run folder (no run.json with backend 'detr'); pass the run folder of `synspill finetune detr` or a .pth file")
        w = Path(run["_dir"]) / run["weights"]
        if not w.is_file():
            raise ModelNotFound(f"{p}: run.json names weights {run['weights']!r} but {w} is missing; re-run training or pass a .pth file")
        return w, run
    if p.is_file():
        run = read_run(p)
        return p, run if run and run.get("backend") == "detr" else None
    resolve_model(model)  # raises ModelNotFound with where-to-put-it for .pth names
    raise ModelNotFound(f"{model!r}: inference needs a trained checkpoint (a .pth file or a run folder), not an architecture name")


class DetrPredictor:
    """Batched RF-DETR inference returning :class:`~synspill.detections.Detections`.

    Attributes:
        name: ``detr:<checkpoint>``.
        index_to_id: Taxonomy id per rfdetr ``class_id`` (0 = not a taxonomy class, dropped).
    """

    def __init__(self, model: Any, weights: Path, conf: float, batch: int, classes: tuple[int, ...] | None = None,
                 shape: tuple[int, int] | None = None) -> None:
        self.model = model
        self.name = f"detr:{weights}"
        self.weights = weights
        self.conf = conf
        self.batch = batch
        self.shape = shape
        names = list(getattr(model, "class_names", None) or [])
        self.index_to_id = np.asarray(rfdetr_class_to_taxonomy(names, model.model_config.num_classes + 1), dtype=np.int64)
        self.classes = tuple(sorted(classes)) if classes else None

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
            chunk = list(images[i:i + self.batch])
            with quiet_logger("rf-detr"):  # "not optimized for inference" on every first call
                res = self.model.predict(chunk, threshold=self.conf, include_source_image=False,
                                         **({"shape": self.shape} if self.shape else {}))
            if not isinstance(res, list):
                res = [res]
            for d in res:
                cls = np.asarray(d.class_id, dtype=np.int64)
                ok = cls < len(self.index_to_id)
                ids = np.where(ok, self.index_to_id[np.clip(cls, 0, len(self.index_to_id) - 1)], 0) if len(cls) else cls
                keep = ids > 0
                if self.classes is not None:
                    keep &= np.isin(ids, self.classes)
                score = np.asarray(d.confidence if d.confidence is not None else np.full(len(cls), np.nan))
                out.append(Detections(np.asarray(d.xyxy)[keep], ids[keep], score[keep]))
        return out


def load_predictor(cfg: PredictorConfig) -> DetrPredictor:
    """Build a :class:`DetrPredictor` from a :class:`~synspill.models.PredictorConfig`.

    ``cfg.model`` is a run folder of ``synspill finetune detr`` or a ``.pth`` checkpoint;
    ``cfg.imgsz`` (a multiple of the patch size x windows) overrides the trained resolution.
    """
    if cfg.scales not in (None, (1.0,)):
        raise UsageError("--scales (multi-scale inference) is for YOLO detectors; RF-DETR runs at one size (--imgsz)")
    weights, _run = resolve_weights(cfg.model)
    configure_offline()
    from synspill.runtime import apply_threads, resolve_device

    device = resolve_device(cfg.device)
    apply_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import rfdetr

        with quiet_logger("rf-detr"):
            model = rfdetr.from_checkpoint(str(weights), device=device)
    shape = (int(cfg.imgsz), int(cfg.imgsz)) if cfg.imgsz else None
    return DetrPredictor(model, weights, cfg.conf, cfg.batch, cfg.classes, shape)


def run_summary(run: dict[str, Any]) -> str:
    """One line describing a finished run (for the CLI)."""
    m = run.get("metrics", {})
    return (f"{'trained from random init' if run.get('from_scratch') else 'fine-tuned'} RF-DETR {run.get('variant')}: "
            f"best val mAP50 {m.get('mAP50', float('nan')):.3f}, mAP50-95 {m.get('mAP50-95', float('nan')):.3f} "
            f"(epoch {m.get('best_epoch', '?')} of {m.get('epochs_run', '?')}) -> {run.get('weights')}")
