"""A test server's life cycle: one socket served by a daemon thread, started by ``with``,
stopped (the thread joined, the socket closed) after it. Subclasses set ``self.sock`` (with
a short timeout, so the loop sees the stop) and implement ``_serve_once``."""

from __future__ import annotations

import socket
import threading
from typing import Any, Self


class BackgroundServer:
    sock: socket.socket

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve_once()
            except (TimeoutError, OSError):
                continue

    def _serve_once(self) -> None:
        """Wait for one request (a socket timeout or error just loops) and answer it."""
        raise NotImplementedError
