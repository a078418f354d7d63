"""``synspill demo``: the whole pipeline end to end on built-in defaults, CPU only.

Stages (each reused when re-run with the same settings, see :mod:`synspill.stages`):

1. ``data``  — procedural scenes (ray-cast places and plant rooms) -> automatic spill
   proposals -> physically based liquids -> a COCO dataset with a seeded,
   class-stratified train/val/test split;
2. ``train`` — the detector with an ImageNet-pretrained EfficientNet-Lite0 backbone,
   frozen, on the synthetic train split (``--model yolo11n``: from scratch; RF-DETR Nano
   optionally);
3. ``eval``  — predict on the held-out synthetic test split; hit rate over IoU 0.5-0.9,
   mAP@50, the comparison table and the plots;
4. ``real``  — the real-photo check: class-agnostic mAP@50 and hit rate at IoU 0.5 on
   shipped real wet-floor photos it never trained on (:mod:`synspill.realcheck`);
5. ``watch`` — a short video from a test scene with a spill appearing and growing, run
   through ``watch --once``: the confirmed alert, its severity and the SQLite event log;
6. a summary of where everything is and what to run next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synspill.errors import UsageError
from synspill.params import FromParams
from synspill.runtime import default_workers
from synspill.stages import StageRunner

log = logging.getLogger(__name__)

#: Callback used by the CLI to draw progress: ``(stage, done, total, info)``; ``info`` is what
#: the step reports (a training epoch's ``epoch``, ``loss``, ``mAP50`` ...; ``{}`` otherwise).
StageProgress = Callable[[str, int, int | None, dict[str, Any]], None]


#: Ultralytics settings for a short run on a CPU (tuned with YOLO11n from scratch on the earlier
#: procedural data, validation mAP@50 after 8 epochs at 160 px; kept for lite0): an optimiser step per batch
#: (``nbs`` = batch; the default accumulates to 64), no warm-up, AdamW at 0.001 (0.004: 0.13,
#: 0.002: 0.21, 0.001: 0.24, 0.0005: 0.20), classification gain 1.5 (0.5: 0.24 -> 0.28),
#: mild augmentation (mosaic and scale jitter shrink small spills; strong HSV jitter erases
#: the colour cues that separate coolant, rust and chemicals), and validation only after the
#: last epoch (saves ~10 % of the time; the bar shows the training loss instead).
YOLO_SHORT_RUN: dict[str, Any] = {"optimizer": "AdamW", "lr0": 0.001, "cls": 1.5, "warmup_epochs": 0, "nbs": 16,
                                  "mosaic": 0.0, "hsv_h": 0.0, "hsv_s": 0.15, "hsv_v": 0.15, "scale": 0.15,
                                  "translate": 0.05, "val": False}


@dataclass(frozen=True)
class DemoConfig(FromParams):
    """Settings of one demo run (saved as ``OUT/demo.json``).

    Attributes:
        out: Output folder.
        n_images: Synthetic images to make (split 80/10/10).
        size: Scene size in pixels (square).
        per_image: Spills per image ``(lo, hi)``.
        spill_scale: Spill size multiplier (close-up spills are learnable in minutes on a CPU).
        close_up: Share of images whose first spill is seen close up (box side 35-95 % of the
            image's): the sizes of people's photos of spills, beside CCTV views.
        min_box: Smallest spill box side, fraction of the image side (no specks a small
            detector cannot see at 160 px).
        feather: Soft-mask feather in px (the paper's 50 px is for 1024 px images).
        opacity: Soft-mask opacity (1.0: full-strength spills for a short CPU training).
        epochs: YOLO training epochs.
        imgsz: YOLO training/inference size.
        batch: YOLO batch size.
        model: ``lite0`` (pretrained backbone), a YOLO architecture (from scratch) or a local ``.pt``.
        unfreeze_epochs: Epochs with the backbone unfrozen after the frozen ones (``lite*`` only).
        detr: Also fine-tune RF-DETR Nano.
        detr_epochs: RF-DETR epochs.
        seed: Seed of everything.
        workers: Processes for synthesis (default: one per CPU core, up to 8).
        device: Training device.
        force: Ignore finished stages and redo everything.
        skip_watch: Leave out the watch stage.
        real_check: Run the real-photo check.
        options: Extra ultralytics training arguments.
    """

    out: Path = Path("synspill-demo")
    n_images: int = 2000
    size: int = 160
    per_image: tuple[int, int] = (1, 3)
    spill_scale: float = 2.0
    close_up: float = 0.0
    min_box: float = 0.08
    feather: float = 6.0
    opacity: float = 1.0
    epochs: int = 14
    imgsz: int = 160
    batch: int = 16
    model: str = "lite0"
    unfreeze_epochs: int = 0
    detr: bool = False
    detr_epochs: int = 6
    seed: int = 0
    workers: int = field(default_factory=default_workers)
    device: str = "auto"
    force: bool = False
    skip_watch: bool = False
    real_check: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_images < 20:
            raise UsageError(f"--n-images {self.n_images}: the demo needs at least 20 images to split into train/val/test")
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs} must be at least 1")
        if self.size < 64 or self.size % 32:
            raise UsageError(f"--size {self.size} must be a multiple of 32, at least 64")


@dataclass
class DemoResult:
    """Where the demo put things and what it measured."""

    paths: dict[str, str]
    metrics: dict[str, Any]
    reused: list[str]
    watch: dict[str, Any] = field(default_factory=dict)
    real: dict[str, Any] = field(default_factory=dict)


def _data_stage(cfg: DemoConfig, progress: StageProgress | None) -> dict[str, Any]:
    from synspill.coco.dataset import load_coco, save_coco
    from synspill.coco.tools import split
    from synspill.synth.inpaint import InpaintJob, run_inpaint
    from synspill.synth.scenes import ScenesJob, run_scenes

    out = cfg.out
    total = {"n": cfg.n_images}

    def cb(stage: str) -> tuple[Callable[[int, int], None], Callable[[int], None]]:
        done = [0]

        def on_start(prev: int, todo: int) -> None:
            total["n"] = todo
            if progress:
                progress(stage, 0, todo, {})

        def on_progress(n: int) -> None:
            done[0] += n
            if progress:
                progress(stage, done[0], total["n"], {})

        return on_start, on_progress

    s_start, s_prog = cb("scenes")
    scenes = ScenesJob.from_params({"n": cfg.n_images, "seed": cfg.seed, "width": cfg.size, "height": cfg.size,
                                         "workers": cfg.workers}, "demo", out=out / "scenes")
    run_scenes(scenes, on_progress=s_prog, on_start=s_start)
    i_start, i_prog = cb("inpaint")
    inpaint = InpaintJob.from_params({"per_image": cfg.per_image, "spill_scale": cfg.spill_scale, "min_box": cfg.min_box,
                                           "close_up": cfg.close_up, "feather": cfg.feather, "opacity": cfg.opacity, "seed": cfg.seed, "workers": cfg.workers},
                                          "demo", scenes=out / "scenes", out=out / "dataset", propose=True)
    ann = run_inpaint(inpaint, on_progress=i_prog, on_start=i_start)
    assert ann is not None  # single process: this shard merges
    ds = load_coco(ann)
    parts = split(ds, (0.8, 0.1, 0.1), seed=cfg.seed)
    paths = {}
    for name, sub in parts.items():
        p = out / "dataset" / f"{name}.json"
        save_coco(sub, p)
        paths[name] = str(p)
    return {"annotations": str(ann), "contact_sheet": str(out / "dataset" / "contact_sheet.png"), "splits": paths,
            "stats": ds.stats(), "split_sizes": {k: len(v.images) for k, v in parts.items()}}


def _train_progress(progress: StageProgress | None, stage: str) -> Callable[[int, int, dict[str, Any]], None]:
    def on_progress(done: int, total: int, info: dict[str, Any]) -> None:
        if progress:
            progress(stage, done, total or None, info)

    return on_progress


def _train_yolo(cfg: DemoConfig, data: dict[str, Any], progress: StageProgress | None) -> dict[str, Any]:
    from synspill.detectors import yolo

    run_dir = cfg.out / "runs" / "yolo"
    params = {"model": cfg.model, "epochs": cfg.epochs, "imgsz": cfg.imgsz, "batch": cfg.batch, "patience": cfg.epochs,
              "workers": cfg.workers, "options": {**YOLO_SHORT_RUN, **cfg.options}}
    if cfg.unfreeze_epochs:
        params["unfreeze_epochs"] = cfg.unfreeze_epochs
    train_cfg = yolo.YoloTrainConfig.from_params(params, "demo", data=data["splits"]["train"], val=data["splits"]["val"],
                                                 out=str(run_dir), device=cfg.device, seed=cfg.seed, force=True)
    run = yolo.train(train_cfg, on_progress=_train_progress(progress, "train yolo"))
    return {"run_dir": str(run_dir), "weights": str(run_dir / run["weights"]), "metrics": run.get("metrics", {}),
            "from_scratch": run.get("from_scratch"), "pretrained_backbone": run.get("pretrained_backbone")}


def _train_detr(cfg: DemoConfig, data: dict[str, Any], progress: StageProgress | None) -> dict[str, Any]:
    from synspill.detectors import detr

    run_dir = cfg.out / "runs" / "detr"
    train_cfg = detr.DetrTrainConfig.from_params({"model": "nano", "epochs": cfg.detr_epochs}, "demo", data=data["splits"]["train"],
                                                 val=data["splits"]["val"], out=str(run_dir), device=cfg.device, seed=cfg.seed,
                                                 force=True)
    run = detr.train(train_cfg, on_progress=_train_progress(progress, "train rf-detr"))
    return {"run_dir": str(run_dir), "metrics": run.get("metrics", {})}


def _eval_stage(cfg: DemoConfig, data: dict[str, Any], runs: dict[str, dict[str, Any]],
                progress: StageProgress | None) -> dict[str, Any]:
    from synspill.evaluation import evaluate_files
    from synspill.inference import predict_files
    from synspill.models import PredictorConfig

    ev = cfg.out / "eval"
    test = data["splits"]["test"]
    preds, names = [], []
    for name, run in runs.items():
        n_test = data["split_sizes"]["test"]
        done = [0]

        def on_item(*_: Any, _name: str = name, _n: int = n_test, done: list[int] = done) -> None:
            done[0] += 1
            if progress:
                progress(f"predict {_name}", done[0], _n, {})

        p = ev / f"{name}.preds.json"
        pcfg = PredictorConfig.from_params({"imgsz": cfg.imgsz}, "demo", model=run["run_dir"], device=cfg.device)
        predict_files(pcfg, test, p, save_images=ev / f"{name}-annotated", force=True, on_item=on_item)
        preds.append(p)
        names.append(name)
    report = evaluate_files(test, preds, names=names)
    files = report.write(ev, force=True) + report.plot(ev, force=True)
    rows = {}
    for r in report.results:
        m = r.metrics
        rows[r.name] = {"map50": float(m.map50), "map50_95": float(m.map50_95),
                        "hit_rate": {f"{t:.1f}": float(h) for t, h in zip(m.iou_thresholds, m.hit_rate, strict=True)}}
    return {"files": [str(f) for f in files], "table": report.to_markdown(), "methods": rows,
            "n_test_images": report.n_images, "n_test_boxes": report.n_gt}


def run_demo(cfg: DemoConfig, progress: StageProgress | None = None,
             on_stage: Callable[[str, bool], None] | None = None) -> DemoResult:
    """Run (or resume) the demo.

    Args:
        cfg: Settings.
        progress: ``(stage, done, total, info)`` callback for progress bars.
        on_stage: Called with ``(stage, reused)`` as each stage finishes.

    Returns:
        Paths, metrics and which stages were reused.
    """
    from synspill.io import write_json

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo.json", {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}, indent=2)
    runner = StageRunner(out, force=cfg.force)
    reused: list[str] = []

    def stage(name: str, conf: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        res, was = runner.run(name, conf, fn)
        if was:
            reused.append(name)
        if on_stage:
            on_stage(name, was)
        return res

    data_conf = {"n": cfg.n_images, "size": cfg.size, "per_image": list(cfg.per_image), "seed": cfg.seed,
                 "spill_scale": cfg.spill_scale, "min_box": cfg.min_box, "close_up": cfg.close_up, "feather": cfg.feather,
                 "opacity": cfg.opacity, "v": 2}
    data = stage("data", data_conf, lambda: _data_stage(cfg, progress))
    train_conf = {"data": data_conf, "model": cfg.model, "epochs": cfg.epochs, "imgsz": cfg.imgsz, "batch": cfg.batch, "seed": cfg.seed,
                  "unfreeze_epochs": cfg.unfreeze_epochs, "options": {**YOLO_SHORT_RUN, **cfg.options}}
    runs = {Path(cfg.model).stem: stage("train-yolo", train_conf, lambda: _train_yolo(cfg, data, progress))}
    if cfg.detr:
        detr_conf = {"data": data_conf, "epochs": cfg.detr_epochs, "seed": cfg.seed}
        runs["rf-detr-nano"] = stage("train-detr", detr_conf, lambda: _train_detr(cfg, data, progress))
    eval_conf = {"train": train_conf, "detr": cfg.detr, "detr_epochs": cfg.detr_epochs}
    ev = stage("eval", eval_conf, lambda: _eval_stage(cfg, data, runs, progress))
    real: dict[str, Any] = {}
    if cfg.real_check:
        real = stage("real", {**eval_conf, "v": 2}, lambda: _real_stage(cfg, runs, progress))
    watch: dict[str, Any] = {}
    if not cfg.skip_watch:
        first = next(iter(runs.values()))
        watch = stage("watch", {"train": train_conf, "v": 1}, lambda: _watch_stage(cfg, data, first))
    paths = {
        "dataset": str(out / "dataset"),
        "contact_sheet": data["contact_sheet"],
        "splits": ", ".join(data["splits"].values()),
        **{f"weights ({k})": v.get("weights", v["run_dir"]) for k, v in runs.items()},
        "report": str(out / "eval" / "eval.md"),
        "plots": str(out / "eval" / "hit_rate_vs_iou.png"),
    }
    if real:
        paths["real-photo check"] = real["dir"]
    if watch:
        paths.update({"video": watch["video"], "events": watch["db"], "snapshots": watch["snapshots"]})
    return DemoResult(paths=paths, metrics=ev, reused=reused, watch=watch, real=real)


def _real_stage(cfg: DemoConfig, runs: dict[str, dict[str, Any]], progress: StageProgress | None) -> dict[str, Any]:
    """The real-photo check of every trained model (:func:`synspill.realcheck.real_photo_check`)."""
    import json

    from synspill.realcheck import real_photo_check, real_set

    out = cfg.out / "real"
    total = sum(len(json.loads(real_set(n).read_text())["images"]) for n in ("wet-floor-valid", "wet-floor-test"))
    res: dict[str, Any] = {"dir": str(out), "methods": {}}
    for name, run in runs.items():
        done = [0]

        def on_item(*_: Any, _name: str = name, done: list[int] = done) -> None:
            done[0] += 1
            if progress:
                progress(f"real photos {_name}", done[0], total, {})

        scores = real_photo_check(run["run_dir"], out / name, device=cfg.device, imgsz=cfg.imgsz, on_item=on_item)
        res["methods"][name] = [sc.to_dict() for sc in scores]
    return res


# ---- watch stage -----------------------------------------------------------------------
def _pick_watch_example(cfg: DemoConfig, data: dict[str, Any], run: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A test image whose spill the trained model finds, with its clean scene and mask.

    Returns ``(image_record, annotation, detection_score)``: the test annotation with the
    largest box among those the model hits (IoU >= 0.5, right class) at the best score.
    """
    import numpy as np

    from synspill.boxes import iou_xyxy
    from synspill.coco.dataset import load_coco
    from synspill.inference import read_rgb
    from synspill.predictors import PredictorConfig, load_predictor

    test = load_coco(data["splits"]["test"])
    pred = load_predictor(PredictorConfig.from_params({"conf": 0.05, "imgsz": cfg.imgsz}, "demo", model=run["run_dir"], device=cfg.device))
    by_img = test.anns_by_image()
    best: tuple[float, Any, Any] | None = None
    for im in test.images[:40]:
        anns = by_img.get(im.id) or []
        if not anns:
            continue
        det = pred.predict([read_rgb(test.image_path(im))])[0]
        for a in anns:
            gt = np.array([a.xyxy], np.float32)
            same = det.class_id == a.category_id
            if not same.any():
                continue
            ious = iou_xyxy(gt, det.xyxy[same])[0]
            ok = ious >= 0.5
            if not ok.any():
                continue
            score = float(det.score[same][ok].max())
            rank = score * (a.bbox[2] * a.bbox[3]) ** 0.25
            if best is None or rank > best[0]:
                best = (rank, im, a)
    if best is None:  # the model found nothing: still show the machinery on the largest spill
        a = max(test.annotations, key=lambda a: a.bbox[2] * a.bbox[3])
        return test.image_by_id()[a.image_id], a, 0.0
    return best[1], best[2], best[0]


def make_spill_video(clean: Any, spilled: Any, mask: Any, path: Path, fps: int = 4, seconds: float = 12.0) -> Path:
    """Write an MP4 where a spill appears and grows on a static camera view.

    The first quarter shows the clean scene; then the spill's pixels are revealed from its
    centre outwards until, at three quarters, the full spill is visible; it stays to the end.

    Args:
        clean: ``(H, W, 3)`` uint8 RGB scene without the spill.
        spilled: The same scene with the spill.
        mask: ``(H, W)`` bool: the spill's visible pixels.
        path: Output ``.mp4``.
        fps: Frames per second.
        seconds: Length.
    """
    import cv2
    import numpy as np

    h, w = mask.shape
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)  # 0 inside the mask
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0:h, 0:w]
    radial = np.hypot(yy - cy, xx - cx).astype(np.float32)
    rmax = float(radial[mask].max()) + 1.0
    n = int(fps * seconds)
    tmp = path.with_suffix(".tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        t = i / max(1, n - 1)
        grow = float(np.clip((t - 0.25) / 0.5, 0.0, 1.0))
        reveal = (radial <= grow * rmax) & (dist == 0) if grow > 0 else np.zeros_like(mask)
        soft = cv2.GaussianBlur(reveal.astype(np.float32), (0, 0), 1.5)[..., None]
        frame = (clean.astype(np.float32) * (1 - soft) + spilled.astype(np.float32) * soft).astype(np.uint8)
        vw.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    vw.release()
    tmp.replace(path)
    return path


def _watch_stage(cfg: DemoConfig, data: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from pycocotools import mask as mask_utils

    from synspill.coco.dataset import load_coco
    from synspill.inference import read_rgb
    from synspill.watch import DEFAULT_DB
    from synspill.watch.alerts import AlertPolicy
    from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
    from synspill.watch.loop import Watcher
    from synspill.watch.store import EventStore

    wdir = cfg.out / "watch"
    im, ann, score = _pick_watch_example(cfg, data, run)
    ds = load_coco(data["annotations"])
    scenes = load_coco(cfg.out / "scenes" / "scenes.json")
    scene = scenes.image_by_id()[im.id]
    clean = read_rgb(scenes.image_path(scene))
    spilled = read_rgb(ds.image_path(im))
    seg = ann.segmentation
    if isinstance(seg, dict) and "counts" in seg:
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        mask = mask_utils.decode(rle).astype(bool)
    else:  # fall back to the box
        mask = np.zeros(spilled.shape[:2], bool)
        x, y, w, h = (int(round(v)) for v in ann.bbox)
        mask[y:y + h, x:x + w] = True
    # Only this spill appears; everything else (the image's other spills too) is there from the first frame.
    clean = np.where(mask[..., None], clean, spilled)
    video = make_spill_video(clean, spilled, mask, wdir / "spill.mp4")
    db = wdir / DEFAULT_DB
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        p.unlink(missing_ok=True)
    threshold = 0.5 if score >= 0.6 else max(0.1, round(score * 0.8, 2)) if score > 0 else 0.25
    cam = CameraConfig(name="demo-cam", url=str(video), model=run["run_dir"], imgsz=cfg.imgsz, device=cfg.device,
                       policy=AlertPolicy(threshold=threshold))
    wc = WatchConfig(cameras=(cam,), db=str(db), sinks=SinkConfig(stdout=False, snapshots=str(wdir / "snapshots")))
    summary = Watcher(wc, once=True, origin=1_700_000_000.0).run()
    events = EventStore(str(db)).query()
    return {"video": str(video), "db": str(db), "snapshots": str(wdir / "snapshots"), "threshold": threshold,
            "samples": summary.samples, "alerts": summary.alerts, "events": events,
            "spill": {"image_id": im.id, "class_id": ann.category_id, "bbox": ann.bbox}}
