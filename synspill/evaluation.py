"""Evaluate prediction files against a COCO ground truth and report the comparison.

:func:`evaluate_files` turns one COCO ground truth and any number of COCO results files
(one per method: a detector, a zero-shot VLM, a LoRA-adapted VLM ...) into an
:class:`EvalReport`. The report writes JSON, CSV and Markdown (a comparison table shaped
like the paper's Tables 2-5) and PNG plots: hit rate against IoU threshold for every
method (the paper's Fig. 3a) and precision-recall curves at IoU 0.5.

A prediction file may have a sidecar ``results.meta.json`` (or the older
``results.json.meta.json``, see :func:`synspill.detections.find_sidecar`), written by
``synspill predict``, e.g.
``{"model": "qwen2.5-vl-7b+lora", "parse_dropped": {"no_json": 3}, "unscored": true}``;
its contents are shown in the report (VLM parse drops matter when comparing hit rates).

NumPy only at import time; matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from synspill import __version__, taxonomy
from synspill.bootstrap import Interval, bootstrap, interval
from synspill.errors import OutputExists, UsageError
from synspill.io import write_bytes, write_text
from synspill.metrics import (
    DEFAULT_IOU,
    EvalMetrics,
    GroundTruth,
    Predictions,
    evaluate,
    parse_iou_thresholds,
)

log = logging.getLogger(__name__)

#: File names written when ``--out`` is a folder.
REPORT_FILES = {"json": "eval.json", "csv": "eval.csv", "md": "eval.md"}
#: File names written into ``--plots``.
PLOT_FILES = {"hit_rate": "hit_rate_vs_iou.png", "pr": "pr_curve_iou50.png"}


@dataclass
class MethodResult:
    """One prediction file's metrics.

    Attributes:
        name: Row label (``--name``, else the file name).
        pred_path: The results file.
        metrics: Everything measured.
        meta: The sidecar ``.meta.json`` contents ({} if none).
        meta_path: The sidecar's path, if one was found.
        dropped: Predictions left out as malformed, per reason (see
            :func:`synspill.detections.screen_results`).
        ci: Bootstrap intervals over images (``--bootstrap``): ``"map50"`` and ``"hit_rate"``
            (at the first IoU threshold), and for every method after the first
            ``"map50_vs_first"``, the interval of its mAP@50 minus the first method's on the
            same draws (paired); {} when not asked for.
    """

    name: str
    pred_path: str
    metrics: EvalMetrics
    meta: dict[str, Any] = field(default_factory=dict)
    meta_path: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    ci: dict[str, Interval] = field(default_factory=dict)

    def dropped_note(self) -> str:
        """``"dropped 2 of 9 predictions: non-finite coordinates 2"`` ("" when none was dropped)."""
        n = sum(self.dropped.values())
        if not n:
            return ""
        return (f"dropped {n} of {n + self.metrics.n_pred_total} predictions: "
                + ", ".join(f"{k} {v}" for k, v in self.dropped.items()))

    @property
    def unscored(self) -> bool:
        """Predictions without scores (in the file, or declared by the sidecar)."""
        return self.metrics.unscored or bool(self.meta.get("unscored"))

    @property
    def parse_dropped(self) -> dict[str, int]:
        """VLM answers the predictor could not parse, by reason (from the sidecar)."""
        d = self.meta.get("parse_dropped")
        if not isinstance(d, dict):
            return {}
        return {str(k): int(v) for k, v in d.items() if isinstance(v, int | float)}

    def notes(self) -> list[str]:
        """Short flags for the comparison table."""
        out = []
        if self.unscored:
            m = self.metrics
            out.append("unscored" if m.n_unscored in (0, m.n_pred_total) else f"unscored {m.n_unscored}/{m.n_pred_total}")
        drops = self.parse_dropped
        if drops:
            out.append(f"parse drops {sum(drops.values())}")
        if self.dropped:
            out.append(f"dropped {sum(self.dropped.values())}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "pred": self.pred_path, "unscored": self.unscored,
             "meta": self.meta, "meta_path": self.meta_path, "dropped": self.dropped}
        if self.ci:
            d["ci"] = {k: v.to_dict() for k, v in self.ci.items()}
        d.update({k: v for k, v in self.metrics.to_dict().items() if k != "unscored"})
        return d


@dataclass
class EvalReport:
    """The comparison of several methods on one ground truth.

    Attributes:
        gt_path: The ground-truth COCO file.
        n_images: Images evaluated.
        n_gt: Regular ground-truth boxes in the evaluated classes.
        iou_thresholds: Hit-rate thresholds.
        category_ids: Evaluated classes.
        category_names: Their names.
        results: One entry per prediction file, in the order given.
        min_score: Score threshold for hit rate / precision / FP (0: all predictions).
        created: UTC time stamp.
    """

    gt_path: str
    n_images: int
    n_gt: int
    iou_thresholds: tuple[float, ...]
    category_ids: list[int]
    category_names: list[str]
    results: list[MethodResult]
    min_score: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    # ---- tables ------------------------------------------------------------------------
    def comparison_header(self) -> list[str]:
        """Column names of the comparison table (paper Tables 2-5 shape)."""
        t0 = _fmt_t(self.iou_thresholds[0])
        names = {"hit_rate": f"HR@{t0}", "map50": "mAP@50", "map50_vs_first": "ΔmAP@50 vs first"}
        ci = [f"{names[k]} {self.ci_label}" for k in self._ci_keys()]
        return (["Method"] + [f"HR@{_fmt_t(t)}" for t in self.iou_thresholds]
                + ["mAP@50", "mAP@50:95", *ci, f"P@{t0}", f"FP/img@{t0}", "Preds", "Notes"])

    @property
    def ci_ref(self) -> Interval | None:
        """The first method's mAP@50 interval (None: no ``--bootstrap``); its level and draws hold for all."""
        return next((r.ci["map50"] for r in self.results if r.ci), None)

    @property
    def ci_label(self) -> str:
        """``"95% CI"`` when the methods carry bootstrap intervals, else ""."""
        return f"{self.ci_ref.level * 100:g}% CI" if self.ci_ref else ""

    def _ci_keys(self) -> list[str]:
        """The interval columns of the comparison table, in order."""
        if not self.ci_ref:
            return []
        return ["hit_rate", "map50"] + (["map50_vs_first"] if len(self.results) > 1 else [])

    def comparison_rows(self) -> list[list[str]]:
        """One formatted row per method (hit rate per threshold, mAP, precision, FP/img)."""
        rows = []
        for r in self.results:
            m = r.metrics
            ci = [str(r.ci.get(k, "-")) for k in self._ci_keys()]
            rows.append([r.name] + [_f(v) for v in m.hit_rate] + [_f(m.map50), _f(m.map50_95), *ci, _f(m.precision[0]),
                        _f(m.fp_per_image[0], 2), str(m.n_pred_total), ", ".join(r.notes())])
        return rows

    def per_class_rows(self) -> tuple[list[str], list[list[str]]]:
        """Per-class hit rate at the first threshold and AP@50, one column pair per method."""
        t0 = _fmt_t(self.iou_thresholds[0])
        header = ["Class", "GT"]
        for r in self.results:
            header += [f"{r.name} HR@{t0}", f"{r.name} AP@50"]
        rows = []
        n_gt = self.results[0].metrics.n_gt if self.results else np.zeros(len(self.category_ids), int)
        for k, name in enumerate(self.category_names):
            row = [name, str(int(n_gt[k]))]
            for r in self.results:
                row += [_f(r.metrics.hit_rate_per_class[k, 0]), _f(r.metrics.ap50[k])]
            rows.append(row)
        return header, rows

    # ---- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict (NaN -> null)."""
        return {
            "synspill_version": __version__, "created": self.created, "gt": self.gt_path,
            "n_images": self.n_images, "n_gt": self.n_gt,
            "iou_thresholds": list(self.iou_thresholds), "min_score": self.min_score,
            "classes": [{"id": i, "name": n} for i, n in zip(self.category_ids, self.category_names, strict=True)],
            "methods": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per (method, class); class ``all`` holds the class-averaged numbers."""
        ts = [_fmt_t(t) for t in self.iou_thresholds]
        cols = (["method", "pred", "class", "n_gt", "n_pred", "unscored"] + [f"hit_rate@{t}" for t in ts]
                + [f"precision@{t}" for t in ts] + [f"fp_per_image@{t}" for t in ts] + ["ap50", "ap50_95"])
        with_ci = self.ci_ref is not None
        if with_ci:  # bootstrap intervals: on the "all" rows only
            cols += [f"hit_rate@{ts[0]}_ci_low", f"hit_rate@{ts[0]}_ci_high", "ap50_ci_low", "ap50_ci_high"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.results:
            m = r.metrics
            ci = [v for k in ("hit_rate", "map50") for v in ((r.ci[k].low, r.ci[k].high) if k in r.ci else (np.nan, np.nan))]
            w.writerow([r.name, r.pred_path, "all", int(m.n_gt.sum()), m.n_pred_total, int(r.unscored)]
                       + _csv(m.hit_rate) + _csv(m.precision) + _csv(m.fp_per_image) + _csv([m.map50, m.map50_95])
                       + (_csv(ci) if with_ci else []))
            for k, name in enumerate(m.category_names):
                w.writerow([r.name, r.pred_path, name, int(m.n_gt[k]), int(m.n_pred[k]), int(r.unscored)]
                           + _csv(m.hit_rate_per_class[k]) + _csv(m.precision_per_class[k])
                           + _csv(m.fp[k] / max(m.n_images, 1)) + _csv([m.ap50[k], m.ap50_95[k]]) + [""] * (4 * with_ci))
        return buf.getvalue()

    def to_markdown(self) -> str:
        """A Markdown report: comparison table, per-class table, notes."""
        thr = ", ".join(_fmt_t(t) for t in self.iou_thresholds)
        lines = [
            "# synspill eval", "",
            f"Ground truth: `{self.gt_path}` - {self.n_images} images, {self.n_gt} boxes, "
            f"{len(self.category_ids)} classes. IoU thresholds: {thr}."
            + (f" Predictions scoring below {self.min_score} are left out of hit rate, precision and FP/img." if self.min_score > 0 else ""),
            "", "## Comparison", "",
        ]
        lines += _md_table(self.comparison_header(), self.comparison_rows())
        t0 = _fmt_t(self.iou_thresholds[0])
        lines += [
            "",
            "HR@t: hit rate, the share of ground-truth boxes hit by a prediction of their class with IoU >= t "
            "(one-to-one, greedy by score), averaged over the classes present in the ground truth. "
            "mAP: COCO bbox AP (pycocotools-identical; 101-point, maxDets 100), averaged over classes. "
            f"P@{t0} and FP/img@{t0}: precision and false positives per image at IoU {t0}, all predictions.",
        ]
        ci = self.ci_ref
        if ci:
            lines += ["", f"{self.ci_label}: percentile bootstrap interval over images ({ci.n_boot} draws of the "
                      f"{self.n_images} images with replacement): how far the score could move on other images like these."
                      + (" ΔmAP@50 vs first: the interval of a method's mAP@50 minus the first one's on the same draws; "
                         "one that excludes 0 is a difference these images support." if len(self.results) > 1 else "")]
        if any(r.unscored for r in self.results):
            lines += ["", "*unscored*: the file has predictions without a score (typical of VLM output); they are ranked "
                      "as score 1.0 in file order, so its mAP reflects a single operating point, not a ranking."]
        header, rows = self.per_class_rows()
        lines += ["", f"## Per class (hit rate at IoU {t0}, AP@50)", ""] + _md_table(header, rows)
        notes = []
        for r in self.results:
            parts = [f"`{r.pred_path}`"]
            if r.meta.get("model"):
                parts.append(f"model `{r.meta['model']}`")
            drops = r.parse_dropped
            if drops:
                parts.append("VLM answers dropped while parsing: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
            for k, v in r.meta.items():
                if k not in ("model", "parse_dropped", "unscored") and isinstance(v, str | int | float | bool):
                    parts.append(f"{k}: {v}")
            if r.dropped:
                parts.append(r.dropped_note())
            parts += r.metrics.warnings
            notes.append(f"- **{r.name}**: " + "; ".join(parts))
        lines += ["", "## Methods", ""] + notes
        lines += ["", f"_synspill {__version__}, {self.created}_", ""]
        return "\n".join(lines)

    def write(self, out: str | Path, force: bool = False) -> list[Path]:
        """Write the report.

        Args:
            out: A ``.json``, ``.csv`` or ``.md`` file, or a folder (gets all three as
                ``eval.json``, ``eval.csv``, ``eval.md``).
            force: Overwrite existing files.

        Returns:
            The files written.

        Raises:
            OutputExists: A file exists and ``force`` is false.
        """
        targets = report_targets(out, force)
        render = {"json": self.to_json, "csv": self.to_csv, "md": self.to_markdown}
        for kind, p in targets.items():
            write_text(p, render[kind]())
        return list(targets.values())

    # ---- plots -------------------------------------------------------------------------
    def plot(self, folder: str | Path, force: bool = False, dpi: int = 120) -> list[Path]:
        """Draw ``hit_rate_vs_iou.png`` (paper Fig. 3a) and ``pr_curve_iou50.png`` into ``folder``."""
        paths = plot_targets(folder, force)
        write_bytes(paths[0], plot_hit_rate(self, dpi))
        write_bytes(paths[1], plot_pr_curves(self, dpi))
        return paths


def report_targets(out: str | Path, force: bool = False) -> dict[str, Path]:
    """The files :meth:`EvalReport.write` writes for ``out`` (``{"json": path, ...}``), checked.

    Raises:
        UsageError: An unknown report suffix.
        OutputExists: A target exists and ``force`` is false.
    """
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix in REPORT_FILES:
        targets = {suffix: out}
    elif out.suffix and not out.is_dir():
        raise UsageError(f"--out {out}: unknown report type {out.suffix!r}; use .json, .csv, .md or a folder")
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: is a file without a report suffix; pass a .json, .csv, .md file or a folder")
        targets = {k: out / v for k, v in REPORT_FILES.items()}
    _check_free(list(targets.values()), force)
    return targets


def plot_targets(folder: str | Path, force: bool = False) -> list[Path]:
    """The PNG files :meth:`EvalReport.plot` writes into ``folder``, checked.

    Raises:
        UsageError: ``folder`` is a file.
        OutputExists: A plot exists and ``force`` is false.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--plots {folder}: is a file; pass a folder for the PNG plots")
    paths = [folder / PLOT_FILES["hit_rate"], folder / PLOT_FILES["pr"]]
    _check_free(paths, force)
    return paths


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, Agg, imported lazily)
# ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def plot_hit_rate(report: EvalReport, dpi: int = 120) -> bytes:
    """Hit rate (class-averaged) against IoU threshold, one line per method; PNG bytes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.asarray(report.iou_thresholds)
    markers = "osD^vP*X"
    for i, r in enumerate(report.results):
        label = r.name + (" (unscored)" if r.unscored else "")
        ax.plot(x, r.metrics.hit_rate, marker=markers[i % len(markers)], label=label)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("hit rate (mean over classes)")
    ax.set_ylim(0, 1.0)
    ax.set_xticks(x)
    ax.set_xticklabels([_fmt_t(t) for t in x])
    ax.grid(alpha=0.3)
    ax.set_title(f"Hit rate vs IoU - {Path(report.gt_path).name} ({report.n_gt} boxes)")
    ax.legend(fontsize="small")
    return _png(fig, dpi)


def plot_pr_curves(report: EvalReport, dpi: int = 120) -> bytes:
    """COCO interpolated precision-recall at IoU 0.5 (mean over classes), one line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for r in report.results:
        rec, prec = r.metrics.pr_curve(0.5)
        label = f"{r.name} (AP@50 {_f(r.metrics.map50)})" + (" unscored" if r.unscored else "")
        ax.plot(rec, prec, label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated, mean over classes)")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Precision-recall at IoU 0.5")
    ax.legend(fontsize="small", loc="lower left")
    return _png(fig, dpi)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
