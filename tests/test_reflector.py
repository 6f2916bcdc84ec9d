"""The reflector (probe/reflector.py, `voip-probe reflector`): cookies, tokens, STUN answers,
echo only to a probe that proved its address, no amplification, no loops, no reply to low
ports, per-source rate limit whose table forged sources cannot touch, no client addresses
in its logs. Loopback only; the forged-source tests send raw IPv4 on loopback (root)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice import stun as aio
from hypothesis import given, settings
from hypothesis import strategies as st

from probe import reflector, stun
from probe.checks._payloads import plain_stun, random_bytes
from probe.checks._reflector import ReflectorCookie
from tests.conftest import IN_CI
from tests.helpers.coturn import free_udp_port

SERVER = "127.0.0.2"
CLIENT = "127.0.0.3"
OTHER_CLIENT = "127.0.0.4"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def responder(clock: Clock | None = None, **kw: float) -> reflector.Responder:
    return reflector.Responder(clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def cookie_of(resp: reflector.Responder, host: str) -> ReflectorCookie:
    """What the probe at ``host`` holds after a cookie request (the same cookie)."""
    kind, reply = resp.reply(reflector.hello(), (host, 40000))
    assert kind == "cookie" and reply is not None
    parsed = reflector.parse_cookie_reply(reply)
    assert parsed is not None
    return ReflectorCookie(SERVER, parsed[1], parsed[0], 0.0, 443)


def test_parse_ports_defaults() -> None:
    ports = reflector.parse_ports(reflector.DEFAULT_PORTS)
    assert ports[:5] == [443, 3478, 3479, 3480, 3481]
    assert 19302 in ports and 19309 in ports and 7987 in ports
    assert len(ports) == 1 + 4 + 8 + 5


@pytest.mark.parametrize("spec", ["", "abc", "10-5", "0", "70000", "1-2-3"])
def test_parse_ports_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        reflector.parse_ports(spec)


def test_token_bucket() -> None:
    limiter = reflector.SourceLimiter(rate=10, burst=3, max_sources=2)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another source has its own bucket
    assert limiter.allow("a", 0.1)  # 0.1 s at 10/s refills one token
    assert not limiter.allow("a", 0.1)
    limiter.allow("c", 0.2)
    assert len(limiter) == 2  # bounded table: the least recently seen source is dropped


# --- cookies and tokens -------------------------------------------------------------

def test_cookie_reply_is_shorter_than_its_request_and_distinct() -> None:
    resp = responder()
    kind, reply = resp.reply(reflector.hello(), ("198.51.100.9", 40000))
    assert kind == "cookie" and reply is not None
    assert len(reply) == reflector.COOKIE_REPLY_LEN < reflector.HELLO_LEN / 2
    # a cookie reply is no request of any kind the reflector answers
    assert not reply.startswith(reflector.HELLO_PREFIX) and not stun.looks_like_stun(reply)
    assert resp.reply(reply, ("198.51.100.9", 40000)) == ("unproven", None)
    # a cookie request shorter than HELLO_LEN gets nothing
    assert resp.reply(reflector.hello()[:40], ("198.51.100.9", 40000)) == ("unproven", None)


def test_cookie_is_bound_to_the_address_not_the_port_and_lives_two_slots() -> None:
    clock = Clock()
    resp = responder(clock)
    cookie = cookie_of(resp, "198.51.100.9")
    data = cookie.with_cookie(random_bytes(100), "random")
    for port in (1024, 40000, 65535):  # any port of that address
        assert resp.reply(data, ("198.51.100.9", port)) == ("echo", data)
    assert resp.reply(data, ("198.51.100.10", 40000)) == ("unproven", None)  # not another
    assert resp.reply(data, ("::ffff:198.51.100.9", 40000)) == ("echo", data)  # dual stack
    clock.now += reflector.SLOT_S  # the next slot: still accepted
    assert resp.reply(cookie.with_cookie(data, "random"), ("198.51.100.9", 5000))[0] == "echo"
    clock.now += reflector.SLOT_S  # two slots on: expired
    assert resp.reply(cookie.with_cookie(data, "random"), ("198.51.100.9", 5000)) == (
        "unproven", None)
    # another reflector (another secret) does not take this reflector's cookie
    assert responder(clock).reply(data, ("198.51.100.9", 5000)) == ("unproven", None)


@pytest.mark.parametrize("flavor", [None, *stun.FLAVORS])
def test_a_token_changes_nothing_the_differential_compares(flavor: str | None) -> None:
    """Same length, the app's message type and attributes untouched (what the lab's DPI
    rules match, probe.lab.censor.APP_STUN), a valid FINGERPRINT, a new transaction ID
    each time; random bytes stay random-looking (no STUN magic) and an RTP header stays."""
    from probe.checks._payloads import differential_makers
    from probe.lab.censor import APP_STUN

    resp = responder()
    cookie = cookie_of(resp, CLIENT)
    makers, length = differential_makers(flavor)
    for kind, make in makers.items():
        plain = make()
        marked = cookie.stamp(plain)
        assert len(marked.data) == len(plain.data) == length
        assert resp.proven(marked.data, CLIENT) and not resp.proven(plain.data, CLIENT)
        if kind == "random":
            assert marked.txid is None and not stun.looks_like_stun(marked.data)
            assert marked.data[:12] == plain.data[:12]
            continue
        before, after = stun.parse(plain.data), stun.parse(marked.data)
        assert (after.msg_type, after.attributes[:-1]) == (before.msg_type,
                                                          before.attributes[:-1])
        assert after.transaction_id == marked.txid != before.transaction_id
        if kind == "stun":
            aio.parse_message(marked.data)  # aioice checks the FINGERPRINT too
        if flavor in APP_STUN and kind == "app_stun":
            assert APP_STUN[flavor].matches(marked.data) == APP_STUN[flavor].matches(plain.data)
    assert cookie.stamp(makers["stun"]()).txid != cookie.stamp(makers["stun"]()).txid
    rtp = struct.pack("!BBHI", 0x80, 111, 7, 7 * 960) + b"SSRC" + os.urandom(160)
    marked_rtp = cookie.with_cookie(rtp, "rtp")
    assert marked_rtp[:12] == rtp[:12] and len(marked_rtp) == len(rtp)
    assert resp.reply(marked_rtp, (CLIENT, 40000)) == ("echo", marked_rtp)
    with pytest.raises(ValueError):
        cookie.with_cookie(b"short", "random")


# --- STUN Binding requests ------------------------------------------------------------

def test_binding_with_a_token_is_answered_as_a_stun_server() -> None:
    resp = responder()
    cookie = cookie_of(resp, "192.0.2.1")
    req = cookie.with_cookie(stun.binding_request().encode(fingerprint=True), "stun")
    kind, reply = resp.reply(req, ("192.0.2.1", 5000))
    assert kind == "stun" and reply is not None and len(reply) <= len(req)
    assert stun.parse(reply).transaction_id == req[8:20]
    assert aio.parse_message(reply).attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 5000)


def test_binding_without_a_token_is_answered_only_within_one_global_budget() -> None:
    """Any STUN client may use it, but forged sources, however many, get at most the
    global unproven budget (shared with cookie replies), and no state is kept for them."""
    clock = Clock()
    resp = responder(clock, unproven_rate=10, unproven_burst=20)
    answered = 0
    for i in range(200):
        req = stun.binding_request().encode(fingerprint=True)
        kind, _ = resp.reply(req, (f"10.0.{i // 250}.{i % 250}", 4000 + i))
        answered += kind == "stun"
    assert answered == 20 and len(resp.limiter) == 0
    assert resp.reply(reflector.hello(), ("10.9.9.9", 4000)) == ("unproven", None)
    clock.now += 1.0  # 10 per second come back
    kinds = [resp.reply(reflector.hello(), ("10.9.9.9", 4000))[0] for _ in range(15)]
    assert kinds.count("cookie") == 10


def test_fingerprint_kept_when_it_fits_and_dropped_when_not() -> None:
    resp = responder()
    req = stun.binding_request()  # SOFTWARE "voip-probe"
    big = req.encode(fingerprint=True)  # 44 bytes
    _, reply = resp.reply(big, ("192.0.2.1", 1024))
    assert reply is not None and stun.parse(reply).has_fingerprint
    assert aio.parse_message(reply).attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 1024)
    small = stun.binding_request(software="abcd").encode(fingerprint=True)  # 36 bytes
    _, reply = resp.reply(small, ("192.0.2.1", 1024))
    assert reply is not None and len(reply) == 32 and not stun.parse(reply).has_fingerprint
    # 20 bytes in: the smallest Binding response (32 bytes for IPv4) cannot fit
    assert resp.reply(stun.binding_request(software=None).encode(), ("192.0.2.1", 1024)) == (
        "none", None)


def test_nothing_to_a_source_port_below_1024() -> None:
    resp = responder()
    cookie = cookie_of(resp, "192.0.2.1")
    for data in (reflector.hello(), stun.binding_request().encode(fingerprint=True),
                 cookie.with_cookie(random_bytes(64), "random")):
        for port in (0, 7, 19, 53, 123, 1023):
            assert resp.reply(data, ("192.0.2.1", port)) == ("low_port", None)
    assert resp.stats.low_port == 18


# --- fuzz ---------------------------------------------------------------------------

_sources = st.tuples(st.sampled_from(["198.51.100.9", "2001:db8::9", "::ffff:192.0.2.1"]),
                     st.integers(0, 65535))
_shaped = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: reflector.HELLO_PREFIX + b),
    st.binary(max_size=40).map(lambda b: reflector.COOKIE_PREFIX + b),
    st.binary(max_size=60).map(lambda b: b"\x00\x01" + b[:2] + b"\x21\x12\xa4\x42" + b[2:]),
)


@settings(max_examples=400)
@given(st.lists(st.tuples(_shaped, _sources), min_size=1, max_size=30))
def test_fuzz_no_crash_no_amplification_no_echo_to_unproven(
        datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
    """Anything from anyone: never a crash, never more bytes out than in, nothing to a
    port below 1024, never an echo (no source here proved itself), no per-source state,
    and unproven replies (cookies, Binding successes) within the global burst."""
    resp = responder(unproven_burst=10)
    for data, src in datagrams:
        kind, reply = resp.reply(data, src)
        if reply is None:
            continue
        assert len(reply) <= len(data) and src[1] >= 1024
        assert kind in ("cookie", "stun")
    assert len(resp.limiter) == 0
    assert resp.stats.cookies + resp.stats.stun_answered <= 10


def test_fuzz_loop_of_random_datagrams_with_and_without_tokens() -> None:
    """20,000 datagrams: random, mutated cookie messages, STUN of every class, tokens of
    the right cookie, of another address's cookie and of a stale one, from many sources.
    An echo goes exactly to a source whose own live cookie made the token."""
    rng = random.Random(14)
    clock = Clock()
    resp = responder(clock, unproven_burst=50, burst=1e9)
    hosts = [f"203.0.113.{i}" for i in range(1, 20)]
    cookies = {h: cookie_of(resp, h) for h in hosts}
    clock.now += 2 * reflector.SLOT_S
    stale = cookie_of(resp, hosts[0])  # from two slots before the cookies below
    clock.now += 2 * reflector.SLOT_S
    cookies = {h: cookie_of(resp, h) for h in hosts}
    spent_before = resp.stats.cookies + resp.stats.stun_answered
    echoes = 0
    for _ in range(20_000):
        host = rng.choice(hosts)
        port = rng.choice([rng.randrange(0, 1024), rng.randrange(1024, 65536)])
        shape = rng.randrange(7)
        owner = None
        if shape == 0:
            data = rng.randbytes(rng.randrange(0, 400))
        elif shape == 1:
            data = bytearray(reflector.hello() + rng.randbytes(rng.randrange(0, 30)))
            data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        elif shape == 2:
            data = reflector.COOKIE_PREFIX + rng.randbytes(rng.randrange(0, 30))
        elif shape == 3:
            msg = stun.StunMessage(rng.choice([0x0001, 0x0101, 0x0111, 0x0800, 0x0003]))
            for _ in range(rng.randrange(3)):
                msg.add(rng.choice([0x8022, 0x4000, 0x8054, 0x0014]),
                        rng.randbytes(rng.randrange(12)))
            data = msg.encode(fingerprint=rng.random() < 0.5)
            if rng.random() < 0.5:
                owner = rng.choice(hosts)
                data = cookies[owner].with_cookie(data, "stun")
        else:
            data = random_bytes(rng.randrange(24, 300))
            owner = {4: host, 5: rng.choice(hosts), 6: "stale"}[shape]
            if owner == "stale":
                data = stale.with_cookie(data, "random")
            elif owner is not None:
                data = cookies[owner].with_cookie(data, "random")
        kind, reply = resp.reply(data, (host, port))
        if reply is None:
            continue
        assert len(reply) <= len(data) and port >= 1024
        if kind == "echo":
            echoes += 1
            assert owner == host, "an echo to a source that did not prove itself"
            assert reply == data
        else:
            assert kind in ("cookie", "stun")
            if kind == "stun" and owner != host:  # an unproven Binding success
                assert data[:2] == b"\x00\x01"
    assert echoes > 1000  # the proven ones do get their echoes
    unproven_spent = resp.stats.cookies + resp.stats.stun_answered - spent_before
    assert 0 < unproven_spent <= 50  # the clock stood still: the burst, no more
    assert len(resp.limiter) <= len(hosts)


# --- on loopback ----------------------------------------------------------------------

class Client:
    """A probe on loopback: gets a cookie, then sends datagrams carrying its tokens."""

    def __init__(self, host: str = CLIENT) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.cookie: ReflectorCookie | None = None

    async def exchange(self, data: bytes, port: int, timeout_s: float = 1.0) -> bytes | None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, (SERVER, port))
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout_s)
        except TimeoutError:
            return None

    async def get_cookie(self, port: int) -> ReflectorCookie:
        reply = await self.exchange(reflector.hello(), port)
        assert reply is not None, "no cookie reply"
        parsed = reflector.parse_cookie_reply(reply)
        assert parsed is not None
        self.cookie = ReflectorCookie(SERVER, parsed[1], parsed[0], 0.0, port)
        return self.cookie

    def mark(self, data: bytes) -> bytes:
        assert self.cookie is not None
        return self.cookie.with_cookie(data, "stun" if stun.looks_like_stun(data) else "random")

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


async def test_loopback_cookie_stun_echo_and_no_amplification() -> None:
    ports = [free_udp_port(SERVER), free_udp_port(SERVER)]
    r = await reflector.start(SERVER, ports)
    client = Client()
    try:
        assert await client.exchange(os.urandom(172), ports[1], timeout_s=0.3) is None
        await client.get_cookie(ports[0])  # one port's cookie works on every port
        req = client.mark(stun.binding_request().encode(fingerprint=True))
        reply = await client.exchange(req, ports[1])
        assert reply is not None
        msg = stun.parse(reply)
        assert msg.msg_type == stun.BINDING_SUCCESS
        assert msg.xor_mapped_address == (CLIENT, client.sock.getsockname()[1])

        whatsapp = client.mark(stun.binding_request(msg_type=0x0800).encode())
        assert await client.exchange(whatsapp, ports[1]) == whatsapp
        noise = client.mark(random_bytes(172))
        assert await client.exchange(noise, ports[1]) == noise

        rng = random.Random(7)
        sent_bytes = received_bytes = 0
        for i in range(300):
            if i % 3 == 0:
                stun_req = stun.binding_request(software=None)
                for _ in range(rng.randrange(3)):
                    stun_req.add(0x8001, os.urandom(rng.randrange(0, 12)))
                data = stun_req.encode(fingerprint=rng.random() < 0.5)
            else:
                data = os.urandom(rng.randrange(1, 400))
            if rng.random() < 0.5 and len(data) >= 24:
                data = client.mark(data)
            reply = await client.exchange(data, ports[i % 2], timeout_s=0.2)
            sent_bytes += len(data)
            if reply is not None:
                assert len(reply) <= len(data)
                received_bytes += len(reply)
        assert 0 < received_bytes <= sent_bytes
        assert r.stats.received >= 304 and r.stats.unproven > 0
    finally:
        r.close()
        client.close()


@contextlib.asynccontextmanager
async def two_clients(rate: float, burst: float
                      ) -> AsyncIterator[tuple[Any, int, Client, Client]]:
    """A loopback reflector on one free port (its per-source ``rate`` and ``burst``) and
    two real clients from different addresses holding its cookie:
    (reflector, port, client, other client). Everything is closed after."""
    port = free_udp_port(SERVER)
    r = await reflector.start(SERVER, [port], rate=rate, burst=burst)
    a, b = Client(CLIENT), Client(OTHER_CLIENT)
    try:
        await a.get_cookie(port)
        await b.get_cookie(port)
        yield r, port, a, b
    finally:
        r.close()
        a.close()
        b.close()


async def test_loopback_rate_limit_per_source() -> None:
    loop = asyncio.get_running_loop()
    async with two_clients(rate=5, burst=10) as (r, port, a, b):
        for _ in range(100):
            await loop.sock_sendto(a.sock, a.mark(b"x" * 50), (SERVER, port))
        await asyncio.sleep(0.3)
        answered_a = len(a.drain())
        # the burst, plus what 5/s refills during the send (well under a second)
        assert 10 <= answered_a <= 14
        assert r.stats.rate_limited >= 100 - answered_a
        other = b.mark(b"y" * 50)
        assert await b.exchange(other, port) == other  # other source unaffected
        await asyncio.sleep(1.0)  # refill: about 5 more
        for _ in range(20):
            await loop.sock_sendto(a.sock, a.mark(b"x" * 50), (SERVER, port))
        await asyncio.sleep(0.3)
        assert 4 <= len(a.drain()) <= 8


# --- forged sources on loopback (raw IPv4) ---------------------------------------------

def raw_sender() -> socket.socket:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        if IN_CI:
            raise
        pytest.skip("forging source addresses needs root (a raw socket)")


def forge(sock: socket.socket, src: tuple[str, int], dst: tuple[str, int],
          payload: bytes) -> None:
    """Send ``payload`` to ``dst`` as if from ``src`` (the kernel fills the IP checksum
    and ID; a UDP checksum of zero means none)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                     0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    sock.sendto(ip + udp, (dst[0], 0))


