"""The reflector: a UDP echo and STUN Binding responder for the probe's call-path tests,
which answers only a probe that proved it can receive at its address.

A UDP responder that answers any source can be abused: with a forged source address it
sends an attacker's bytes to a victim, two echo services (or a reflector and any UDP echo)
bounce one forged datagram between them forever, and a flood of forged sources fills any
per-source state. So, on each UDP port:

* **Cookie.** A *cookie request* (:data:`HELLO_PREFIX`, at least :data:`HELLO_LEN` bytes)
  gets a *cookie reply* (:data:`COOKIE_PREFIX`, the slot length, a 16-byte cookie:
  :data:`COOKIE_REPLY_LEN` bytes, less than half the request, so never an amplifier). The
  cookie is ``HMAC-SHA256(secret, slot, source IP)``: stateless, bound to the source
  *address* (not the port: the probe opens a fresh flow per trial) and to a time slot of
  :data:`SLOT_S` seconds; the current and the previous slot are accepted, so a cookie
  lives between one and two slots. The secret is random per process and never leaves it.
* **Token.** An echo answers only a datagram carrying a valid *token*: 4 random bytes
  and ``HMAC-SHA256(cookie, those bytes)[:8]`` (12 bytes that look random, different in
  every datagram). A STUN message carries it as its transaction ID; any other datagram
  at bytes :data:`RAW_TOKEN_OFFSET` to +12 (in an RTP packet: just after the 12-byte
  header). Only someone who received the cookie at that address can make one: a forged
  source gets no echo, whatever it sends.
* **No loops.** A cookie reply is never answered (it is checked first), and it is neither
  a cookie request, nor a STUN request, nor does it carry a token where one is looked for.
  Whatever the reflector sends to a forged source (a cookie reply, a Binding success) and
  a peer echoes back is dropped, so a bounce ends at the second hop. Two reflectors never
  answer each other's cookie replies or Binding successes.
* **STUN Binding requests** with a token in the transaction ID are answered as a STUN
  server would (XOR-MAPPED-ADDRESS, FINGERPRINT when the request had one). Without a
  token they are answered too, so that any STUN client can use the reflector, but only
  from one global budget shared by all unproven traffic (cookie replies included):
  :data:`UNPROVEN_RATE` per second, whoever asks. A Binding success is no longer than
  the request and is not a request itself, so it neither amplifies nor loops; the global
  budget caps what forged sources can make the reflector send to anyone, without keeping
  any state per unproven source.
* **Never more bytes out than in** (a response that cannot fit is not sent), and **never
  a reply to a source port below 1024** (system services such as echo, chargen, DNS
  and NTP live there).
* **Per-source token bucket** for proven traffic, in a bounded LRU table
  (:data:`MAX_SOURCES`). A bucket is created only after the token checks, so forged
  sources cannot create state nor push a real client out of the table.
* No client address is ever logged: only counters.

An echo of a proven datagram goes back to the address that proved itself, so the worst a
token holder can do is send traffic to itself (an echo service on its own address bounces
at the rate of its own bucket until its cookie expires: no third party is hurt). One
process serves one address: a probe fetches its cookie on one port and uses it on all.

The probe side (fetching the cookie, carrying the token) is :mod:`probe.checks._reflector`.
The probe uses the reflector's port 443 as its UDP baseline. Spec: RFC 8489 section 6.3.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from probe import stun
from probe.model import REFLECTOR_DEFAULT_BURST as DEFAULT_BURST
from probe.model import REFLECTOR_DEFAULT_PORTS as DEFAULT_PORTS  # noqa: F401 (re-exported)
from probe.model import REFLECTOR_DEFAULT_RATE as DEFAULT_RATE

MAX_SOURCES = 10_000
MIN_SOURCE_PORT = 1024  # nothing is ever sent to a source port below this

# --- the wire format shared with the probe (probe.checks._reflector) ----------------
HELLO_PREFIX = b"VPR?cook"  # a cookie request: this, zero-padded to HELLO_LEN or more
HELLO_LEN = 64
COOKIE_PREFIX = b"VPR!cook"  # a cookie reply: this, slot seconds (u16), the cookie
COOKIE_LEN = 16
COOKIE_REPLY_LEN = len(COOKIE_PREFIX) + 2 + COOKIE_LEN  # 26 bytes: < HELLO_LEN
NONCE_LEN = 4
TAG_LEN = 8
TOKEN_LEN = NONCE_LEN + TAG_LEN  # 12: a STUN transaction ID
STUN_TOKEN_OFFSET = 8  # the transaction ID
RAW_TOKEN_OFFSET = 12  # after an RTP header; anywhere in random bytes
RESERVED_PREFIXES = (HELLO_PREFIX, COOKIE_PREFIX)  # what a probe payload must not start with
SLOT_S = 300  # a cookie is accepted in its slot and the next: 300 to 600 s
UNPROVEN_RATE = 100.0  # replies per second to sources without a token, all together
UNPROVEN_BURST = 200.0

log = logging.getLogger("probe.reflector")


def hello() -> bytes:
    """A cookie request."""
    return HELLO_PREFIX + bytes(HELLO_LEN - len(HELLO_PREFIX))


def parse_cookie_reply(data: bytes) -> tuple[int, bytes] | None:
    """(slot seconds, cookie) from a cookie reply, or None if ``data`` is not one."""
    if len(data) != COOKIE_REPLY_LEN or not data.startswith(COOKIE_PREFIX):
        return None
    (slot_s,) = struct.unpack_from("!H", data, len(COOKIE_PREFIX))
    if slot_s == 0:
        return None
    return slot_s, data[len(COOKIE_PREFIX) + 2:]


def make_token(cookie: bytes, nonce: bytes | None = None) -> bytes:
    """A token: a nonce and the cookie's MAC of it (12 bytes that look random)."""
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    return nonce + hmac.digest(cookie, nonce, "sha256")[:TAG_LEN]


