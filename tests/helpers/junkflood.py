"""A censor's junk flood on loopback: a UDP server that answers every datagram with a
spray of junk datagrams from the address the probe sent to (so they reach its connected
flow), as an on-path censor can to any DNS query or STUN request."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from tests.helpers.background import BackgroundServer


class JunkSprayer(BackgroundServer):
    """Answers each datagram with up to ``count`` junk datagrams within ``seconds``."""

    def __init__(self, count: int = 20_000, seconds: float = 2.0, size: int = 48) -> None:
        super().__init__()
        self.count, self.seconds = count, seconds
        self.junk = os.urandom(size)  # neither DNS nor STUN: both parsers refuse it
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.sent = 0
        self.triggers = 0

    def _serve_once(self) -> None:
        _data, peer = self.sock.recvfrom(65535)
        self.triggers += 1
        self._spray(peer)

    def _spray(self, peer: Any) -> None:
        end = time.monotonic() + self.seconds
        for n in range(self.count):
            if n % 256 == 0 and time.monotonic() > end:
                return
            try:
                self.sock.sendto(self.junk, peer)
            except OSError:  # the probe closed its flow: ICMP port unreachable
                return
            self.sent += 1
