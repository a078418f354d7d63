"""Dataset tools: merge, seeded class-stratified split, subset, re-rooting of image paths.

Boxes are never touched here: every function keeps COCO ``[x, y, w, h]`` absolute pixels.

Image path rule (used by :func:`merge` and :func:`rebase`): a dataset written to a folder
``root`` stores each image's ``file_name`` **relative to root when the image lies inside
root**, and as an **absolute path otherwise**. So a dataset folder stays movable as a whole,
and a dataset that points at scene images elsewhere still finds them wherever the JSON is.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from synspill import taxonomy
from synspill.coco.dataset import Annotation, Category, CocoDataset, ImageRecord
from synspill.errors import DatasetError, UsageError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
#: train/val/test fractions when none are given.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: The manifest :func:`split_to_folder` writes beside the splits.
SPLIT_MANIFEST = "split.json"


# ---- paths -----------------------------------------------------------------------------
def resolved_image_path(ds: CocoDataset, im: ImageRecord) -> Path:
    """The absolute, normalised path of an image of ``ds`` (no symlink resolution)."""
    return Path(os.path.abspath(ds.image_path(im)))


def relative_file_name(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` if it lies inside it, else absolute (POSIX separators)."""
    path = Path(os.path.abspath(path))
    if root is not None:
        root = Path(os.path.abspath(root))
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def rebase(ds: CocoDataset, root: str | os.PathLike) -> CocoDataset:
    """A copy of ``ds`` whose ``file_name`` values are valid from the folder ``root``.

    Follows the module's path rule: relative when the image is under ``root``, absolute
    otherwise. Use it before saving a dataset into another folder than it was loaded from.
    """
    new_root = Path(os.path.abspath(root))
    images = [replace(im, file_name=relative_file_name(resolved_image_path(ds, im), new_root), extra=dict(im.extra)) for im in ds.images]
    return CocoDataset(images, list(ds.annotations), list(ds.categories), new_root, dict(ds.info), list(ds.licenses))


# ---- labels ----------------------------------------------------------------------------
def parse_label_map(pairs: Iterable[str] | None) -> dict[str, str]:
    """Parse ``--map SRC=DST`` values into ``{src_lower: taxonomy_name}``.

    ``DST`` may be a taxonomy name, alias or id; ``SRC`` is matched case-insensitively.

    Raises:
        UsageError: A pair without ``=`` or a ``DST`` that is not a taxonomy class.
    """
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--map {pair!r} has no '='; write it as SRC=DST, e.g. --map 'Oil puddle=oil-spill'")
        src, dst = (s.strip() for s in pair.rsplit("=", 1))
        if not src:
            raise UsageError(f"--map {pair!r} has an empty SRC label; write it as SRC=DST")
        try:
            cid = taxonomy.class_id(dst)
        except UsageError:
            raise UsageError(f"--map {pair!r}: {dst!r} is not a taxonomy class; use one of: {', '.join(taxonomy.NAMES)}") from None
        out[src.lower()] = taxonomy.BY_ID[cid].name
    return out


def map_label(label: str, label_map: Mapping[str, str] | None = None) -> str | None:
    """The taxonomy name for a tool label: ``label_map`` first, then :func:`taxonomy.normalize_name`."""
    if label_map:
        hit = label_map.get(label.strip().lower())
        if hit is not None:
            return hit
    return taxonomy.normalize_name(label)


# ---- background images (hard negatives) ------------------------------------------------
def add_background(ds: CocoDataset, sources: Iterable[str | os.PathLike]) -> CocoDataset:
    """``ds`` plus the images of other COCO datasets as background images (no boxes).

    For hard negatives (``synspill events false-alarm`` writes them): any boxes those
    datasets have are ignored; an image file ``ds`` already holds is not added twice. The
    added images get new ids after ``ds``'s and absolute ``file_name`` s. ``ds`` itself is
    not changed.

    Args:
        ds: The training dataset.
        sources: COCO files, or folders holding ``annotations.json``.

    Returns:
        A new dataset (records of ``ds`` shared, not copied).

    Raises:
        DatasetError: A source is missing or not a valid COCO file, or one of its images is missing.
    """
    from synspill.coco.dataset import load_coco

    out = CocoDataset(list(ds.images), list(ds.annotations), list(ds.categories), ds.root, dict(ds.info), list(ds.licenses))
    have = {resolved_image_path(ds, im) for im in ds.images}
    next_id = ds.next_image_id()
    added = 0
    for src in sources:
        neg = load_coco(src, check_images=True)
        for im in neg.images:
            path = resolved_image_path(neg, im)
            if path in have:
                continue
            have.add(path)
            out.images.append(ImageRecord(next_id, str(path), im.width, im.height, {"background": True}))
            next_id += 1
            added += 1
    if added:
        log.info("added %d background image(s) (no boxes)", added)
    return out


