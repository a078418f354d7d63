"""``synspill dataset``: statistics, seeded stratified split, merge of COCO datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import ForceOpt, OutDirOpt, SeedOpt

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
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")] = False,
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
    fractions: Annotated[str, typer.Option("--fractions", help="train,val[,test] fractions summing to 1.")] = "0.8,0.1,0.1",
    seed: SeedOpt = 0,
    images: ImagesOpt = None,
    force: ForceOpt = False,
) -> None:
    """Seeded train/val/test split stratified by class; writes train.json, val.json[, test.json]."""
    from synspill import __version__
    from synspill.coco.dataset import load_coco, save_coco
    from synspill.coco.tools import dataset_stats, parse_fractions, rebase
    from synspill.coco.tools import split as split_ds
    from synspill.console import console
    from synspill.errors import OutputExists
    from synspill.io import write_json

    fr = parse_fractions(fractions)
    ds = load_coco(coco, images)
    parts = split_ds(ds, fr, seed)
    targets = [out / f"{name}.json" for name in parts] + [out / "split.json"]
    for p in targets:
        if p.exists() and not force:
            raise OutputExists(f"{p} exists; pass --force to overwrite the split or choose another --out")
    summary = {}
    for name, part in parts.items():
        save_coco(rebase(part, out), out / f"{name}.json")
        summary[name] = {k: v for k, v in dataset_stats(part).items() if k in ("images", "annotations", "images_without_boxes", "classes")}
    write_json(out / "split.json", {"source": str(Path(coco).resolve()), "seed": seed, "fractions": list(fr), "synspill": __version__, "splits": summary}, indent=1)
    from rich.table import Table

    t = Table(title=f"split of {coco} (seed {seed}) -> {out}", title_justify="left")
    t.add_column("class")
    for name in parts:
        t.add_column(f"{name} boxes/images", justify="right")
    t.add_row("[bold]all images[/]", *[str(summary[n]["images"]) for n in parts])
    names = sorted({c for n in parts for c in summary[n]["classes"]})
    for c in names:
        t.add_row(c, *[f"{summary[n]['classes'].get(c, {}).get('boxes', 0)}/{summary[n]['classes'].get(c, {}).get('images', 0)}" for n in parts])
    console.print(t)


@dataset_app.command("merge")
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="COCO JSON files or dataset folders to merge.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged COCO JSON file.", show_default=False)],
    mapping: Annotated[list[str] | None, typer.Option("--map", help="Map a category name to a class: --map 'oil=oil-spill' (repeatable).")] = None,
    force: ForceOpt = False,
) -> None:
    """Merge COCO datasets: ids re-numbered, categories mapped by name onto the taxonomy."""
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
    console.print(f"merged {len(inputs)} datasets -> {out}: {len(merged.images)} images, {len(merged.annotations)} boxes")
