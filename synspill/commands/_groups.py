"""Lazily built command groups, and groups shared by several command modules.

Building a Typer command evaluates the type hints of all its parameters, and its module
imports the library code it calls; doing that for every command made ``synspill --help``
slow. A :class:`LazyGroup` lists its subcommands from a static table and imports and
builds only the one that runs (``tests/test_cli.py`` keeps the tables in step).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


class LazyCommand(NamedTuple):
    """A subcommand of a :class:`LazyGroup`, before it is built.

    Attributes:
        module: Module in ``synspill.commands`` whose ``register(app)`` adds the command
            to ``app`` under its name.
        help: First paragraph of the command's help, as the group's ``--help`` lists it.
    """

    module: str
    help: str


class LazyGroup(TyperGroup):
    """A TyperGroup whose :attr:`lazy_commands` are imported and built on first use.

    Until then each one is a placeholder holding only its name and help: enough for
    ``--help`` and for completing the command's name. (Click's types are typed ``Any``
    here: typer >= 0.29 vendors click in a private module.)
    """

    #: Subcommands by name, in the order ``--help`` lists them.
    lazy_commands: ClassVar[dict[str, LazyCommand]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False
        self._unbuilt = {name: entry for name, entry in self.lazy_commands.items() if name not in self.commands}
        placeholders = {name: TyperCommand(name, help=entry.help, rich_markup_mode=self.rich_markup_mode)
                        for name, entry in self._unbuilt.items()}
        self.commands = {**placeholders, **self.commands}

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The subcommand ``cmd_name``, built now if needed (help listings get the placeholder)."""
        entry = self._unbuilt.get(cmd_name)
        if entry is not None and not self._listing:
            self.commands[cmd_name] = self._build(cmd_name, entry)
            del self._unbuilt[cmd_name]
        return super().get_command(ctx, cmd_name)

    def _build(self, name: str, entry: LazyCommand) -> Any:
        """Import ``entry.module`` and build its command on a Typer app of its own."""
        holder = typer.Typer(rich_markup_mode=self.rich_markup_mode)
        importlib.import_module(f"synspill.commands.{entry.module}").register(holder)
        built = typer.main.get_group(holder).commands
        if name not in built:
            raise LookupError(f"synspill.commands.{entry.module}.register() adds {sorted(built)}, not {name!r}")
        return built[name]

    @contextmanager
    def _names_and_help_only(self) -> Iterator[None]:
        """While listing subcommands, :meth:`get_command` leaves placeholders unbuilt."""
        listing, self._listing = self._listing, True
        try:
            yield
        finally:
            self._listing = listing

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._names_and_help_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self._names_and_help_only():
            return super().shell_complete(ctx, incomplete)


class FinetuneGroup(LazyGroup):
    """``synspill finetune``: one subcommand per model family."""

    lazy_commands = {
        "yolo": LazyCommand("finetune_yolo", "Fine-tune YOLO (ultralytics) on COCO data, fully offline."),
        "detr": LazyCommand("finetune_detr", "Fine-tune RF-DETR (rfdetr's own training loop) on COCO data, fully offline."),
        "vlm": LazyCommand("finetune_vlm", "LoRA fine-tuning of Qwen2.5-VL (the paper: rank 8, alpha 1/r, lr 5e-5, "
                                           "800 steps, batch 8 x 4)."),
    }


finetune_app = typer.Typer(
    cls=FinetuneGroup,
    help="Fine-tune a model on (synthetic) COCO data: [bold]yolo[/], [bold]detr[/] or [bold]vlm[/].",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def register(app: typer.Typer) -> None:
    app.add_typer(finetune_app, name="finetune")