# ---- merge -----------------------------------------------------------------------------
def merge(
    datasets: Sequence[CocoDataset],
    root: str | os.PathLike | None = None,
    label_map: Mapping[str, str] | None = None,
) -> CocoDataset:
    """Merge datasets into one over the taxonomy categories.

    Image and annotation ids are re-numbered from 1 in input order. Categories are
    mapped by *name* (``label_map`` from :func:`parse_label_map`, then taxonomy aliases), so
    two datasets with different category ids for ``oil-spill`` merge correctly. The same
    image file (same absolute path) appearing in several datasets becomes one image that
    carries the boxes of all of them.

    Merging is idempotent: a box that an earlier input already has -- same image file, same
    class, same ``[x, y, w, h]`` to 0.01 px (the precision files are saved with) -- is left
    out, so ``merge([a, a])`` equals ``a`` and overlapping exports do not double boxes. How
    many were left out is in ``info["merge"]["duplicate_boxes"]`` (boxes that differ in
    any coordinate or the class are all kept: two annotators' boxes are both data).

    Args:
        datasets: Datasets to merge; each must have a ``root`` (or absolute ``file_name``).
        root: Folder the merged dataset will be saved in. ``file_name`` becomes relative to
            it for images inside it and absolute otherwise (see the module docstring).
            None: every ``file_name`` is absolute.
        label_map: Tool-label -> taxonomy-name overrides (keys lower-case).

    Returns:
        The merged dataset, categories = the eight taxonomy classes.

    Raises:
        DatasetError: A used category name is not a taxonomy class (fix: ``--map``), or the
            same image file has different sizes in two datasets.
    """
    new_root = Path(os.path.abspath(root)) if root is not None else None
    out = CocoDataset(root=new_root, info={"description": "merged by synspill", "sources": len(datasets)})
    by_path: dict[Path, ImageRecord] = {}
    next_ann = 1
    seen: set[tuple[int, int, tuple[float, ...]]] = set()  # (merged image id, class, box) of earlier inputs
    duplicates = 0
    for k, ds in enumerate(datasets):
        mine: set[tuple[int, int, tuple[float, ...]]] = set()
        src = str(ds.root) if ds.root is not None else f"dataset #{k + 1}"
        used = {a.category_id for a in ds.annotations}
        cat_map: dict[int, int] = {}
        for c in ds.categories:
            name = map_label(c.name, label_map)
            if name is None:
                if c.id in used:
                    raise DatasetError(
                        f"{src}: category {c.id} {c.name!r} is not a taxonomy class; map it with --map '{c.name}=<class>' "
                        f"(classes: {', '.join(taxonomy.NAMES)})"
                    )
                continue
            cat_map[c.id] = taxonomy.BY_NAME[name].id
        id_map: dict[int, int] = {}
        for im in ds.images:
            path = resolved_image_path(ds, im)
            have = by_path.get(path)
            if have is not None:
                if (have.width, have.height) != (im.width, im.height):
                    raise DatasetError(
                        f"{src}: image {im.id} {str(path)!r} is {im.width}x{im.height} here but {have.width}x{have.height} "
                        "in an earlier dataset; fix the size in one of them"
                    )
                id_map[im.id] = have.id
                continue
            rec = ImageRecord(len(out.images) + 1, relative_file_name(path, new_root), im.width, im.height, dict(im.extra))
            by_path[path] = rec
            out.images.append(rec)
            id_map[im.id] = rec.id
        for a in ds.annotations:
            if a.category_id not in cat_map:
                raise DatasetError(f"{src}: annotation {a.id} has category_id {a.category_id}, which is not a category; validate the dataset first")
            if a.image_id not in id_map:
                raise DatasetError(f"{src}: annotation {a.id} refers to image_id {a.image_id}, which is not in 'images'; validate the dataset first")
            key = (id_map[a.image_id], cat_map[a.category_id], tuple(round(float(v), 2) for v in a.bbox))
            if key in seen:
                duplicates += 1
                continue
            mine.add(key)
            out.annotations.append(
                Annotation(next_ann, id_map[a.image_id], cat_map[a.category_id], list(a.bbox), a.area, a.iscrowd, a.segmentation, dict(a.extra))
            )
            next_ann += 1
        seen |= mine
    out.info["merge"] = {"inputs": len(datasets), "duplicate_boxes": duplicates}
    if duplicates:
        log.info("merge: %d duplicate box(es) left out (same image, class and box as in an earlier input)", duplicates)
    return out


