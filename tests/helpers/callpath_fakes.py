"""A fake UDP network for the call-path checks' unit tests (never proof of blocking).

Each destination (ip, port) has a responder: the real reflector logic
(:func:`probe.reflector.reply_for`), a STUN/TURN server built on our codec, an ICMP
error, garbage, an injector, or silence. A censor predicate sees every datagram (both
directions) and drops those it matches, like the lab's nftables rules, so the checks'
logic is exercised against named blocking methods without namespaces.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probe import reflector, stun
from probe.model import Endpoint, RunConfig
from tests.helpers.checks import run_check

CLIENT = ("198.18.1.2", 40000)
Responder = Callable[[bytes], "bytes | BaseException | None"]
Censor = Callable[[str, int, bytes], bool]  # (ip, port, payload) -> drop?


def reflector_responder(data: bytes) -> bytes | None:
    return reflector.reply_for(data, CLIENT)[1]


def stun_server(mapped: tuple[str, int] = CLIENT, realm: str = "lab.example") -> Responder:
    def respond(data: bytes) -> bytes | None:
        try:
            req = stun.parse(data)
        except stun.StunParseError:
            return None
        if req.msg_type == stun.BINDING_REQUEST:
            return stun.binding_success(req, mapped).encode(fingerprint=True)
        if req.msg_type == stun.ALLOCATE_REQUEST:
            msg = stun.StunMessage(stun.ALLOCATE_ERROR, req.transaction_id)
            msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(401, "Unauthorized"))
            msg.add(stun.ATTR_REALM, realm.encode())
            msg.add(stun.ATTR_NONCE, os.urandom(8).hex().encode())
            return msg.encode(fingerprint=True)
        return None
    return respond


def icmp_port_unreachable(data: bytes) -> BaseException:
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def garbage(data: bytes) -> bytes:
    return b"\x01\x01\x00\x08garbage-not-stun"


def injector(data: bytes) -> bytes:
    """A well-formed Binding success with someone else's transaction ID."""
    req = stun.parse(data)
    fake = stun.StunMessage(stun.BINDING_SUCCESS, os.urandom(12))
    fake.add(stun.ATTR_XOR_MAPPED_ADDRESS,
             stun.encode_xor_address("10.10.34.35", 1, fake.transaction_id))
    assert fake.transaction_id != req.transaction_id
    return fake.encode(fingerprint=True)


def silent(data: bytes) -> None:
    return None


@dataclass
class FakeCallNet:
    responders: dict[tuple[str, int], Responder] = field(default_factory=dict)
    hosts: dict[str, Responder] = field(default_factory=dict)  # any port of that ip
    censor: Censor | None = None
    sent: list[tuple[str, int, bytes]] = field(default_factory=list)

    def system_resolvers(self) -> list[str]:
        return []

    async def tcp_connect(self, ip: str, port: int, timeout_s: float):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError(errno.ECONNREFUSED, "no TCP in this fake")

    async def tls_handshake(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError(errno.ECONNREFUSED, "no TLS in this fake")

    async def udp_open(self, ip: str, port: int) -> FakeFlow:
        responder = self.responders.get((ip, port)) or self.hosts.get(ip) or silent
        return FakeFlow(self, ip, port, responder)


class FakeFlow:
    def __init__(self, net: FakeCallNet, ip: str, port: int, responder: Responder) -> None:
        self.net, self.ip, self.port, self.responder = net, ip, port, responder
        self.local_address = CLIENT
        self.inbox: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        self.net.sent.append((self.ip, self.port, data))
        censor = self.net.censor
        if censor is not None and censor(self.ip, self.port, data):
            return
        reply = self.responder(data)
        if reply is None:
            return
        if isinstance(reply, bytes) and censor is not None and censor(self.ip, self.port, reply):
            return
        self.inbox.put_nowait(reply)

    async def recv(self, timeout_s: float) -> bytes:
        item = await asyncio.wait_for(self.inbox.get(), max(timeout_s, 0.0))
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        pass


# --- censors like the lab's rules ----------------------------------------------------
COOKIE = stun.MAGIC_COOKIE.to_bytes(4, "big")


def is_stun(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == COOKIE


def drop_ports(*ports: int) -> Censor:
    return lambda ip, port, data: port in ports


def stun_dpi(ip: str, port: int, data: bytes) -> bool:
    return is_stun(data)


def app_stun_dpi(ip: str, port: int, data: bytes) -> bool:
    """WhatsApp types/first attribute, MS attributes, 0xFF03, REALMs naming apps."""
    if not is_stun(data):
        return False
    msg_type = int.from_bytes(data[0:2], "big")
    first_attr = int.from_bytes(data[20:22], "big") if len(data) >= 22 else None
    return (0x0800 <= msg_type <= 0x0802 or first_attr in (
        0x4000, 0x4001, 0x4002, 0x4003, 0x4004, 0x4007, 0x8054, 0x8055, 0x8070, 0x8095, 0xFF03)
        or any(s in data for s in (b"viber", b"google.com", b"signal.org")))


def drop_addresses(*ips: str) -> Censor:
    return lambda ip, port, data: ip in ips


def throttle(drop_fraction: float, *ports: int, seed: int = 1) -> Censor:
    """Drop ``drop_fraction`` of the datagrams on the given ports (each direction), like
    a policer over its rate; seeded, so a test sees the same drops every run."""
    rng = random.Random(seed)

    def censor(ip: str, port: int, data: bytes) -> bool:
        return port in ports and rng.random() < drop_fraction
    return censor


# --- running one call-path check through this network -----------------------------------

SERVER = "198.18.9.10"
REFLECTOR = "198.18.9.7"
CALL_PORT = 3478


def reflector_everywhere(net: FakeCallNet) -> FakeCallNet:
    net.hosts[REFLECTOR] = reflector_responder
    return net


def call_config(*, timeout_s: float = 2.0, reflector: str | None = REFLECTOR,
                include_ip: bool = False, stream_seconds: float = 1.0) -> RunConfig:
    return RunConfig(timeout_s=timeout_s, reflector=reflector, include_ip=include_ip,
                     stream_seconds=stream_seconds)


async def run_call_check(check: str, net: Any, *, host: str | None = SERVER,
                         port: int = CALL_PORT, options: dict[str, Any] | None = None,
                         **kw: Any) -> tuple[dict[str, Any], list[str]]:
    """One call-path check (function ``calls``) through ``net``; kw: :func:`call_config`."""
    ep = Endpoint(service="svc", function="calls", check=check, host=host, port=port,
                  options=options or {}, source="test:1")
    return await run_check(net, ep, call_config(**kw))
