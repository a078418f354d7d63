"""One report for a study, laid out like the paper's tables (Markdown + JSON + PNG).

``OUT/report.md`` holds, for every evaluation set (with its image and box counts):

- **Table 2/3 layout**: hit rate at the first IoU threshold (0.5) per method (rows:
  zero-shot, ICL-k, LoRA-L/V/V+L, ...) x model size (columns: 3B / 7B / 32B ...);
  detectors (YOLO, RF-DETR) follow as their own rows;
- **Table 4 layout**: hit rate at every IoU threshold for one model size
  (``[report] iou_table_model``; default: the largest size present) plus the detectors;
- **Table 5 layout**: mAP@50 per method (rows) x evaluation set (columns);
- **Fig. 3a**: hit rate vs IoU, one line per method (``fig3a_<set>.png``, drawn with
  :func:`synspill.evaluation.plot_hit_rate`), plus the full ``synspill eval`` report of every
  set under ``OUT/report/<set>/``;
- every cell with its status, time and -- when it failed -- its one-line error.

Numbers are computed from the cells' prediction files with
:func:`synspill.evaluation.evaluate_files`, so the report can be rebuilt at any time
(``synspill experiment report FILE.toml``) from whatever cells have finished.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synspill.experiment.runner import (
    CellState,
    cell_state,
    finished_datasets,
    ref_slug,
    resolve_ref,
)
from synspill.experiment.spec import Cell, Study
from synspill.io import write_bytes, write_json, write_text

log = logging.getLogger(__name__)

VLM_KINDS = ("zero-shot", "icl", "lora")


def method_label(cell: Cell) -> str:
    """The row label of a cell, as the paper writes it (``Zero-shot``, ``ICL-5``, ``LoRA-V+L``, ``YOLO11``)."""
    p = cell.params
    base = cell.method
    if cell.kind == "zero-shot":
        return "Zero-shot" if base == "zero-shot" else base
    if cell.kind == "icl":
        return f"{'ICL' if base == 'icl' else base}-{p.get('k', 5)}"
    if cell.kind == "lora":
        return f"{'LoRA' if base == 'lora' else base}-{str(p.get('lora', 'v+l')).upper()}"
    return f"{base} ({cell.model_label})"


def size_key(label: str) -> tuple[int, float, str]:
    """Sort key of model labels: parameter counts (``3B`` < ``7B`` < ``32B``) first, then names."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*([BM])\b", label, re.IGNORECASE)
    if m:
        v = float(m.group(1)) * (1e9 if m.group(2).upper() == "B" else 1e6)
        return (0, v, label)
    return (1, 0.0, label)


@dataclass
class EvalSet:
    """One evaluation set's report and sizes."""

    ref: str
    gt: str
    n_images: int
    n_boxes: int
    report: Any  # synspill.evaluation.EvalReport (None when no cell has finished)
    error: str | None = None