# ---- subset / split --------------------------------------------------------------------
def subset(ds: CocoDataset, image_ids: Iterable[int]) -> CocoDataset:
    """The images ``image_ids`` of ``ds`` with their boxes; ids, categories and root kept.

    Raises:
        DatasetError: An id is not an image of ``ds``.
    """
    want = set(image_ids)
    have = {im.id for im in ds.images}
    missing = sorted(want - have)
    if missing:
        raise DatasetError(f"subset: image id {missing[0]} is not in the dataset ({len(missing)} missing ids); use ids from its 'images'")
    images = [im for im in ds.images if im.id in want]
    anns = [a for a in ds.annotations if a.image_id in want]
    return CocoDataset(images, anns, list(ds.categories), ds.root, dict(ds.info), list(ds.licenses))


def parse_fractions(spec: str | Sequence[float]) -> tuple[float, ...]:
    """Parse ``"0.8,0.1,0.1"`` (or a sequence) into 2 or 3 non-negative fractions summing to 1.

    Raises:
        UsageError: Not numbers, negative, wrong count, or not summing to 1.
    """
    if isinstance(spec, str):
        try:
            fr = tuple(float(p) for p in spec.split(",") if p.strip())
        except ValueError:
            raise UsageError(f"--fractions {spec!r} is not a comma-separated list of numbers; e.g. 0.8,0.1,0.1") from None
    else:
        fr = tuple(float(f) for f in spec)
    if len(fr) not in (2, 3):
        raise UsageError(f"--fractions {spec!r} has {len(fr)} values; give 2 (train,val) or 3 (train,val,test)")
    if any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UsageError(f"--fractions {spec!r} must be non-negative and sum to 1 (they sum to {sum(fr):g})")
    return fr