class PlainEcho(asyncio.DatagramProtocol):
    """Any UDP echo service, as found on the internet: echoes everything to anyone."""

    def __init__(self) -> None:
        self.count = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def wait_until_quiet(counters: object, settle_s: float = 0.4,
                           limit_s: float = 5.0) -> tuple[int, ...]:
    """The counters once they stopped moving for ``settle_s``."""
    read = counters  # a callable returning a tuple
    assert callable(read)
    last = read()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        await asyncio.sleep(settle_s)
        now = read()
        if now == last:
            return tuple(now)
        last = now
    raise AssertionError(f"still moving after {limit_s} s: {last}")


async def test_a_forged_source_cannot_start_a_loop() -> None:
    """Two reflectors and a plain UDP echo on loopback. Forged datagrams of every kind
    (cookie requests, Binding requests, random bytes, a token of the attacker's own
    cookie) name one of the others as their source. Each bounces at most twice, then
    everything is quiet: nothing loops, and nothing is ever echoed by a reflector."""
    raw = raw_sender()
    loop = asyncio.get_running_loop()
    a_addr, b_addr, e_addr = "127.0.0.2", "127.0.0.5", "127.0.0.6"
    a = await reflector.start(a_addr, [free_udp_port(a_addr)])
    b = await reflector.start(b_addr, [free_udp_port(b_addr)])
    echo = PlainEcho()
    e_transport, _ = await loop.create_datagram_endpoint(
        lambda: echo, local_addr=(e_addr, free_udp_port(e_addr)))
    attacker = Client(CLIENT)
    try:
        A, B = (a_addr, a.ports[0]), (b_addr, b.ports[0])
        E = e_transport.get_extra_info("sockname")
        await attacker.get_cookie(A[1])  # the attacker's own cookie, for its own address
        payloads = [reflector.hello(), stun.binding_request().encode(fingerprint=True),
                    plain_stun(48).encode(fingerprint=True), random_bytes(100),
                    attacker.mark(random_bytes(100)),
                    attacker.mark(stun.binding_request().encode(fingerprint=True))]
        sent = 0
        for data in payloads:
            for src, dst in ((B, A), (E, A), (A, B), (E, B), (A, E), (B, E)):
                forge(raw, src, dst, data)
                sent += 1
        quiet = await wait_until_quiet(
            lambda: (a.stats.received, b.stats.received, echo.count))
        assert sum(quiet) <= 3 * sent, quiet  # each forged datagram: at most two bounces
        assert a.stats.echoed == b.stats.echoed == 0
        await asyncio.sleep(1.0)
        assert (a.stats.received, b.stats.received, echo.count) == quiet  # still quiet
    finally:
        raw.close()
        attacker.close()
        a.close()
        b.close()
        e_transport.close()