def resolve_classes(spec: str | Sequence[str] | None, gt: GroundTruth) -> list[int] | None:
    """Turn ``--classes`` (names, taxonomy aliases or ids, comma-separated) into GT category ids.

    Raises:
        UsageError: A class that is not a category of the ground truth.
    """
    if spec is None:
        return None
    parts = [spec] if isinstance(spec, str) else list(spec)
    items = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    if not items:
        return None
    by_name = {n.lower(): i for i, n in gt.category_names.items()}
    valid = ", ".join(gt.category_names[i] for i in sorted(gt.category_names))
    out: set[int] = set()
    for it in items:
        if it.lstrip("-").isdigit():
            if int(it) not in gt.category_names:
                raise UsageError(f"--classes {it}: no category with id {int(it)} in {gt.source}; use one of: {valid}")
            out.add(int(it))
            continue
        cid = by_name.get(it.lower())
        if cid is None:
            norm = taxonomy.normalize_name(it)
            cid = by_name.get(norm) if norm else None
        if cid is None:
            raise UsageError(f"--classes {it!r} is not a category of {gt.source}; use one of: {valid}")
        out.add(cid)
    return sorted(out)


def _default_names(paths: Sequence[Path]) -> list[str]:
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem for p in paths]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def evaluate_files(
    gt_path: str | Path,
    pred_paths: Sequence[str | Path],
    names: Sequence[str] | None = None,
    iou_thresholds: str | Sequence[float] = DEFAULT_IOU,
    classes: str | Sequence[str] | None = None,
    min_score: float = 0.0,
    max_dets: int = 100,
    on_file: Callable[[Path], None] | None = None,
    agnostic: bool = False,
    n_boot: int = 0,
    level: float = 0.95,
) -> EvalReport:
    """Evaluate COCO results files against a COCO ground truth.

    Args:
        gt_path: COCO JSON (or a dataset folder holding ``annotations.json``); boxes ``xywh``.
        pred_paths: COCO results files (``[{image_id, category_id, bbox: [x,y,w,h], score?}]``).
        names: Row labels, one per file (default: file names).
        iou_thresholds: Hit-rate thresholds, e.g. ``"0.5:0.9:0.1"``, ``"0.5,0.75"``, ``0.5``.
        classes: Evaluate only these classes (names, aliases or ids).
        min_score: Leave predictions below this score out of hit rate / precision / FP.
        max_dets: COCO ``maxDets`` for mAP.
        on_file: Called after each prediction file is evaluated (progress).
        agnostic: Class-agnostic: every box and prediction counts as one class ("any
            spill"): a spill found under another class's name is a hit (e.g. a real data set
            with one class, or deployments that alert on any spill).
        n_boot: Bootstrap draws over images for confidence intervals of mAP@50 and of the
            hit rate at the first threshold (0: none; see :mod:`synspill.bootstrap`).
        level: Coverage of those intervals.

    Raises:
        DatasetError: Bad ground truth, a bad prediction record (names file and record), or
            a prediction file of which no record is usable. Records with a box that cannot
            be a detection are left out and counted (:attr:`MethodResult.dropped`).
        UsageError: Bad thresholds, names or classes.
    """
    from synspill.coco.dataset import find_coco_file, load_coco
    from synspill.detections import find_sidecar, read_results, read_sidecar, screen_results

    thr = parse_iou_thresholds(iou_thresholds)
    if n_boot < 0:
        raise UsageError(f"--bootstrap {n_boot}: give a number of draws (1000 is usual), or 0 for none")
    if not 0.0 < level < 1.0:
        raise UsageError(f"--level {level} must be between 0 and 1 (0.95 is usual)")
    if not pred_paths:
        raise UsageError("no prediction files; pass --pred RESULTS.json (repeat for several methods)")
    paths = [Path(p) for p in pred_paths]
    if names:
        names = list(names)
        if len(names) != len(paths):
            raise UsageError(f"{len(names)} --name for {len(paths)} --pred; give one name per prediction file, in the same order")
        dup = [n for n in names if names.count(n) > 1]
        if dup:
            raise UsageError(f"--name {dup[0]!r} is given twice; method names must be unique")
    else:
        names = _default_names(paths)
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"--min-score {min_score} is outside [0, 1]")

    gt_file = find_coco_file(gt_path)
    ds = load_coco(gt_file)
    gt = GroundTruth.from_dataset(ds, str(gt_file))
    cls = resolve_classes(classes, gt)
    if agnostic and cls is not None:
        raise UsageError("--agnostic counts every class as one; leave out --classes")
    img_ids = set(gt.image_ids.tolist())
    sizes = {im.id: (im.width, im.height) for im in ds.images}
    cat_ids = set(gt.category_ids.tolist())

    results = []
    metrics = None
    first_draws: np.ndarray | None = None
    for name, p in zip(names, paths, strict=True):
        records, dropped = screen_results(read_results(p, img_ids, cat_ids), sizes, p)
        if not records:
            log.warning("%s: no predictions", p)
        pred = Predictions.from_records(records, str(p))
        g, d = (gt.agnostic(), pred.agnostic()) if agnostic else (gt, pred)
        metrics = evaluate(g, d, thr, cls, max_dets, min_score)
        ci = {}
        if n_boot:  # the same seed for every file: the same draws of images, so differences are paired
            draws = bootstrap(g, d, n_boot=n_boot, iou=thr[0], min_score=min_score, max_dets=max_dets, classes=cls)
            ci = {k: interval(v, level) for k, v in draws.items()}
            if first_draws is None:
                first_draws = draws["map50"]
            else:
                ci["map50_vs_first"] = interval(draws["map50"] - first_draws, level)
        meta_path = find_sidecar(p)
        meta = read_sidecar(meta_path) if meta_path else {}
        results.append(MethodResult(name, str(p), metrics, meta, str(meta_path) if meta_path else None, dropped, ci))
        if on_file is not None:
            on_file(p)
    assert metrics is not None
    return EvalReport(
        gt_path=str(gt_file), n_images=metrics.n_images, n_gt=int(metrics.n_gt.sum()), iou_thresholds=thr,
        category_ids=metrics.category_ids.tolist(), category_names=list(metrics.category_names),
        results=results, min_score=float(min_score),
    )


# ---------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------
def _fmt_t(t: float) -> str:
    s = f"{float(t):.3f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def _f(v: float, nd: int = 3) -> str:
    v = float(v)
    return "-" if np.isnan(v) else f"{v:.{nd}f}"


def _csv(vals: Any) -> list[str]:
    return ["" if np.isnan(float(v)) else repr(float(v)) for v in np.asarray(vals, dtype=np.float64).tolist()]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    left = {0} | {i for i, h in enumerate(header) if h in ("Notes", "Class")}
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---" if i in left else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def _check_free(paths: list[Path], force: bool) -> None:
    if force:
        return
    for p in paths:
        if p.exists():
            raise OutputExists(f"{p} exists; pass --force to overwrite it or choose another --out/--plots")