def split(
    ds: CocoDataset,
    fractions: str | Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> dict[str, CocoDataset]:
    """Seeded train/val/test split, stratified by class with iterative stratification.

    Multi-label images are handled with iterative stratification (Sechidis et al., 2011):
    the class with the fewest unassigned images is placed first, each of its images going
    to the split that still wants most images of that class (ties, and wants below one
    image, which every split has for the last image of a class: the split that wants most
    images overall, then a seeded coin). Images without boxes are spread afterwards
    to the splits that are most short of images. Every image lands in exactly one split;
    image order in the input does not matter (images are sorted by id before shuffling).

    Args:
        ds: The dataset.
        fractions: 2 or 3 non-negative numbers summing to 1.
        seed: Same seed, same split.
        names: Split names (default ``train, val[, test]``).

    Returns:
        ``{name: subset}`` in the order of ``fractions``; ids are those of ``ds``.
    """
    fr = parse_fractions(fractions)
    names = tuple(names) if names is not None else SPLIT_NAMES[: len(fr)]
    if len(names) != len(fr):
        raise UsageError(f"split: {len(names)} names for {len(fr)} fractions")
    rng = random.Random(seed)
    labels: dict[int, set[int]] = {im.id: set() for im in ds.images}
    for a in ds.annotations:
        if a.image_id in labels:
            labels[a.image_id].add(a.category_id)
    ids = sorted(labels)
    rng.shuffle(ids)
    n = len(ids)
    # desired image counts, overall and per class
    want_total = [f * n for f in fr]
    class_total = Counter(c for i in ids for c in labels[i])
    want = {c: [f * k for f in fr] for c, k in class_total.items()}
    assign: dict[int, int] = {}

    def pick(scores: list[tuple[float, ...]]) -> int:
        best = max(scores)
        cands = [j for j, s in enumerate(scores) if s == best]
        return cands[0] if len(cands) == 1 else rng.choice(cands)

    def class_want(w: float) -> float:
        # less than one more image of a class is no claim on it: the overall need decides, so
        # rare classes (a single image each) are not all handed to the largest split
        return 0.0 if 0.0 < w < 1.0 else w

    pending = [i for i in ids if labels[i]]
    remaining = Counter(class_total)
    while pending:
        # the class with the fewest remaining images (ties: lowest id, for determinism)
        cls = min((k, c) for c, k in remaining.items() if k > 0)[1]
        chosen = [i for i in pending if cls in labels[i]]
        for i in chosen:
            j = pick([(class_want(want[cls][s]), want_total[s]) if fr[s] > 0 else (-1e18, -1e18) for s in range(len(fr))])
            assign[i] = j
            want_total[j] -= 1
            for c in labels[i]:
                want[c][j] -= 1
                remaining[c] -= 1
        taken = set(chosen)
        pending = [i for i in pending if i not in taken]
    for i in ids:
        if not labels[i]:
            j = pick([(want_total[s],) if fr[s] > 0 else (-1e18,) for s in range(len(fr))])
            assign[i] = j
            want_total[j] -= 1
    groups: list[list[int]] = [[] for _ in fr]
    for i, j in assign.items():
        groups[j].append(i)
    out = {name: subset(ds, g) for name, g in zip(names, groups, strict=True)}
    for name, part in out.items():
        part.info = {**ds.info, "split": name, "split_seed": seed, "split_fractions": list(fr)}
    return out


@dataclass
class SplitResult:
    """What :func:`split_to_folder` wrote.

    Attributes:
        files: Split name -> its COCO file (``train``, ``val``[, ``test``]).
        manifest: The manifest ``split.json`` (source, seed, fractions, version, summary).
        summary: Split name -> ``images``, ``annotations``, ``images_without_boxes`` and
            per-class ``{"boxes", "images"}`` (from :func:`dataset_stats`).
        seed: The seed used.
    """

    files: dict[str, Path]
    manifest: Path
    summary: dict[str, dict]
    seed: int


def split_to_folder(coco: str | os.PathLike, out: str | os.PathLike, fractions: str | Sequence[float] = DEFAULT_FRACTIONS,
                    seed: int = 0, images: str | os.PathLike | None = None, force: bool = False) -> SplitResult:
    """Split a dataset (see :func:`split`) into ``out/<split>.json`` plus the manifest ``out/split.json``.

    Args:
        coco: COCO file or dataset folder.
        out: Folder to write to (created); ``file_name`` s are re-rooted there (:func:`rebase`).
        fractions: ``"0.8,0.1,0.1"`` or a sequence of 2-3 fractions summing to 1.
        seed: Same seed, same split.
        images: Folder ``file_name`` is relative to (default: the JSON's folder).
        force: Overwrite existing split files.

    Raises:
        OutputExists: A split file or the manifest exists and not ``force`` (nothing is written).
        DatasetError: A split with a non-zero fraction gets no image (nothing is written).
    """
    from synspill import __version__
    from synspill.coco.dataset import load_coco, save_coco
    from synspill.errors import OutputExists
    from synspill.io import write_json

    out = Path(out)
    fr = parse_fractions(fractions)
    ds = load_coco(coco, images)
    parts = split(ds, fr, seed)
    check_split_sizes(parts, fr, len(ds.images), str(coco))
    files = {name: out / f"{name}.json" for name in parts}
    for p in [*files.values(), out / SPLIT_MANIFEST]:
        if p.exists() and not force:
            raise OutputExists(f"{p} exists; pass --force to overwrite the split or choose another --out")
    keep = ("images", "annotations", "images_without_boxes", "classes")
    summary = {}
    for name, part in parts.items():
        save_coco(rebase(part, out), files[name])
        summary[name] = {k: v for k, v in dataset_stats(part).items() if k in keep}
    manifest = out / SPLIT_MANIFEST
    write_json(manifest, {"source": str(Path(coco).resolve()), "seed": seed, "fractions": list(fr), "synspill": __version__,
                          "splits": summary}, indent=1)
    return SplitResult(files, manifest, summary, seed)


def check_split_sizes(parts: Mapping[str, CocoDataset], fractions: Sequence[float], n_images: int, source: str,
                      what: str = "--fractions") -> None:
    """Raise when a split that was given a share of the images gets none of them.

    An empty val or test split makes the training or evaluation that reads it fail later
    (or, worse, report nothing); a fraction of 0 asks for an empty split and is fine.

    Args:
        parts: The splits, in the order of ``fractions``.
        fractions: Their fractions.
        n_images: Images of the dataset that was split.
        source: The dataset, for the message.
        what: Where the fractions came from, for the message (an option or a study-file key).

    Raises:
        DatasetError: Naming the split, the image count and the fix.
    """
    empty = [name for (name, part), f in zip(parts.items(), fractions, strict=True) if f > 0 and not part.images]
    if empty:
        fr = ",".join(f"{f:g}" for f in fractions)
        raise DatasetError(
            f"{source}: {what} {fr} over {n_images} image(s) gives the {' and '.join(empty)} split no image; "
            f"use more images, larger fractions for {', '.join(empty)}, or a 0 fraction for a split you do not want")


def class_image_counts(ds: CocoDataset) -> dict[int, int]:
    """Number of images that contain at least one box of each category id."""
    seen = {(a.image_id, a.category_id) for a in ds.annotations}
    return dict(sorted(Counter(c for _, c in seen).items()))


def taxonomy_categories() -> list[Category]:
    """The eight taxonomy classes as :class:`Category` records."""
    return [Category(**c) for c in taxonomy.coco_categories()]


def dataset_stats(ds: CocoDataset) -> dict:
    """:meth:`CocoDataset.stats` plus per-class ``{"boxes", "images"}`` and max boxes per image."""
    st = ds.stats()
    names = ds.category_names()
    imgs = class_image_counts(ds)
    boxes = Counter(a.category_id for a in ds.annotations)
    st["classes"] = {names.get(c, str(c)): {"boxes": boxes[c], "images": imgs.get(c, 0)} for c in sorted(boxes)}
    per_image = Counter(a.image_id for a in ds.annotations)
    st["boxes_per_image_max"] = max(per_image.values(), default=0)
    return st
