"""Shared CLI options, defined once as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
DTypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on recent GPUs, fp32 on CPU), float32, bfloat16, float16.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
QuantOpt = Annotated[str, typer.Option("--quant", help="Load weights quantised: none, 4bit (NF4, QLoRA) or 8bit (CUDA).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
ClassesOpt = Annotated[str | None, typer.Option("--classes", help="Comma-separated class names or ids (default: all eight).")]
