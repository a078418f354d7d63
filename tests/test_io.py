"""File helpers: the one image listing (suffixes, hidden files, recursion, order)."""

from __future__ import annotations

from synspill.io import IMAGE_SUFFIXES, list_images


def test_list_images_suffixes_hidden_and_order(tmp_path):
    for rel in ("b.JPG", "a.png", "c.tif", "d.TIFF", "notes.txt", ".x.jpg.s0of1.tmp", ".hidden.jpg",
                "sub/e.webp", ".ipynb_checkpoints/f.jpg", "sub/.g.bmp"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert got == ["a.png", "b.JPG", "c.tif", "d.TIFF", "sub/e.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.png", "b.JPG", "c.tif", "d.TIFF"]


def test_image_suffixes_include_tiff():
    assert {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp", ".webp"} == set(IMAGE_SUFFIXES)
