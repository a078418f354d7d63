"""Serving the dashboard: in a thread next to the watch loop, or in the foreground."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from synspill.errors import UsageError

log = logging.getLogger(__name__)


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
        # uvicorn installs signal handlers only in the main thread: watch keeps owning SIGINT/SIGTERM
        self._thread = threading.Thread(target=self.server.run, name="synspill-ui", daemon=True)

    def start(self, timeout: float = 10.0) -> UIServer:
        """Start and wait until it listens.

        Raises:
            UsageError: It could not bind (address in use, no permission) within ``timeout``.
        """
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise UsageError(f"dashboard could not listen on {self.host}:{self.config.port} "
                                 "(address in use or not allowed); pick another with --ui HOST:PORT")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        socks = [s for srv in getattr(self.server, "servers", []) for s in srv.sockets]
        return int(socks[0].getsockname()[1]) if socks else self.config.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)


def serve_forever(app: Any, host: str, port: int) -> None:
    """Serve in the foreground until Ctrl-C (``synspill ui``)."""
    import uvicorn

    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    except OSError as e:
        raise UsageError(f"dashboard could not listen on {host}:{port} ({e.strerror}); pick another with --bind") from None
