"""The reflector (probe/reflector.py, `voip-probe reflector`): STUN answers, echo,
no amplification, per-source rate limit, no client addresses in its logs. Loopback only."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from aioice import stun as aio
from hypothesis import given
from hypothesis import strategies as st

from probe import reflector, stun
from tests.helpers.coturn import free_udp_port

SERVER = "127.0.0.2"
CLIENT = "127.0.0.3"
OTHER_CLIENT = "127.0.0.4"


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


# --- no amplification -------------------------------------------------------------
_sources = st.sampled_from([("198.51.100.9", 3478), ("2001:db8::9", 65000),
                            ("::ffff:192.0.2.1", 1)])


@given(st.binary(max_size=300), _sources)
def test_reply_never_longer_than_request_arbitrary(data: bytes, src: tuple[str, int]) -> None:
    _kind, reply = reflector.reply_for(data, src)
    assert reply is None or len(reply) <= len(data)


@given(st.integers(0, 40), st.booleans(), _sources)
def test_reply_never_longer_than_binding_request(pad: int, fp: bool,
                                                 src: tuple[str, int]) -> None:
    req = stun.binding_request(software=None)
    if pad:
        req.add(0x8001, b"x" * pad)
    data = req.encode(fingerprint=fp)
    kind, reply = reflector.reply_for(data, src)
    if reply is None:
        assert kind == "none"
        return
    assert kind == "stun" and len(reply) <= len(data)
    parsed = stun.parse(reply)
    assert parsed.transaction_id == req.transaction_id
    host = src[0].removeprefix("::ffff:")
    assert parsed.xor_mapped_address == (host, src[1])


def test_minimal_binding_request_is_not_answered() -> None:
    # 20 bytes in: the smallest Binding response (32 bytes for IPv4) cannot fit.
    data = stun.binding_request(software=None).encode()
    assert reflector.reply_for(data, ("192.0.2.1", 1)) == ("none", None)


def test_fingerprint_kept_when_it_fits_and_dropped_when_not() -> None:
    req = stun.binding_request()  # SOFTWARE "voip-probe"
    big = req.encode(fingerprint=True)  # 44 bytes
    _, reply = reflector.reply_for(big, ("192.0.2.1", 1))
    assert reply is not None and stun.parse(reply).has_fingerprint
    assert aio.parse_message(reply).attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 1)
    small = stun.binding_request(software="abcd").encode(fingerprint=True)  # 36 bytes
    _, reply = reflector.reply_for(small, ("192.0.2.1", 1))
    assert reply is not None and len(reply) == 32 and not stun.parse(reply).has_fingerprint


# --- on loopback --------------------------------------------------------------------
class Client:
    def __init__(self, host: str = CLIENT) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)

    async def exchange(self, data: bytes, port: int, timeout_s: float = 1.0) -> bytes | None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, (SERVER, port))
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout_s)
        except TimeoutError:
            return None

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096))
            except BlockingIOError:
                return out


async def test_loopback_stun_echo_and_no_amplification() -> None:
    ports = [free_udp_port(SERVER), free_udp_port(SERVER)]
    r = await reflector.start(SERVER, ports)
    client = Client()
    try:
        req = stun.binding_request()
        reply = await client.exchange(req.encode(fingerprint=True), ports[0])
        assert reply is not None
        msg = stun.parse(reply)
        assert msg.msg_type == stun.BINDING_SUCCESS
        assert msg.xor_mapped_address == (CLIENT, client.sock.getsockname()[1])

        whatsapp = stun.binding_request(msg_type=0x0800).encode()
        assert await client.exchange(whatsapp, ports[1]) == whatsapp
        noise = os.urandom(172)
        assert await client.exchange(noise, ports[1]) == noise

        rng = random.Random(7)
        sent_bytes = received_bytes = 0
        for i in range(300):
            if i % 3 == 0:
                req = stun.binding_request(software=None)
                for _ in range(rng.randrange(3)):
                    req.add(0x8001, os.urandom(rng.randrange(0, 12)))
                data = req.encode(fingerprint=rng.random() < 0.5)
            else:
                data = os.urandom(rng.randrange(1, 400))
            reply = await client.exchange(data, ports[i % 2], timeout_s=0.2)
            sent_bytes += len(data)
            if reply is not None:
                assert len(reply) <= len(data)
                received_bytes += len(reply)
        assert 0 < received_bytes <= sent_bytes
        assert r.stats.received >= 303
    finally:
        r.close()
        client.sock.close()


async def test_loopback_rate_limit_per_source() -> None:
    port = free_udp_port(SERVER)
    r = await reflector.start(SERVER, [port], rate=5, burst=10)
    a, b = Client(CLIENT), Client(OTHER_CLIENT)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(100):
            await loop.sock_sendto(a.sock, b"x" * 50, (SERVER, port))
        await asyncio.sleep(0.3)
        answered_a = len(a.drain())
        # the burst, plus what 5/s refills during the send (well under a second)
        assert 10 <= answered_a <= 14
        assert r.stats.rate_limited >= 100 - answered_a
        assert await b.exchange(b"y" * 50, port) == b"y" * 50  # other source unaffected
        await asyncio.sleep(1.0)  # refill: about 5 more
        for _ in range(20):
            await loop.sock_sendto(a.sock, b"x" * 50, (SERVER, port))
        await asyncio.sleep(0.3)
        assert 4 <= len(a.drain()) <= 8
    finally:
        r.close()
        a.sock.close()
        b.sock.close()


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
            req = stun.binding_request()
            deadline = time.monotonic() + 10
            reply = None
            while reply is None and time.monotonic() < deadline:
                s.sendto(req.encode(fingerprint=True), (SERVER, ports[0]))
                try:
                    reply = s.recv(2048)
                except TimeoutError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert reply is not None, "the reflector command never answered"
            assert stun.parse(reply).xor_mapped_address == (CLIENT, client_port)
            s.sendto(b"hello", (SERVER, ports[1]))
            assert s.recv(2048) == b"hello"
        time.sleep(0.6)  # let it print a counter line or two
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert "stun_answered=1" in err and "echoed=1" in err
    assert CLIENT not in out + err
    assert str(client_port) not in out + err


def test_command_rejects_bad_ports() -> None:
    proc = subprocess.run([sys.executable, "-m", "probe", "reflector", "--ports", "9-1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--ports" in proc.stderr
