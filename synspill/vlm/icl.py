"""In-context learning: k solved examples (image + answer) before each query image.

The chat is ``system, (user: image_i + prompt, assistant: answer_i) x k, user: query + prompt``.
Each support answer is written in the model-input pixels of THAT support image (through
:func:`synspill.vlm.geometry.to_input`), exactly like a training target.

Support selection (reproducible: the same seed gives the same examples):

- ``random``: k images drawn uniformly (seeded).
- ``stratified``: round-robin over the classes present in the support set (and images with
  no box as one more stratum), a seeded shuffle inside each stratum, so every class is
  shown before any is shown twice.
- ``similar``: the k support images closest to the query by a colour histogram
  (4x4x4 RGB bins, L1-normalised, histogram intersection) -- cheap, needs no extra model,
  and picks scenes with the same lighting and floor. Ties break by the seeded order.

A query image is never its own example (matched by file path).

Support images get their own pixel budget so that k + 1 images fit the context:
``support_max_pixels = min(max_pixels, context_tokens * 28**2 // k)`` unless given.
NumPy + PIL here; the model runs through :class:`synspill.vlm.predictor.VLMPredictor`.

:func:`icl_to_results` is the whole job (support set + query images -> COCO results and
sidecar), the in-context counterpart of :func:`synspill.inference.predict_files`; ``synspill
icl`` and the experiment runner call it with an :class:`IclConfig`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DatasetError, OutputExists, UsageError
from synspill.models import PredictorConfig
from synspill.params import FromParams
from synspill.vlm import SelectMethod
from synspill.vlm.geometry import FACTOR, Resize, to_input
from synspill.vlm.parse import format_answer

SELECT_METHODS = tuple(m.value for m in SelectMethod)
HIST_BINS = 4


@dataclass(frozen=True)
class IclConfig(FromParams):
    """How the in-context examples are chosen and sized.

    Attributes:
        k: Examples per query (the paper: 5, 10, 15).
        select: ``random``, ``stratified`` or ``similar`` (see the module docstring).
        seed: Selection seed.
        context_tokens: Image tokens the k examples may use together.
        support_max_pixels: Pixel budget of each example (None: from ``context_tokens``).
    """

    k: int = 5
    select: str = SelectMethod.random.value
    seed: int = 0
    context_tokens: int = 8192
    support_max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UsageError(f"--k {self.k} must be at least 1 (zero-shot is `synspill predict --vlm`)")
        if self.select not in SELECT_METHODS:
            raise UsageError(f"--select {self.select!r} is unknown; use {', '.join(SELECT_METHODS)}")
        if self.context_tokens < 1:
            raise UsageError(f"--context-tokens {self.context_tokens} must be at least 1")


@dataclass
class IclSummary:
    """What :func:`icl_to_results` wrote.

    Attributes:
        results: The COCO results file.
        sidecar: Its ``.meta.json`` (written last: marks the file finished).
        n_queries: Images predicted.
        n_detections: Boxes written.
        dropped: VLM answers dropped while parsing, by reason.
        meta: The sidecar's contents.
    """

    results: Path
    sidecar: Path
    n_queries: int
    n_detections: int
    dropped: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SupportItem:
    """One solved example.

    Attributes:
        path: Image file.
        boxes: ``(N, 4)`` original-image absolute ``xyxy``.
        class_ids: ``(N,)`` taxonomy ids.
        hist: ``(HIST_BINS**3,)`` colour histogram (for ``similar``).
    """

    path: str
    boxes: np.ndarray
    class_ids: np.ndarray
    hist: np.ndarray


def colour_hist(image: Any) -> np.ndarray:
    """L1-normalised 4x4x4 RGB histogram of an image (PIL or ``(H, W, 3)`` uint8), on a 64 px thumbnail."""
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    im.thumbnail((64, 64))
    a = (np.asarray(im).reshape(-1, 3) // (256 // HIST_BINS)).astype(np.int64)
    h = np.bincount(a[:, 0] * HIST_BINS * HIST_BINS + a[:, 1] * HIST_BINS + a[:, 2], minlength=HIST_BINS ** 3).astype(np.float64)
    return h / max(h.sum(), 1.0)


def load_support(coco: str | Path) -> list[SupportItem]:
    """Read a COCO file of solved examples.

    Raises:
        DatasetError: Missing/invalid file or no images.
    """
    from PIL import Image

    from synspill.vlm.outputs import solved_images

    items = []
    for s in solved_images(coco):
        with Image.open(s.path) as pil:
            hist = colour_hist(pil)
        items.append(SupportItem(s.path, s.xyxy, s.class_ids, hist))
    if not items:
        raise DatasetError(f"{coco}: the support set has no images; ICL needs solved examples")
    return items


def select_support(items: list[SupportItem], k: int, method: str, seed: int, query: Any = None,
                   exclude: str | None = None) -> list[int]:
    """Indices of the k examples for one query.

    Args:
        items: The support set.
        k: How many examples.
        method: ``random``, ``stratified`` or ``similar``.
        seed: Selection seed.
        query: The query image (needed by ``similar``).
        exclude: A file path never to select (the query itself).

    Raises:
        UsageError: Unknown method, or fewer than k candidates.
    """
    if method not in SELECT_METHODS:
        raise UsageError(f"--select {method!r} is unknown; use {', '.join(SELECT_METHODS)}")
    ex = str(Path(exclude).resolve()) if exclude else None
    cand = [i for i, it in enumerate(items) if ex is None or str(Path(it.path).resolve()) != ex]
    if k > len(cand):
        raise UsageError(f"--k {k} but the support set has only {len(cand)} usable images; lower --k or add examples")
    rng = np.random.default_rng(seed)
    order = [cand[i] for i in rng.permutation(len(cand))]
    if method == "random":
        return order[:k]
    if method == "stratified":
        strata: dict[int, list[int]] = {}
        for i in order:
            keys = sorted(set(items[i].class_ids.tolist())) or [0]
            strata.setdefault(keys[int(rng.integers(len(keys)))], []).append(i)
        picked: list[int] = []
        while len(picked) < k:
            for c in sorted(strata):
                if strata[c] and len(picked) < k:
                    picked.append(strata[c].pop(0))
        return picked
    if query is None:
        raise UsageError("--select similar needs the query image")
    qh = colour_hist(query)
    rank = {i: r for r, i in enumerate(order)}
    sims = {i: float(np.minimum(items[i].hist, qh).sum()) for i in cand}
    return sorted(cand, key=lambda i: (-sims[i], rank[i]))[:k]


def support_budget(max_pixels: int, k: int, context_tokens: int = 8192, min_pixels: int = 4 * FACTOR * FACTOR) -> int:
    """Pixel budget of each support image so that k of them use about ``context_tokens`` image tokens."""
    return max(min_pixels, min(max_pixels, context_tokens * FACTOR * FACTOR // max(k, 1)))


def support_context(items: list[SupportItem], idx: list[int], max_pixels: int, min_pixels: int,
                    factor: int = FACTOR) -> tuple[list[Any], list[str]]:
    """Resized support images and their answers in their own model-input pixels."""
    from PIL import Image

    from synspill.vlm.model import prepare_image

    ims, answers = [], []
    for i in idx:
        it = items[i]
        with Image.open(it.path) as pil:
            im, r = prepare_image(pil.convert("RGB"), max_pixels, min_pixels, factor)
        ims.append(im)
        answers.append(format_answer([tuple(b) for b in to_input(it.boxes, r).tolist()], it.class_ids.tolist()))
    return ims, answers


def resize_of(item: SupportItem, max_pixels: int, min_pixels: int, factor: int = FACTOR) -> Resize:
    """The :class:`Resize` a support image gets (for tests and debugging)."""
    from PIL import Image

    with Image.open(item.path) as pil:
        return Resize.for_image(pil.width, pil.height, max_pixels, min_pixels, factor)


def run_icl(predictor: Any, support: list[SupportItem], queries: list[tuple[int, str]], k: int, method: str,
            seed: int, support_max_pixels: int, on_item: Callable[[int], None] | None = None,
            ) -> tuple[list[dict[str, Any]], Counter, dict[int, list[int]]]:
    """Predict every query with k in-context examples.

    Args:
        predictor: A :class:`synspill.vlm.predictor.VLMPredictor`.
        support: The solved examples.
        queries: ``(image_id, path)`` of the images to detect in.
        k: Examples per query.
        method: Selection method.
        seed: Selection seed.
        support_max_pixels: Pixel budget of each support image.
        on_item: Called with the number of images finished.

    Returns:
        ``(COCO results records, parse-drop counts, {image_id: support indices})``.
    """
    from PIL import Image

    records: list[dict[str, Any]] = []
    dropped: Counter = Counter()
    chosen: dict[int, list[int]] = {}
    step = max(1, predictor.batch)
    for s in range(0, len(queries), step):
        chunk = queries[s: s + step]
        images, ctx = [], []
        for image_id, path in chunk:
            try:
                with Image.open(path) as pil:
                    arr = np.asarray(pil.convert("RGB"))
            except OSError as e:
                raise DatasetError(f"{path}: cannot read image ({e}); fix or remove it") from None
            idx = select_support(support, k, method, seed, query=arr, exclude=path)
            chosen[image_id] = idx
            images.append(arr)
            ctx.append(support_context(support, idx, support_max_pixels, predictor.min_pixels, predictor.vlm.factor))
        dets = predictor.predict_with_context(images, ctx)
        for (image_id, _), d in zip(chunk, dets, strict=True):
            records += d.to_results(image_id)
            dropped.update(d.meta.get("dropped", {}))
        if on_item:
            on_item(len(chunk))
    return records, dropped, chosen


def icl_to_results(
    pcfg: PredictorConfig,
    support: str | Path,
    images: str | Path,
    out: str | Path,
    cfg: IclConfig | None = None,
    force: bool = False,
    extra_meta: dict[str, Any] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_item: Callable[[int], None] | None = None,
) -> IclSummary:
    """Predict every query image with k solved examples; write COCO results and the sidecar.

    Inputs (output free, queries, support set) are checked before the model loads.

    Args:
        pcfg: The VLM (``backend`` is taken as ``vlm``); ``options`` go to the predictor.
        support: COCO file of solved examples.
        images: Folder of query images, or a COCO file (its image ids are kept).
        out: COCO results file to write.
        cfg: Example selection and budgets (None: the defaults).
        force: Overwrite ``out``.
        extra_meta: More sidecar keys (the experiment runner's cell and evaluation hash).
        on_start: Called once the model is loaded, with ``queries``, ``support`` (image
            counts), ``support_max_pixels`` and ``max_pixels``.
        on_item: Called with the number of query images finished.

    Raises:
        OutputExists: ``out`` exists and not ``force``.
        DatasetError: No query images or no support images.
    """
    from synspill.detections import read_sidecar, write_results
    from synspill.vlm.outputs import list_queries, write_sidecar
    from synspill.vlm.predictor import load_predictor

    cfg = cfg or IclConfig()
    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite or choose another --out")
    queries, _ = list_queries(images)
    items = load_support(support)
    pred = load_predictor(pcfg)
    sup_px = cfg.support_max_pixels or support_budget(pred.max_pixels, cfg.k, cfg.context_tokens, pred.min_pixels)
    if on_start is not None:
        on_start({"queries": len(queries), "support": len(items), "support_max_pixels": sup_px, "max_pixels": pred.max_pixels})
    records, dropped, chosen = run_icl(pred, items, queries, cfg.k, cfg.select, cfg.seed, sup_px, on_item=on_item)
    write_results(out, records)
    side = write_sidecar(out, pred.name, dropped, method="icl", **(extra_meta or {}), k=cfg.k, select=cfg.select,
                         seed=cfg.seed, support=str(support), support_max_pixels=sup_px, max_pixels=pred.max_pixels,
                         support_images={str(i): v for i, v in chosen.items()})
    return IclSummary(out, side, len(queries), len(records), {k: int(v) for k, v in dropped.items()}, read_sidecar(side))
