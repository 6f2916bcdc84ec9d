"""QUIC check: a version-negotiation ping to UDP 443 of a service host (OONI quicping,
ts-031; RFC 9000 6 and 17.2.1).

A 1200-byte long-header Initial with the reserved version 0xbabababa and a random
payload (no ClientHello, so no SNI for a censor to match) forces any QUIC server to
answer with a Version Negotiation packet echoing our connection IDs; no server of ours
is needed. Sent with the stun check's retransmission schedule within the budget. A
datagram that is not a matching Version Negotiation is recorded as an unexpected
response (possible injection); no answer is ``generic_timeout_error``. A service whose
UDP 443 is silent while its TCP works is a sign of UDP blocking (``udp_blocked``).
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

from probe import failures
from probe.checks._base import (
    CheckContext,
    CheckSpec,
    TestKeys,
    open_udp,
    resolve_first,
    settled_methods,
    udp_failure,
)
from probe.checks._stun import MAX_SENDS, RTO_S
from probe.model import Endpoint
from probe.results import note_event

NAME = "quic"
VERSION = "0.1.0"
SPEC = CheckSpec(doc="QUIC version-negotiation ping (1200-byte Initial, version "
                     "0xbabababa) to each host and port")
GREASE_VERSION = 0xBABABABA
INITIAL_LEN = 1200


def methods(test_keys: TestKeys) -> list[str]:
    settled = settled_methods(test_keys)
    if settled is not None:
        return settled
    return ["udp_blocked"] if test_keys["failure"] == failures.GENERIC_TIMEOUT else []


def initial_packet(dcid: bytes, scid: bytes) -> bytes:
    """A long-header Initial of exactly 1200 bytes with the GREASE version."""
    head = bytes([0xC0 | (os.urandom(1)[0] & 0x0F)]) + struct.pack("!I", GREASE_VERSION)
    head += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return head + os.urandom(INITIAL_LEN - len(head))


def parse_version_negotiation(data: bytes, dcid: bytes, scid: bytes) -> list[int] | None:
    """The versions offered, if ``data`` is a Version Negotiation answering our IDs."""
    if len(data) < 7 or not data[0] & 0x80 or data[1:5] != b"\x00\x00\x00\x00":
        return None
    pos = 5
    dlen = data[pos]
    their_dcid = data[pos + 1:pos + 1 + dlen]
    pos += 1 + dlen
    if pos >= len(data):
        return None
    slen = data[pos]
    their_scid = data[pos + 1:pos + 1 + slen]
    pos += 1 + slen
    rest = data[pos:]
    # RFC 9000 17.2.1: the server's DCID is our SCID and its SCID our DCID.
    if their_dcid != scid or their_scid != dcid or not rest or len(rest) % 4:
        return None
    return [int.from_bytes(rest[i:i + 4], "big") for i in range(0, len(rest), 4)]


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host, port = endpoint.target_host, endpoint.port or 443
    if host is None:
        raise ValueError(f"{endpoint.source}: quic endpoint needs a host")
    keys: TestKeys = {"failure": None, "failed_operation": None, "quic_ping": None}
    addresses = await resolve_first(ctx, host, keys)
    if addresses is None:
        return keys
    ping = await _ping(ctx, addresses[0], port)
    keys["quic_ping"] = ping
    if ping["failure"] is not None:
        keys["failure"], keys["failed_operation"] = ping["failure"], "quic_ping"
    return keys


async def _ping(ctx: CheckContext, ip: str, port: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    dcid, scid = os.urandom(8), os.urandom(8)
    packet = initial_packet(dcid, scid)
    out: dict[str, Any] = {"ip": ip, "port": port, "sends": [], "responses": [],
                           "unexpected_responses": 0, "supported_versions": None,
                           "failure": failures.GENERIC_TIMEOUT}
    flow, failure = await open_udp(ctx, ip, port)
    if flow is None:
        out["failure"] = failure
        return out
    t0 = loop.time()
    rto, next_send = RTO_S, t0
    try:
        while loop.time() < ctx.deadline:
            now = loop.time()
            if now >= next_send and len(out["sends"]) < MAX_SENDS:
                await flow.send(packet)
                out["sends"].append(round(now - t0, 4))
                next_send, rto = now + rto, rto * 2
            try:
                data = await flow.recv(min(next_send, ctx.deadline) - loop.time())
            except TimeoutError:
                continue
            except OSError as exc:
                out["failure"] = udp_failure(exc)
                return out
            t = round(loop.time() - t0, 4)
            versions = parse_version_negotiation(data, dcid, scid)
            if versions is None:
                out["unexpected_responses"] += 1
                note_event(out, "responses", {"t": t, "bytes": len(data), "kind": "unexpected"})
                continue
            note_event(out, "responses",
                       {"t": t, "bytes": len(data), "kind": "version_negotiation"})
            out["supported_versions"] = [f"{v:#010x}" for v in versions]
            out["failure"] = None
            return out
    except OSError as exc:
        out["failure"] = udp_failure(exc)
    finally:
        flow.close()
    if out["unexpected_responses"]:
        out["failure"] = failures.QUIC_UNEXPECTED_REPLY
    return out
