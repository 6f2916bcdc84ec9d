"""TURN over TCP and over TLS: one Allocate without credentials sent to a relay over a
stream, its answer read back. What the turn_tcp and turn_tls checks share.

This is the fallback the call apps use when UDP is blocked: Teams clients reach their
Transport Relay on TCP 443 (research/calls-endpoints.md). Framing is RFC 8656 section
12.5: over TCP or TLS, STUN messages and ChannelData messages follow each other with no
framing of their own (not the RFC 4571 length prefix of ICE-TCP). A STUN message is 20
bytes of header plus its length field, its first two bits 00; ChannelData starts with
the bits 01 and is padded to a multiple of 4 bytes. Anything else cannot be TURN and,
since a stream has no resynchronisation point, ends the exchange as a malformed reply.
Over a reliable transport a request is sent once, never retransmitted (RFC 8489 6.2.2);
the answer is awaited until the check's budget ends. RFC 6062 (TCP relay allocations)
uses the same client-to-server framing.

Outcomes, each its own ``failed_operation``: the TCP connect (``tcp_connect``: the tcp
check's failure strings), the TLS handshake (``tls_handshake``), the Allocate itself
(``turn_allocate``: no answer, the connection closed or reset before one, only messages
answering someone else, a malformed stream, an error that is not 401 with REALM and
NONCE). A 401 with REALM and NONCE (or a success: an open relay) proves the relay
answers TURN on that path. The probe's public address is never in an Allocate answer to
an unauthenticated request, and the reply's bytes are not recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import failures, stun
from probe.checks._base import (
    CheckContext,
    TestKeys,
    host_and_port,
    resolve_first,
    settled_methods,
)
from probe.checks._stun import describe_response, evaluate_allocate, validate_reply
from probe.checks._tcp import connect_methods
from probe.model import Endpoint
from probe.results import Events

if TYPE_CHECKING:
    from probe.net import TcpStream

CHANNEL_DATA_HEADER = 4
CLOSE_WAIT_S = 0.2  # well within the runner's grace for a check past its budget
READ_CHUNK = 4096
MAX_MESSAGE = 65535 + stun.HEADER_LEN  # a STUN length field cannot say more
# After the connection is up, failures of the exchange itself.
_RESET = {failures.CONNECTION_RESET, failures.CONNECTION_ABORTED}


class FramingError(ValueError):
    """Bytes on a TURN stream that are neither STUN nor ChannelData."""


class StreamReader:
    """Whole TURN messages from a byte stream (RFC 8656 12.5)."""

    def __init__(self, stream: TcpStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while len(self._buffer) < size:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no complete message before the deadline")
            chunk = await self._stream.read(READ_CHUNK, left)
            if not chunk:
                raise EOFError("the relay closed the connection")
            self._buffer.extend(chunk)

    async def message(self, deadline: float) -> tuple[str, bytes]:
        """The next message: ``("stun", bytes)`` or ``("channel_data", bytes)``."""
        await self._fill(CHANNEL_DATA_HEADER, deadline)
        top = self._buffer[0] >> 6
        length = int.from_bytes(self._buffer[2:4], "big")
        if top == 0:
            kind, size = "stun", stun.HEADER_LEN + length
        elif top == 1:
            kind, size = "channel_data", CHANNEL_DATA_HEADER + length + (-length % 4)
        else:
            raise FramingError(f"first byte {self._buffer[0]:#04x} starts neither STUN "
                               "nor ChannelData")
        if size > MAX_MESSAGE:  # pragma: no cover - a 16-bit length cannot exceed it
            raise FramingError(f"a message of {size} bytes")
        await self._fill(size, deadline)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return kind, data


@dataclass
class StreamAllocate:
    """The record of one Allocate over a stream (stored in test_keys, JSON-friendly)."""

    ip: str
    port: int
    transport: str  # "tcp" | "tls"
    request_type: str
    failure: str | None = failures.GENERIC_TIMEOUT
    failed_operation: str | None = None
    connect_s: float | None = None
    tls: dict[str, Any] | None = None
    received: Events = field(default_factory=Events)  # the first few and the latest
    response: stun.StunMessage | None = None
    rtt_s: float | None = None

    def to_json(self, include_ip: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": self.ip, "port": self.port, "transport": self.transport,
            "request_type": self.request_type, "failure": self.failure,
            "failed_operation": self.failed_operation,
            "connect_s": None if self.connect_s is None else round(self.connect_s, 4),
            "tls": self.tls, **self.received.to_json("received"),
            "rtt_s": None if self.rtt_s is None else round(self.rtt_s, 4),
        }
        if self.response is not None:
            out["response"] = describe_response(self.response, include_ip, server=self.ip)
        return out


async def _open(ctx: CheckContext, ip: str, port: int, transport: str, sni: str,
                record: StreamAllocate) -> TcpStream | None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        if transport == "tls":
            # Not verified: what is measured is whether the relay answers TURN inside the
            # session; a relay's certificate (not published) is not the question.
            tls_stream = await ctx.net.tls_connect(ip, port, sni, ctx.remaining(),
                                                   ctx.cfg.ca_bundle, verify=False)
            info = tls_stream.tls
            record.tls = {"sni": sni, "version": info.version, "cipher": info.cipher,
                          "peer_subject": info.peer_subject}
            stream: TcpStream = tls_stream
        else:
            stream = await ctx.net.tcp_connect(ip, port, ctx.remaining())
    except Exception as exc:  # network failures are data
        record.failure = failures.classify(exc)
        record.failed_operation = _open_operation(transport, record.failure)
        return None
    record.connect_s = loop.time() - t0
    return stream


def _open_operation(transport: str, failure: str) -> str:
    """Which step a failure to open the stream belongs to. Opening a TLS stream connects
    and shakes hands in one call: a failure that only TLS gives (ssl_*, or the peer
    closing) is the handshake's; refused, reset, unreachable and silence are counted as
    the connect's, where a censor cutting TCP 443 to the relay shows them."""
    if transport == "tls" and failure not in _CONNECT_FAILURES:
        return "tls_handshake"
    return "tcp_connect"


