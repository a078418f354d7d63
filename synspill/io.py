"""Files: atomic writes (temp name in the same folder, fsync, rename) and image listing.

A crash or Ctrl-C leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Image file suffixes synspill reads, lower case (a search by stem tries them in this order).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files in ``folder`` (and its subfolders when ``recursive``), sorted by path.

    A file counts when its suffix (any case) is one of :data:`IMAGE_SUFFIXES`. Hidden
    files and folders (a name starting with ``.``, e.g. temp files of an interrupted write
    or ``.ipynb_checkpoints``) are skipped. The caller decides whether an empty list is an
    error (and words it).
    """
    root = Path(folder)
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit it replaces ``path`` atomically.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the umask).

    Args:
        path: Final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: Text encoding (ignored for binary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new hidden temp file beside ``path``: ``(fd, its path)``.

    Created with mode 0666 minus the umask, as ``open(path, "w")`` would create ``path``
    (``tempfile.mkstemp`` makes 0600, which the rename would keep).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (compact unless ``indent``)."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent, separators=None if indent else (",", ":"))
        f.write("\n")


def save_image(path: str | os.PathLike, image: Any, quality: int = 92) -> None:
    """Save a PIL image or an ``HxWx3`` uint8 RGB array atomically (format from the suffix)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    with atomic_open(path, "wb") as f:
        image.save(f, format=fmt, **({"quality": quality} if fmt in {"JPEG", "WEBP"} else {}))