def token_offset(data: bytes) -> int | None:
    """Where a datagram carries its token: a STUN message in its transaction ID, anything
    else at RAW_TOKEN_OFFSET; None when it is too short to carry one."""
    if stun.looks_like_stun(data):
        return STUN_TOKEN_OFFSET
    if len(data) >= RAW_TOKEN_OFFSET + TOKEN_LEN:
        return RAW_TOKEN_OFFSET
    return None


def with_token(payload: bytes, cookie: bytes, kind: str) -> bytes:
    """``payload`` carrying a new token of ``cookie``, same length: a STUN message
    (``stun``) in its transaction ID (FINGERPRINT computed anew), random bytes
    (``random``) and an RTP-like packet (``rtp``) at RAW_TOKEN_OFFSET. ValueError if
    ``payload`` cannot carry one that way."""
    if kind == "stun":
        return stun.replace_transaction_id(payload, make_token(cookie))
    if kind not in ("random", "rtp"):
        raise ValueError(f"unknown payload kind {kind!r}")
    at = RAW_TOKEN_OFFSET
    if len(payload) < at + TOKEN_LEN or stun.looks_like_stun(payload):
        raise ValueError(f"a {kind} payload of {len(payload)} bytes cannot carry a token")
    return payload[:at] + make_token(cookie) + payload[at + TOKEN_LEN:]


def fetch_cookie(address: str, ports: Iterable[int], timeout_s: float = 2.0,
                 ) -> bytes | None:
    """A cookie from the reflector at ``address`` (IPv4), asked on every port of ``ports``
    at once and again every 0.4 s, for code without an event loop (``locate``); None
    without an answer within ``timeout_s``."""
    import select
    import socket

    socks = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.connect((address, port))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for sock in socks:
                try:
                    sock.send(hello())
                except OSError:
                    pass  # ICMP port unreachable from an earlier request: nothing there
            ready, _, _ = select.select(socks, [], [], min(0.4, left))
            for sock in ready:
                try:
                    parsed = parse_cookie_reply(sock.recv(2048))
                except OSError:
                    continue
                if parsed is not None:
                    return parsed[1]
        return None
    finally:
        for sock in socks:
            sock.close()


