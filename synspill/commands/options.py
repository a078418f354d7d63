"""Shared CLI options, defined once as ``Annotated`` aliases.

Options whose value a library config defaults default to ``None`` here: a command passes
only what the user set (:func:`synspill.params.given`) and the config supplies the rest, so
every default lives in one place. Choices are ``str`` Enums owned by the libraries, so click
rejects a bad value and ``--help`` lists the good ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.runtime import DType, Quant

DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto (the default), cpu, cuda, cuda:N or mps.", show_default=False)]
DTypeOpt = Annotated[DType | None, typer.Option("--dtype", help="auto (the default: bf16 on recent GPUs, fp32 on CPU), float32, bfloat16, float16.", show_default=False)]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed; the same seed gives the same result.", show_default=False)]
QuantOpt = Annotated[Quant | None, typer.Option("--quant", help="Load weights quantised: none (the default), 4bit (NF4, QLoRA) or 8bit (CUDA).", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
ClassesOpt = Annotated[str | None, typer.Option("--classes", help="Comma-separated class names or ids (default: all eight).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (for scripts) instead of a table.")]


def batch_size(help: str) -> Any:
    """The ``--batch-size`` option (``--batch``, the old spelling of some commands, still works)."""
    return typer.Option("--batch-size", "--batch", help=help, show_default=False)


ScalesOpt = Annotated[str | None, typer.Option(
    "--scales", help="YOLO: inference sizes as multiples of --imgsz, boxes merged, e.g. 1,0.8 (default: the run's, "
                     "1,0.8 for runs of `synspill finetune yolo`; 1 turns it off).", show_default=False)]


def parse_scales(spec: str | None) -> tuple[float, ...] | None:
    """``"1,0.8"`` -> ``(1.0, 0.8)``; None stays None (the run's default).

    Raises:
        UsageError: Not a comma list of numbers.
    """
    if spec is None:
        return None
    try:
        return tuple(float(v) for v in spec.split(",") if v.strip())
    except ValueError:
        from synspill.errors import UsageError

        raise UsageError(f"--scales {spec!r} must be numbers separated by commas, e.g. 1,0.8") from None
