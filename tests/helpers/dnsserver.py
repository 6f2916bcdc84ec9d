"""A tiny DNS server on loopback for tests (dnspython's test-nameserver idea).

``handle(request)`` returns a ``dns.message.Message`` (the reply), raw ``bytes`` (sent as
they are: garbage, truncated), ``None`` (stay silent), or a list of those, sent in order
(an injected reply followed by the real one). Runs in a thread so that it
also serves a probe started as a subprocess.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.helpers.background import BackgroundServer

Reply = "dns.message.Message | bytes | None"
Handler = Callable[[dns.message.Message], "Reply | list[Reply]"]


class LoopbackDnsServer(BackgroundServer):
    def __init__(self, handle: Handler, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.handle = handle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.queries: list[tuple[str, str]] = []

    @property
    def resolver(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _serve_once(self) -> None:
        data, peer = self.sock.recvfrom(65535)
        self._answer(data, peer)

    def _answer(self, data: bytes, peer: Any) -> None:
        try:
            request = dns.message.from_wire(data)
        except Exception:
            return
        q = request.question[0]
        self.queries.append((str(q.name).rstrip("."), dns.rdatatype.to_text(q.rdtype)))
        replies = self.handle(request)
        for reply in replies if isinstance(replies, list) else [replies]:
            if reply is None:
                continue
            wire = reply if isinstance(reply, bytes) else reply.to_wire()
            try:
                self.sock.sendto(wire, peer)
            except OSError:
                pass


def zone_handler(zone: dict[str, list[str]], rules: dict[str, str] | None = None) -> Handler:
    """Answer names from ``zone``; ``rules`` maps a name to nxdomain/servfail/garbage/silent/
    wrong_id. Unknown names get NXDOMAIN."""
    rules = rules or {}

    def handle(request: dns.message.Message) -> dns.message.Message | bytes | None:
        q = request.question[0]
        name = str(q.name).rstrip(".")
        rule = rules.get(name, "ok")
        if rule == "silent":
            return None
        if rule == "garbage":
            return b"\x12\x34not a dns message"
        reply = dns.message.make_response(request)
        if rule == "wrong_id":
            reply.id = (request.id + 1) % 65536
            return reply
        if rule == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        if name not in zone or rule == "nxdomain":
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        want = dns.rdatatype.to_text(q.rdtype)
        addrs = [a for a in zone[name] if (":" in a) == (want == "AAAA")]
        if addrs and want in ("A", "AAAA"):
            reply.answer.append(dns.rrset.from_text(name + ".", 30, "IN", want, *addrs))
        return reply

    return handle


def answer(request: dns.message.Message, address: str) -> dns.message.Message:
    reply = dns.message.make_response(request)
    name = request.question[0].name
    if request.question[0].rdtype == 1:
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "A", address))
    return reply


class QueueingDnsServer(LoopbackDnsServer):
    """Answers every query ``delay_s`` after it came in (a resolver that takes its time,
    as a home router forwarding upstream does) and counts the queries it holds at once:
    ``max_in_flight`` is the most queries received and not yet answered."""

    def __init__(self, handle: Handler, delay_s: float = 0.05) -> None:
        super().__init__(handle)
        self.delay_s = delay_s
        self.sock.settimeout(0.005)
        self._held: list[tuple[float, bytes, Any]] = []
        self.max_in_flight = 0

    def _serve_once(self) -> None:
        import time

        try:
            data, peer = self.sock.recvfrom(65535)
            self._held.append((time.monotonic() + self.delay_s, data, peer))
            self.max_in_flight = max(self.max_in_flight, len(self._held))
        except (TimeoutError, OSError):
            pass
        now = time.monotonic()
        due = [h for h in self._held if h[0] <= now]
        self._held = [h for h in self._held if h[0] > now]
        for _, data, peer in due:
            self._answer(data, peer)
