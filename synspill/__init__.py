"""synspill: detect industrial spills, leaks and stains with synthetic training data.

The package is a library first; ``synspill.cli`` is a thin Typer layer over it.
Importing ``synspill`` is cheap: heavy libraries (torch, diffusers, transformers,
ultralytics, rfdetr) load inside the functions that need them.
"""

__version__ = "0.1.0"
