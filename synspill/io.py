"""Files: atomic writes (temp name in the same folder, fsync, rename) and image listing.

A crash or Ctrl-C leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from synspill.errors import StorageError

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


#: How far from its end an image file's end marker may be (some cameras append a few bytes).
_TAIL = 4096


def check_image_file(path: str | os.PathLike) -> None:
    """Stop on an image file that is cut short: an interrupted copy or download.

    Cheap (reads the file's last few KB): a JPEG must hold its end-of-image marker there,
    a PNG its ``IEND`` chunk; other formats are only checked to be non-empty. A complete
    file that still cannot be decoded is reported by whatever reads it.

    Raises:
        DatasetError: The file is empty or truncated; the message names it.
    """
    from synspill.errors import DatasetError

    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(8)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    if size == 0:
        why = "the file is empty"
    elif head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail:
        why = "the JPEG data is cut short (no end-of-image marker)"
    elif head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        why = "the PNG data is cut short (no IEND chunk)"
    else:
        return
    raise DatasetError(f"{p}: image file is truncated: {why}; replace it with a complete copy (or remove it), "
                       "then run the command again")


#: errno -> what to do, for faults of the machine (not of the input); see :func:`storage_error`.
_STORAGE_FIXES: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "fix its permissions or choose another path"),
    errno.EPERM: ("operation not permitted", "fix its permissions or choose another path"),
    errno.EROFS: ("read-only file system", "choose a path on a writable disk"),
    errno.ENOSPC: ("no space left on the disk", "free some space and run the same command again (finished work is kept)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run the same command again (finished work is kept)"),
}
#: Temp names of :func:`atomic_open` (``.NAME.<random>.tmp``) and the job runner (``.NAME.s0of1.tmp``).
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")


def target_of(path: str | os.PathLike) -> Path:
    """The file a temp name of an atomic write stands for (``.x.json.ab12.tmp`` -> ``x.json``); else ``path``."""
    p = Path(path)
    m = _TEMP_RE.match(p.name)
    return p.with_name(m.group("name")) if m else p


def storage_error(e: OSError, target: str | os.PathLike | None = None) -> StorageError | None:
    """One-line :class:`StorageError` for an OS error of the machine (permissions, full disk ...).

    Args:
        e: The error.
        target: The file meant (default: ``e.filename``, temp names mapped to their target).

    Returns:
        The error naming the path, the cause and the fix; None for other OS errors (a
        missing file, a bad path: the caller's own message is better for those).
    """
    fix = _STORAGE_FIXES.get(e.errno or 0)
    if fix is None:
        return None
    where = target if target is not None else (target_of(e.filename) if e.filename else None)
    return StorageError(f"{where if where is not None else 'writing output'}: {fix[0]}; {fix[1]}")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                durable: bool = True) -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit it replaces ``path`` atomically.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the umask).

    Args:
        path: Final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: Text encoding (ignored for binary).
        durable: fsync before the rename (survives a power cut). Readers never see a partial
            file either way; skip it only for files that are rewritten every few seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a failed write/fsync (a full disk) names no file: name the target
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


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (``durable``: see :func:`atomic_open`)."""
    with atomic_open(path, "wb", durable=durable) as f:
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
