"""``synspill dataset``: statistics, seeded stratified split, merge of COCO datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import ForceOpt, JsonOpt, OutDirOpt, SeedOpt

dataset_app = typer.Typer(
    help="Inspect, split and merge COCO datasets: [bold]stats[/], [bold]split[/], [bold]merge[/].",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

ImagesOpt = Annotated[Path | None, typer.Option("--images", help="Folder that file_name is relative to (default: the JSON's folder).")]


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


@dataset_app.command("stats")
def stats(
    coco: Annotated[Path, typer.Argument(help="COCO JSON file or dataset folder.", show_default=False)],
    images: ImagesOpt = None,
    check_images: Annotated[bool, typer.Option("--check-images", help="Also check every image file exists and is readable.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Images, boxes, images without boxes, boxes and images per class, box sizes."""
    import json

    from synspill.coco.dataset import load_coco
    from synspill.coco.tools import dataset_stats

    st = dataset_stats(load_coco(coco, images, check_images=check_images))
    if json_out:
        typer.echo(json.dumps(st, indent=2))
        return
    from rich.table import Table

    from synspill.console import out_console

    t = Table(title=f"{coco}", show_header=False, title_justify="left")
    for k in ("images", "annotations", "images_without_boxes", "boxes_per_image_max"):
        t.add_row(k.replace("_", " "), str(st[k]))
    q = st["box_area_fraction"]
    t.add_row("box area / image area", f"p10 {q['p10']:.4f}  median {q['median']:.4f}  p90 {q['p90']:.4f}")
    out_console.print(t)
    c = Table(title="per class", title_justify="left")
    for col in ("class", "boxes", "images"):
        c.add_column(col, justify="left" if col == "class" else "right")
    for name, row in st["classes"].items():
        c.add_row(name, str(row["boxes"]), str(row["images"]))
    out_console.print(c)


@dataset_app.command("split")
def split(
    coco: Annotated[Path, typer.Argument(help="COCO JSON file or dataset folder.", show_default=False)],
    out: OutDirOpt,
    fractions: Annotated[str | None, typer.Option("--fractions", help="train,val[,test] fractions summing to 1, e.g. 0.7,0.15,0.15 (default: an 80/10/10 split).", show_default=False)] = None,
    seed: SeedOpt = None,
    images: ImagesOpt = None,
    force: ForceOpt = False,
) -> None:
    """Seeded train/val/test split stratified by class; writes train.json, val.json[, test.json] and split.json."""
    from rich.table import Table

    from synspill.coco.tools import split_to_folder
    from synspill.console import console
    from synspill.params import given

    res = split_to_folder(coco, out, images=images, force=force, **given(fractions=fractions, seed=seed))
    summary = res.summary
    t = Table(title=f"split of {coco} (seed {res.seed}) -> {out}", title_justify="left")
    t.add_column("class")
    for name in summary:
        t.add_column(f"{name} boxes/images", justify="right")
    t.add_row("[bold]all images[/]", *[str(summary[n]["images"]) for n in summary])
    for c in sorted({c for n in summary for c in summary[n]["classes"]}):
        t.add_row(c, *[f"{summary[n]['classes'].get(c, {}).get('boxes', 0)}/{summary[n]['classes'].get(c, {}).get('images', 0)}" for n in summary])
    console.print(t)


@dataset_app.command("merge")
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="COCO JSON files or dataset folders to merge.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged COCO JSON file.", show_default=False)],
    mapping: Annotated[list[str] | None, typer.Option("--map", help="Map a category name to a class: --map 'oil=oil-spill' (repeatable).")] = None,
    force: ForceOpt = False,
) -> None:
    """Merge COCO datasets: ids re-numbered, categories mapped by name onto the taxonomy.

    The same image file in several inputs becomes one image with the boxes of all; a box an earlier input already has (same image, class and box) is left out and counted, so merging a dataset with itself gives the dataset.
    """
    from synspill.coco.dataset import load_coco, save_coco
    from synspill.coco.tools import merge as merge_ds
    from synspill.coco.tools import parse_label_map
    from synspill.console import console
    from synspill.errors import OutputExists, UsageError

    if len(inputs) < 2:
        raise UsageError("dataset merge needs at least two datasets; e.g. synspill dataset merge a.json b.json --out all.json")
    if out.suffix.lower() != ".json":
        raise UsageError(f"--out {out}: the merged dataset is a .json file; e.g. --out all.json")
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    label_map = parse_label_map(mapping)
    merged = merge_ds([load_coco(p) for p in inputs], root=out.parent, label_map=label_map)
    save_coco(merged, out)
    console.print(f"merged {len(inputs)} datasets -> {out}: {len(merged.images)} images, {len(merged.annotations)} boxes",
                  highlight=False)
    dup = merged.info["merge"]["duplicate_boxes"]
    if dup:
        console.print(f"[yellow]note:[/] {dup} duplicate boxes left out (same image file, class and box as in an earlier "
                      "input; merge never doubles a box)", highlight=False)
