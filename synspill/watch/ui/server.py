"""Serving the dashboard: in a thread next to the watch loop, or in the foreground."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from synspill.errors import UsageError

log = logging.getLogger(__name__)


def listen(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket on ``host:port`` (bound here, so a failure is one clear line).

    Raises:
        UsageError: The address is in use or not allowed (names ``flag``, the option to change).
    """
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"dashboard could not listen on {host}:{port} ({e.strerror or e}); pick another with {flag} HOST:PORT") from None
    return sock


class UIServer:
    """uvicorn serving an ASGI app on ``host:port`` in a daemon thread (``watch --ui``).

    Args:
        app: The Starlette app (:func:`synspill.watch.ui.app.create_app`).
        host, port: Where to listen (port 0 picks a free one; see :attr:`port`).
    """

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.host = host
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self._sock: socket.socket | None = None
        # uvicorn installs signal handlers only in the main thread: watch keeps owning SIGINT/SIGTERM
        self._thread = threading.Thread(target=lambda: self.server.run(sockets=[self._sock] if self._sock else None),
                                        name="synspill-ui", daemon=True)

    def start(self, timeout: float = 10.0) -> UIServer:
        """Start and wait until it listens.

        Raises:
            UsageError: It could not bind (address in use, no permission) or start within ``timeout``.
        """
        self._sock = listen(self.host, self.config.port, "--ui")
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise UsageError(f"dashboard on {self.host}:{self.config.port} did not start within {timeout:g} s")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1]) if self._sock is not None else self.config.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)


def serve_forever(app: Any, host: str, port: int, announce: Callable[[], None] | None = None) -> None:
    """Serve in the foreground until Ctrl-C (``synspill ui``); ``announce`` runs once it listens.

    Raises:
        UsageError: The address is in use or not allowed.
    """
    import uvicorn

    sock = listen(host, port, "--bind")
    if announce is not None:
        announce()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