_CONNECT_FAILURES = {failures.CONNECTION_REFUSED, failures.CONNECTION_RESET,
                     failures.GENERIC_TIMEOUT, failures.HOST_UNREACHABLE,
                     failures.NETWORK_UNREACHABLE, failures.NETWORK_DOWN,
                     failures.CONNECTION_ABORTED}


async def allocate_over_stream(ctx: CheckContext, ip: str, port: int, transport: str,
                               sni: str, request: stun.StunMessage,
                               deadline: float) -> StreamAllocate:
    """Open the stream, send ``request`` once, read messages until its answer."""
    loop = asyncio.get_running_loop()
    record = StreamAllocate(ip, port, transport, f"{request.msg_type:#06x}")
    stream = await _open(ctx, ip, port, transport, sni, record)
    if stream is None:
        return record
    record.failed_operation = "turn_allocate"
    reader = StreamReader(stream)
    seen_unexpected = False
    t0 = loop.time()
    try:
        await stream.write(request.encode(fingerprint=True))
        while True:
            kind, raw = await reader.message(deadline)
            t = round(loop.time() - t0, 4)
            if kind == "channel_data":
                record.received.add({"t": t, "kind": "channel_data", "bytes": len(raw)})
                continue
            try:
                reply = stun.parse(raw)
            except stun.StunParseError as exc:
                record.received.add({"t": t, "kind": "malformed", "bytes": len(raw),
                                        "reason": str(exc)})
                record.failure = failures.STUN_MALFORMED_REPLY
                return record  # no resynchronisation on a stream
            problem = None if reply.transaction_id == request.transaction_id \
                else "transaction ID is not ours"
            problem = problem or validate_reply(request, reply, ":" in ip)
            if problem is not None:
                if problem.startswith("malformed"):
                    record.received.add({"t": t, "kind": "malformed", "bytes": len(raw),
                                            "reason": problem})
                    record.failure = failures.STUN_MALFORMED_REPLY
                    return record
                seen_unexpected = True
                record.received.add({"t": t, "kind": "unexpected", "bytes": len(raw),
                                        "reason": problem, "type": f"{reply.msg_type:#06x}"})
                continue
            record.received.add({"t": t, "kind": "response", "bytes": len(raw),
                                    "type": f"{reply.msg_type:#06x}"})
            record.response = reply
            record.rtt_s = loop.time() - t0
            record.failure = evaluate_allocate(reply)
            if record.failure is None:
                record.failed_operation = None
            return record
    except FramingError as exc:
        record.received.add({"t": round(loop.time() - t0, 4), "kind": "malformed",
                                "reason": str(exc)})
        record.failure = failures.STUN_MALFORMED_REPLY
    except TimeoutError:
        record.failure = failures.STUN_UNEXPECTED_REPLY if seen_unexpected \
            else failures.GENERIC_TIMEOUT
    except Exception as exc:  # EOF, reset ...: network failures are data
        record.failure = failures.classify(exc)
    finally:
        # The answer is in or the budget is spent: do not wait long for a clean close
        # (a TLS close_notify that never comes would overrun the check's budget).
        try:
            await asyncio.wait_for(stream.close(), CLOSE_WAIT_S)
        except (TimeoutError, OSError):
            pass
    return record


def stream_methods(test_keys: TestKeys) -> list[str]:
    """Methods of a turn_tcp or turn_tls measurement."""
    settled = settled_methods(test_keys)
    if settled is not None:
        return settled
    failure = test_keys["failure"]
    operation = test_keys.get("failed_operation")
    if operation == "tcp_connect":
        return connect_methods(failure)
    if operation == "tls_handshake":
        return ["tls_failure"]
    if operation != "turn_allocate":
        return []  # e.g. stopped by the runner for overrunning its budget: says nothing
    if failure in _RESET:
        return ["tcp_reset"]  # cut once the relay's protocol showed on the stream
    if failure in (failures.GENERIC_TIMEOUT, failures.EOF_ERROR):
        return ["relay_unreachable"]  # connected, but the relay's answer never came back
    return []


async def run_stream(endpoint: Endpoint, ctx: CheckContext, transport: str) -> TestKeys:
    """The whole of the turn_tcp and turn_tls checks."""
    host, port = host_and_port(endpoint)
    sni = str(endpoint.options.get("sni") or host)  # turn_tls only
    # "fallback": the calls verdict counts this measurement as the apps' fallback path.
    keys: TestKeys = {"failure": None, "failed_operation": None, "transport": transport,
                      "fallback": True, "turn_allocate": None}
    addresses = await resolve_first(ctx, host, keys)
    if addresses is None:
        return keys
    flavor = endpoint.options.get("flavor")
    request = stun.allocate_request(extra=stun.flavour_attributes(str(flavor)) if flavor
                                    else ())
    record = await allocate_over_stream(ctx, addresses[0], port, transport, sni, request,
                                        ctx.deadline)
    keys["turn_allocate"] = record.to_json(ctx.cfg.include_ip)
    keys["failure"] = record.failure
    keys["failed_operation"] = record.failed_operation
    return keys