async def test_ten_thousand_forged_sources_do_not_evict_a_real_client() -> None:
    """A real client drains its bucket (which barely refills); then 10,000 forged
    sources send cookie requests, Binding requests, random tokens and tokens of the
    client's own cookie. No forged source gets a bucket, so the client's bucket is
    still the drained one (an evicted client would have a full new one), another real
    client is still echoed, and what the forged sources got is within the global
    budget."""
    raw = raw_sender()
    loop = asyncio.get_running_loop()
    try:
        async with two_clients(rate=0.001, burst=10) as (r, port, client, other):
            for _ in range(10):
                data = client.mark(random_bytes(64))
                assert await client.exchange(data, port) == data
            assert await client.exchange(client.mark(random_bytes(64)), port, 0.3) is None
            assert len(r.limiter) == 1
            stolen = client.mark(random_bytes(64))
            t0 = loop.time()
            received_before = r.stats.received
            kinds = [reflector.hello(), stun.binding_request().encode(fingerprint=True),
                     random_bytes(64), stolen]
            for i in range(10_000):
                src = (f"127.1.{i // 250}.{i % 250 + 1}", 1024 + i)
                forge(raw, src, (SERVER, port), kinds[i % 4])
                if i % 50 == 49:  # let the reflector read its socket (a full buffer drops)
                    until = time.monotonic() + 2
                    while (r.stats.received - received_before < i + 1
                           and time.monotonic() < until):
                        await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while r.stats.received - received_before < 10_000 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert r.stats.received - received_before == 10_000, "the forged datagrams were lost"
            elapsed = loop.time() - t0
            assert len(r.limiter) == 1  # no forged source has any state
            assert await client.exchange(client.mark(random_bytes(64)), port, 0.3) is None
            data = other.mark(random_bytes(64))
            assert await other.exchange(data, port) == data
            assert len(r.limiter) == 2
            assert r.stats.echoed == 11
            budget = reflector.UNPROVEN_BURST + reflector.UNPROVEN_RATE * (elapsed + 1)
            assert r.stats.cookies + r.stats.stun_answered <= budget + 2
    finally:
        raw.close()


