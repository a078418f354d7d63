"""Command groups shared by several command modules."""

import typer

finetune_app = typer.Typer(
    help="Fine-tune a model on (synthetic) COCO data: [bold]yolo[/], [bold]detr[/] or [bold]vlm[/].",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