def client_host(host: str) -> str:
    """The source address a cookie is bound to (a v4 client on a dual-stack socket
    appears as ``::ffff:a.b.c.d``)."""
    return host[7:] if host.startswith("::ffff:") else host


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
    cookies: int = 0  # cookie replies sent
    stun_answered: int = 0
    echoed: int = 0
    rate_limited: int = 0  # a proven source over its bucket
    unproven: int = 0  # no valid token: dropped (or over the global unproven budget)
    low_port: int = 0  # from a source port below 1024: dropped
    not_answered: int = 0  # a Binding response that could not fit the request

    def line(self) -> str:
        return (f"received={self.received} cookies={self.cookies} "
                f"stun_answered={self.stun_answered} echoed={self.echoed} "
                f"rate_limited={self.rate_limited} unproven={self.unproven} "
                f"low_port={self.low_port} not_answered={self.not_answered}")


class Responder:
    """The reflector's whole decision, one datagram at a time, without I/O: what (if
    anything) to send back to ``source``. Shared by every port of one reflector (and by
    the fake network of the tests, :func:`probe.testing.reflector_responder`)."""

    def __init__(self, *, rate: float = DEFAULT_RATE, burst: float = DEFAULT_BURST,
                 max_sources: int = MAX_SOURCES, unproven_rate: float = UNPROVEN_RATE,
                 unproven_burst: float = UNPROVEN_BURST, slot_s: int = SLOT_S,
                 secret: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= slot_s <= 0xFFFF:
            raise ValueError("slot_s must be 1-65535 seconds")
        if unproven_rate <= 0 or unproven_burst < 1:
            raise ValueError("unproven_rate must be > 0 and unproven_burst >= 1")
        self.limiter = SourceLimiter(rate, burst, max_sources)
        self.unproven_budget = TokenBucket(unproven_rate, unproven_burst, unproven_burst,
                                           clock())
        self.stats = Stats()
        self.slot_s = slot_s
        self.clock = clock
        # HMAC-SHA256 keyed with a random secret, set up once (copied per cookie: cheaper
        # than keying it anew for every datagram)
        self._keyed = hmac.new(secret if secret is not None else os.urandom(32),
                               b"voip-probe reflector cookie 1|", hashlib.sha256)

    def cookie(self, host: str, slot: int | None = None) -> bytes:
        """The cookie of ``host`` in ``slot`` (default: now)."""
        if slot is None:
            slot = int(self.clock() // self.slot_s)
        mac = self._keyed.copy()
        mac.update(struct.pack("!q", slot) + client_host(host).encode())
        return mac.digest()[:COOKIE_LEN]

    def proven(self, data: bytes, host: str) -> bool:
        """Does ``data`` carry a token from a cookie of ``host`` (this slot or the last)?"""
        at = token_offset(data)
        if at is None:
            return False
        token = data[at:at + TOKEN_LEN]
        nonce, tag = token[:NONCE_LEN], token[NONCE_LEN:]
        slot = int(self.clock() // self.slot_s)
        for s in (slot, slot - 1):
            expected = hmac.digest(self.cookie(host, s), nonce, "sha256")[:TAG_LEN]
            if hmac.compare_digest(expected, tag):
                return True
        return False

    def reply(self, data: bytes, source: tuple[str, int]) -> tuple[str, bytes | None]:
        """(kind, bytes to send or None). Kinds: ``cookie``, ``stun``, ``echo`` (sent);
        ``low_port``, ``unproven``, ``rate_limited``, ``none`` (nothing sent). The reply
        is never longer than ``data``."""
        self.stats.received += 1
        host, port = source[0], source[1]
        if port < MIN_SOURCE_PORT:
            self.stats.low_port += 1
            return "low_port", None
        if data.startswith(COOKIE_PREFIX):  # a cookie reply bounced back: never answered
            self.stats.unproven += 1
            return "unproven", None
        now = self.clock()
        if data.startswith(HELLO_PREFIX):
            if len(data) < HELLO_LEN or not self.unproven_budget.take(now):
                self.stats.unproven += 1
                return "unproven", None
            self.stats.cookies += 1
            return "cookie", (COOKIE_PREFIX + struct.pack("!H", self.slot_s)
                              + self.cookie(host))
        proven = self.proven(data, host)
        binding = (len(data) >= stun.HEADER_LEN and data[0:2] == b"\x00\x01"
                   and stun.looks_like_stun(data))
        if not proven and not binding:
            self.stats.unproven += 1
            return "unproven", None
        # The token checks come first: only now may state be created for this source.
        allowed = (self.limiter.allow(client_host(host), now) if proven
                   else self.unproven_budget.take(now))
        if not allowed:
            if proven:
                self.stats.rate_limited += 1
            else:
                self.stats.unproven += 1
            return ("rate_limited" if proven else "unproven"), None
        if not binding:
            self.stats.echoed += 1
            return "echo", data
        try:
            request = stun.parse(data)
        except stun.StunParseError:
            if not proven:
                self.stats.unproven += 1
                return "unproven", None
            self.stats.echoed += 1
            return "echo", data
        response = _fitting_binding_response(request, source, len(data))
        if response is None:
            self.stats.not_answered += 1
            return "none", None
        self.stats.stun_answered += 1
        return "stun", response


def _fitting_binding_response(request: stun.StunMessage, source: tuple[str, int],
                              limit: int) -> bytes | None:
    response = stun.binding_success(request, (client_host(source[0]), source[1]))
    # RFC 8489 7.3.1: FINGERPRINT in the response when the request had one, if it fits.
    if request.has_fingerprint:
        data = response.encode(fingerprint=True)
        if len(data) <= limit:
            return data
    data = response.encode()
    return data if len(data) <= limit else None


class ReflectorProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        _kind, reply = self.responder.reply(data, addr)
        if reply is None:
            return
        # the no-amplification and low-port rules, enforced here too
        assert len(reply) <= len(data) and addr[1] >= MIN_SOURCE_PORT
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for our replies: nothing to do, and nothing to log


@dataclass
class Reflector:
    """A running reflector: the ports it listens on, its responder and counters."""

    host: str
    ports: list[int]
    failed: dict[int, str]
    responder: Responder
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    @property
    def stats(self) -> Stats:
        return self.responder.stats

    @property
    def limiter(self) -> SourceLimiter:
        return self.responder.limiter

    def close(self) -> None:
        for t in self.transports:
            t.close()
        self.transports.clear()


async def start(host: str, ports: Iterable[int], *, rate: float = DEFAULT_RATE,
                burst: float = DEFAULT_BURST, max_sources: int = MAX_SOURCES,
                unproven_rate: float = UNPROVEN_RATE,
                unproven_burst: float = UNPROVEN_BURST, slot_s: int = SLOT_S) -> Reflector:
    """Bind every port on ``host``; ports that cannot be bound are listed in ``failed``.
    Every port shares one responder (one secret: a cookie from any port works on all)."""
    loop = asyncio.get_running_loop()
    responder = Responder(rate=rate, burst=burst, max_sources=max_sources,
                          unproven_rate=unproven_rate, unproven_burst=unproven_burst,
                          slot_s=slot_s)
    reflector = Reflector(host, [], {}, responder)
    for port in ports:
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: ReflectorProtocol(responder), local_addr=(host, port))
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