def test_command_answers_and_logs_no_client_address() -> None:
    ports = [free_udp_port(SERVER), free_udp_port(SERVER)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "reflector", "--host", SERVER,
         "--ports", f"{ports[0]},{ports[1]}", "--stats-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((CLIENT, 0))
            s.settimeout(0.3)
            client_port = s.getsockname()[1]
            deadline = time.monotonic() + 10
            reply = None
            while reply is None and time.monotonic() < deadline:
                s.sendto(reflector.hello(), (SERVER, ports[0]))
                try:
                    reply = s.recv(2048)
                except TimeoutError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert reply is not None, "the reflector command never answered"
            parsed = reflector.parse_cookie_reply(reply)
            assert parsed is not None
            cookie = ReflectorCookie(SERVER, parsed[1], parsed[0], 0.0, ports[0])
            req = cookie.with_cookie(stun.binding_request().encode(fingerprint=True), "stun")
            s.sendto(req, (SERVER, ports[0]))
            assert stun.parse(s.recv(2048)).xor_mapped_address == (CLIENT, client_port)
            data = cookie.with_cookie(random_bytes(64), "random")
            s.sendto(data, (SERVER, ports[1]))
            assert s.recv(2048) == data
        time.sleep(0.6)  # let it print a counter line or two
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert "cookies=1" in err and "stun_answered=1" in err and "echoed=1" in err
    assert CLIENT not in out + err
    assert str(client_port) not in out + err


def test_command_rejects_bad_ports() -> None:
    proc = subprocess.run([sys.executable, "-m", "probe", "reflector", "--ports", "9-1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--ports" in proc.stderr