def _fmt(v: float | None, nd: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def build_report(study: Study) -> dict[str, Any]:
    """Evaluate every finished cell on every evaluation set and write the report files.

    Returns:
        The ``report.json`` contents; files written: ``OUT/report.md``, ``OUT/report.json``,
        ``OUT/fig3a_<set>.png`` and ``OUT/report/<set>/eval.{md,json,csv}`` + plots.

    Raises:
        UsageError: The datasets were never prepared (run the study first).
    """
    from synspill.coco.dataset import load_coco
    from synspill.errors import SynspillError, UsageError
    from synspill.evaluation import evaluate_files, plot_hit_rate

    data = finished_datasets(study)
    states = [cell_state(study, c) for c in study.cells]
    if not data and all(s.status == "todo" for s in states):
        raise UsageError(f"{study.path}: nothing has run yet under {study.out}; run `synspill experiment run {study.path}` first")
    done = [s for s in states if s.status == "done"]
    sets: list[EvalSet] = []
    for ref in study.eval_on:
        try:
            gt = resolve_ref(study, data, ref)
        except SynspillError as e:  # its dataset could not be prepared: the cells show why
            sets.append(EvalSet(ref, "", 0, 0, None, error=str(e)))
            continue
        ds = load_coco(gt)
        rep = None
        usable = [s for s in done if ref in s.record.get("preds", {}) and Path(s.record["preds"][ref]).is_file()]
        if usable:
            rep = evaluate_files(gt, [s.record["preds"][ref] for s in usable], names=[s.cell.id for s in usable],
                                 iou_thresholds=study.iou, min_score=study.min_score, agnostic=study.agnostic,
                                 n_boot=study.bootstrap)
            sub = study.out / "report" / ref_slug(ref)
            rep.write(sub, force=True)
            rep.plot(sub, force=True)
        sets.append(EvalSet(ref, gt, len(ds.images), len(ds.annotations), rep))
    doc = _to_json(study, states, sets)
    figs = _figures(study, states, sets, doc, plot_hit_rate)
    doc["figures"] = figs
    write_json(study.out / "report.json", doc, indent=2)
    write_text(study.out / "report.md", _markdown(study, states, sets, doc))
    return doc


def _metrics_of(rep: Any, cell_id: str) -> dict[str, Any] | None:
    if rep is None:
        return None
    for r in rep.results:
        if r.name == cell_id:
            m = r.metrics
            out = {"hit_rate": {f"{t:.2f}".rstrip("0").rstrip("."): float(h) for t, h in zip(m.iou_thresholds, m.hit_rate, strict=True)},
                   "map50": float(m.map50), "map50_95": float(m.map50_95), "unscored": bool(r.unscored),
                   "n_predictions": int(m.n_pred_total), "notes": r.notes()}
            if r.ci:  # [evaluate] bootstrap: intervals over images (hit rate at the first IoU threshold)
                out["ci"] = {k: r.ci[k].to_dict() for k in ("map50", "hit_rate") if k in r.ci}
            return out
    return None


def _to_json(study: Study, states: list[CellState], sets: list[EvalSet]) -> dict[str, Any]:
    cells = []
    for s in states:
        c = s.cell
        cells.append({"id": c.id, "method": c.method, "label": method_label(c), "kind": c.kind, "model": c.model,
                      "model_label": c.model_label, "status": s.status, "error": s.error,
                      "seconds": s.record.get("seconds") if s.status == "done" else None,
                      "metrics": {e.ref: _metrics_of(e.report, c.id) for e in sets} if s.status == "done" else {}})
    return {"study": study.name, "file": str(study.path), "out": str(study.out), "iou": study.iou, "min_score": study.min_score,
            "bootstrap": study.bootstrap,
            "eval_sets": {e.ref: {"gt": e.gt, "images": e.n_images, "boxes": e.n_boxes, "error": e.error} for e in sets},
            "cells": cells}


def iou_table_model(study: Study, states: list[CellState]) -> str | None:
    """The model size of the Table-4 layout: ``[report] iou_table_model`` or the largest VLM present."""
    labels = sorted({s.cell.model_label for s in states if s.cell.kind in VLM_KINDS}, key=size_key)
    want = study.report.get("iou_table_model")
    if want is not None and str(want) in labels:
        return str(want)
    if want is not None:
        log.warning("[report] iou_table_model = %r is not a model of the study (%s); using the largest", want, ", ".join(labels))
    numeric = [lb for lb in labels if size_key(lb)[0] == 0]
    pick = numeric or labels
    return pick[-1] if pick else None


def _cell_value(s: CellState, doc_cell: dict[str, Any], ref: str, what: str) -> str:
    if s.status == "failed":
        return "failed"
    if s.status != "done":
        return "—"
    m = doc_cell["metrics"].get(ref)
    if m is None:
        return "—"
    if what == "map50":
        from synspill.bootstrap import Interval

        ci = m.get("ci", {}).get("map50")
        return (_fmt(m["map50"]) + (f" {Interval(**ci)}" if ci else "")
                + (" (unscored)" if m["unscored"] else ""))
    return _fmt(m["hit_rate"].get(what))


def _thresholds(doc: dict[str, Any]) -> list[str]:
    for c in doc["cells"]:
        for m in c["metrics"].values():
            if m:
                return list(m["hit_rate"])
    from synspill.metrics import parse_iou_thresholds

    return [f"{t:.2f}".rstrip("0").rstrip(".") for t in parse_iou_thresholds(doc["iou"])]


def _markdown(study: Study, states: list[CellState], sets: list[EvalSet], doc: dict[str, Any]) -> str:
    by_id = {c["id"]: c for c in doc["cells"]}
    thr = _thresholds(doc)
    t0 = thr[0]
    n_done = sum(s.status == "done" for s in states)
    n_failed = sum(s.status == "failed" for s in states)
    lines = [f"# Study `{study.name}`", "",
             f"From `{study.path}`; {len(states)} cells: {n_done} done, {n_failed} failed, "
             f"{len(states) - n_done - n_failed} not run. Hit rate = share of ground-truth boxes found (mean over classes)"
             + (f", counting predictions scoring >= {study.min_score}" if study.min_score > 0 else ", counting every prediction")
             + "; mAP@50 = COCO AP at IoU 0.5 (VLM answers are unscored, so their mAP ranks boxes arbitrarily).", "",
             "## Evaluation sets", ""]
    lines += _md(["set", "images", "boxes", "ground truth"],
                 [[e.ref, str(e.n_images), str(e.n_boxes), f"`{e.gt}`" if not e.error else f"not available: {e.error}"] for e in sets])
    vlm = [s for s in states if s.cell.kind in VLM_KINDS]
    det = [s for s in states if s.cell.kind not in VLM_KINDS]
    sizes = sorted({s.cell.model_label for s in vlm}, key=size_key)
    rows_order: list[str] = []
    for s in vlm:
        lb = method_label(s.cell)
        if lb not in rows_order:
            rows_order.append(lb)
    for e in sets:
        lines += [f"## Hit rate @{t0} on `{e.ref}` ({e.n_images} images, {e.n_boxes} boxes) — Table 2/3 layout", ""]
        rows = []
        for lb in rows_order:
            row = [lb]
            for size in sizes:
                hit = [s for s in vlm if method_label(s.cell) == lb and s.cell.model_label == size]
                row.append(_cell_value(hit[0], by_id[hit[0].cell.id], e.ref, t0) if hit else "")
            rows.append(row)
        if rows:
            lines += _md(["Method", *sizes], rows)
        if det:
            lines += _md(["Detector", f"HR@{t0}"], [[method_label(s.cell), _cell_value(s, by_id[s.cell.id], e.ref, t0)] for s in det])
    m4 = iou_table_model(study, states)
    t4 = [s for s in vlm if s.cell.model_label == m4] + det
    if t4:
        for e in sets:
            title = f"{m4}" if m4 else "detectors"
            lines += [f"## Hit rate by IoU on `{e.ref}` — Table 4 layout ({title}{' + detectors' if m4 and det else ''})", ""]
            lines += _md(["Method", *(f"HR@{t}" for t in thr)],
                         [[method_label(s.cell) + (f" ({s.cell.model_label})" if s.cell.kind in VLM_KINDS else ""),
                           *(_cell_value(s, by_id[s.cell.id], e.ref, t) for t in thr)] for s in t4])
    lines += ["## mAP@50 — Table 5 layout", ""]
    if study.bootstrap:
        lines += [f"In brackets: the 95% percentile bootstrap interval over images ({study.bootstrap} draws, the same draws for "
                  "every method): how far mAP@50 could move on other images like these.", ""]
    lines += _md(["Method", "Model", *(f"`{e.ref}`" for e in sets)],
                 [[method_label(s.cell), s.cell.model_label, *(_cell_value(s, by_id[s.cell.id], e.ref, "map50") for e in sets)]
                  for s in states])
    figs = doc.get("figures") or {}
    if figs:
        lines += ["## Hit rate vs IoU — Fig. 3a layout", ""]
        for ref, f in figs.items():
            lines += [f"![hit rate vs IoU on {ref}]({f})", ""]
    lines += ["## Cells", ""]
    rows = []
    for s in states:
        c = by_id[s.cell.id]
        status = {"done": "done", "failed": "**failed**", "partial": "partial (resumes)", "todo": "not run"}[s.status]
        secs = f"{c['seconds']:.0f}" if c.get("seconds") is not None else ""
        rows.append([f"`{s.cell.id}`", s.cell.kind, f"`{s.cell.model}`", status, secs, (s.error or "").replace("|", "\\|")])
    lines += _md(["cell", "kind", "model", "status", "seconds (all attempts)", "error"], rows)
    lines += [f"Per-set details (per-class tables, PR curves): `{study.out / 'report'}/<set>/eval.md`.", ""]
    return "\n".join(lines)


def _figures(study: Study, states: list[CellState], sets: list[EvalSet], doc: dict[str, Any], plot: Any) -> dict[str, str]:
    """Fig. 3a per evaluation set: the Table-4 model's methods + detectors (every done cell when few)."""
    m4 = iou_table_model(study, states)
    keep = {s.cell.id for s in states if s.cell.kind not in VLM_KINDS or s.cell.model_label == m4}
    figs = {}
    for e in sets:
        if e.report is None:
            continue
        results = [replace(r, name=_plot_name(states, r.name)) for r in e.report.results if r.name in keep]
        if not results:
            continue
        name = f"fig3a_{ref_slug(e.ref)}.png"
        write_bytes(study.out / name, plot(replace(e.report, results=results)))
        figs[e.ref] = name
    return figs


def _plot_name(states: list[CellState], cell_id: str) -> str:
    for s in states:
        if s.cell.id == cell_id:
            lb = method_label(s.cell)
            return lb + (f" ({s.cell.model_label})" if s.cell.kind in VLM_KINDS else "")
    return cell_id
