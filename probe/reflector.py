"""The reflector: a UDP echo and STUN Binding responder for the probe's call-path tests.

Contract (DESIGN.md "Reflector"): on each UDP port, a STUN Binding request gets a Binding
success response (XOR-MAPPED-ADDRESS, and FINGERPRINT when the request carried one);
any other datagram is echoed back unchanged. Safety rules, because a UDP responder on
the internet can be abused to reflect traffic at a spoofed victim:

* never more bytes out than in: the response is built to fit the request (optional
  attributes dropped first); one that cannot fit is not sent;
* a per-source token bucket (packets per second, burst), with a bounded table of
  sources, so that one address cannot be flooded through us;
* no client address is ever logged: only counters.

The probe uses the reflector's port 443 as its UDP baseline. Spec: RFC 8489 section 6.3.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from probe import stun
from probe.model import REFLECTOR_DEFAULT_BURST as DEFAULT_BURST
from probe.model import REFLECTOR_DEFAULT_PORTS as DEFAULT_PORTS  # noqa: F401 (re-exported)
from probe.model import REFLECTOR_DEFAULT_RATE as DEFAULT_RATE

MAX_SOURCES = 10_000

log = logging.getLogger("probe.reflector")


def parse_ports(spec: str) -> list[int]:
    """``"443,3478-3481"`` -> ``[443, 3478, 3479, 3480, 3481]``; ValueError on bad input."""
    ports: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"bad port {part!r}: expected N or N-M") from None
        if not (1 <= lo <= hi <= 65535):
            raise ValueError(f"bad port range {part!r}: ports are 1-65535, low to high")
        ports.extend(p for p in range(lo, hi + 1) if p not in ports)
    if not ports:
        raise ValueError("no ports given")
    return ports


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class SourceLimiter:
    """One token bucket per source address, at most ``max_sources`` remembered (LRU)."""

    def __init__(self, rate: float, burst: float, max_sources: int = MAX_SOURCES) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[source] = bucket
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True)
class Stats:
    received: int = 0
    stun_answered: int = 0
    echoed: int = 0
    rate_limited: int = 0
    not_answered: int = 0  # a Binding response that could not fit the request

    def line(self) -> str:
        return (f"received={self.received} stun_answered={self.stun_answered} "
                f"echoed={self.echoed} rate_limited={self.rate_limited} "
                f"not_answered={self.not_answered}")


def reply_for(data: bytes, source: tuple[str, int]) -> tuple[str, bytes | None]:
    """What to send back for ``data`` from ``source``: (kind, bytes or None).

    kind is "stun" (a Binding success), "echo", or "none" (a response that cannot fit).
    The reply is never longer than ``data``.
    """
    if stun.looks_like_stun(data) and data[0:2] == b"\x00\x01":
        try:
            request = stun.parse(data)
        except stun.StunParseError:
            return "echo", data
        response = _fitting_binding_response(request, source, len(data))
        return ("stun", response) if response is not None else ("none", None)
    return "echo", data


def _fitting_binding_response(request: stun.StunMessage, source: tuple[str, int],
                              limit: int) -> bytes | None:
    host = source[0]
    if host.startswith("::ffff:"):  # a v4 client on a dual-stack socket
        host = host[7:]
    response = stun.binding_success(request, (host, source[1]))
    # RFC 8489 7.3.1: FINGERPRINT in the response when the request had one, if it fits.
    if request.has_fingerprint:
        data = response.encode(fingerprint=True)
        if len(data) <= limit:
            return data
    data = response.encode()
    return data if len(data) <= limit else None


class ReflectorProtocol(asyncio.DatagramProtocol):
    def __init__(self, limiter: SourceLimiter, stats: Stats) -> None:
        self.limiter, self.stats = limiter, stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.received += 1
        if not self.limiter.allow(addr[0], time.monotonic()):
            self.stats.rate_limited += 1
            return
        kind, reply = reply_for(data, addr)
        if reply is None:
            self.stats.not_answered += 1
            return
        assert len(reply) <= len(data)  # the no-amplification rule, enforced here too
        if kind == "stun":
            self.stats.stun_answered += 1
        else:
            self.stats.echoed += 1
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for our replies: nothing to do, and nothing to log


@dataclass
class Reflector:
    """A running reflector: the ports it listens on and its counters."""

    host: str
    ports: list[int]
    failed: dict[int, str]
    stats: Stats
    limiter: SourceLimiter
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    def close(self) -> None:
        for t in self.transports:
            t.close()
        self.transports.clear()


async def start(host: str, ports: Iterable[int], *, rate: float = DEFAULT_RATE,
                burst: float = DEFAULT_BURST, max_sources: int = MAX_SOURCES) -> Reflector:
    """Bind every port on ``host``; ports that cannot be bound are listed in ``failed``."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    limiter = SourceLimiter(rate, burst, max_sources)
    reflector = Reflector(host, [], {}, stats, limiter)
    for port in ports:
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: ReflectorProtocol(limiter, stats), local_addr=(host, port))
        except OSError as exc:
            reflector.failed[port] = exc.strerror or str(exc)
            continue
        reflector.transports.append(transport)
        reflector.ports.append(port)
    return reflector


async def serve_forever(reflector: Reflector, stats_interval_s: float = 60.0) -> None:
    """Log counters (never addresses) every ``stats_interval_s`` until cancelled."""
    try:
        while True:
            await asyncio.sleep(stats_interval_s)
            log.info("reflector: %s sources=%d", reflector.stats.line(), len(reflector.limiter))
    finally:
        reflector.close()
