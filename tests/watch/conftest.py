"""Fixtures for the watch tests: a spill video, free loopback ports, a watch config."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.watch.blobs import make_spill_video


@pytest.fixture(scope="session")
def spill_video(tmp_path_factory) -> Path:
    """12 s at 10 fps, 320x240: a noise square on frame 10 only; a spill from 2 s growing to 9 s."""
    return make_spill_video(tmp_path_factory.mktemp("video") / "spill.avi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
