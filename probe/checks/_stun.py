"""One STUN transaction over UDP (RFC 8489), as the stun and turn checks make it.

:func:`stun_transaction` sends a request with RFC 8489 retransmission (section 6.2.1:
RTO 500 ms, doubling, Rc = 7 sends, Rm = 16) cut to the check's budget, records every
send and every datagram received, and validates the reply (cookie, transaction ID,
FINGERPRINT, XOR-MAPPED-ADDRESS). Outcomes are distinct failure strings: no answer
(``generic_timeout_error``), an ICMP error (``port_unreachable``, ``host_unreachable``
..., with its sender in ``icmp_from`` where the system tells it), a malformed reply
(``stun_malformed_reply``) or only well-formed replies that answer someone else
(``stun_unexpected_reply``: a wrong transaction ID, an injected answer).
:func:`run_transaction` is the whole of either check: resolve, transact, and on silence a
same-port reflector control (:mod:`probe.checks._reflector`).

An ICMP error is judged by its sender (DESIGN.md "Measurement rules learned from real
DPI"): from the server itself, nothing listens there (no method: the server is down, not
blocked); a port unreachable from any other address, a router on the path, is the
network refusing the datagram: ``udp_blocked``, the router's address in ``icmp_from``.

Privacy: the probe's public address (XOR-MAPPED-ADDRESS) is recorded only with
``--include-ip``; raw reply bytes are never recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probe import failures, stun
from probe.checks._base import (
    CheckContext,
    TestKeys,
    host_and_port,
    open_udp,
    resolve_first,
    settled_methods,
    udp_failure,
)
from probe.checks._payloads import PayloadMaker
from probe.checks._reflector import control_methods, reflector_control
from probe.model import Endpoint
from probe.net import icmp_sender
from probe.privacy import learned_own_address
from probe.results import Events

RTO_S = 0.5  # RFC 8489 6.2.1: initial RTO >= 500 ms
MAX_SENDS = 7  # Rc
LAST_WAIT_FACTOR = 16  # Rm
SCRUBBED = "[scrubbed]"
CONTROL_AFTER_S = 1.5  # start the reflector control when no answer came by then
# Failures after which the same-port reflector control says how the server is blocked.
_CONTROLLED = {failures.GENERIC_TIMEOUT, failures.PORT_UNREACHABLE,
               failures.HOST_UNREACHABLE, failures.NETWORK_UNREACHABLE}


def stun_methods(test_keys: TestKeys) -> list[str]:
    """Methods of a stun or turn measurement."""
    settled = settled_methods(test_keys)
    if settled is not None:
        return settled
    sender = test_keys.get("icmp_from")
    if sender is not None:
        servers = {tx.get("ip") for tx in test_keys.values()
                   if isinstance(tx, dict) and "request_type" in tx}
        if sender in servers:
            return []  # the server itself: nothing listens there
        if test_keys["failure"] == failures.PORT_UNREACHABLE:
            return ["udp_blocked"]  # a router on the path refused the datagram
    if test_keys["failure"] in _CONTROLLED:
        return control_methods(test_keys.get("control"))
    return []


@dataclass
class Transaction:
    """The record of one STUN transaction (stored in test_keys, JSON-friendly)."""

    ip: str
    port: int
    request_type: str
    sends: list[float] = field(default_factory=list)  # seconds since the first send
    # What came back: the first few datagrams and the latest (probe.results.keep_event).
    received: Events = field(default_factory=Events)
    failure: str | None = failures.GENERIC_TIMEOUT
    response: stun.StunMessage | None = None
    rtt_s: float | None = None
    local: tuple[str, int] | None = None
    icmp_from: str | None = None  # the sender of the ICMP error, when the system says

    def to_json(self, include_ip: bool, local: tuple[str, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": self.ip, "port": self.port, "request_type": self.request_type,
            "sends": [round(t, 4) for t in self.sends], **self.received.to_json("received"),
            "failure": self.failure, "rtt_s": None if self.rtt_s is None else round(self.rtt_s, 4),
        }
        if self.response is not None:
            out["response"] = describe_response(self.response, include_ip, local, self.ip)
        return out


def describe_response(msg: stun.StunMessage, include_ip: bool,
                      local: tuple[str, int] | None = None,
                      server: str | None = None) -> dict[str, Any]:
    """Type, attributes, error code, realm; the mapped address only if ``include_ip``.
    The mapped address is the probe's own, to be scrubbed everywhere else too, unless it
    is the server's (a forged answer must not blank the server out of the report)."""
    out: dict[str, Any] = stun.describe(msg)
    err = msg.error_code
    if err is not None:
        out["error_code"] = err.code
        out["reason"] = err.reason
    if msg.realm is not None:
        out["realm"] = msg.realm
    if msg.nonce is not None:
        out["nonce_present"] = True
    if msg.software is not None:
        out["software"] = msg.software
    xma = msg.xor_mapped_address
    if xma is not None:
        plain_host = msg.mapped_address.host if msg.mapped_address is not None else None
        learned_own_address(*(h for h in (xma.host, plain_host) if h != server))
        out["mapped_address"] = f"{xma.host}:{xma.port}" if include_ip else SCRUBBED
        if local is not None:
            out["behind_nat"] = (xma.host, xma.port) != (local[0], local[1])
        plain = msg.mapped_address
        if plain is not None:
            # RFC 8489 14.2: NAT ALGs rewrite addresses in the clear; compare both forms.
            out["alg_rewrote_mapped_address"] = plain != xma
    return out


def evaluate_allocate(reply: stun.StunMessage) -> str | None:
    """A TURN Allocate's answer that proves a relay (RFC 8656 7.2, RFC 8489 9.2.4): a 401
    with REALM and NONCE, or a success (an open relay: reachable all the same)."""
    if reply.msg_class == stun.CLASS_SUCCESS:
        return None
    err = reply.error_code
    if err is not None and err.code == 401 and reply.realm and reply.nonce is not None:
        return None
    return failures.STUN_ERROR_RESPONSE


def validate_reply(request: stun.StunMessage, reply: stun.StunMessage,
                   family_v6: bool) -> str | None:
    """Why a reply to our transaction ID is not a valid answer, or None."""
    if reply.method != request.method or reply.msg_class not in (stun.CLASS_SUCCESS,
                                                                  stun.CLASS_ERROR):
        return "unexpected"
    if reply.msg_class == stun.CLASS_ERROR:
        return None if reply.error_code is not None else "malformed: error without ERROR-CODE"
    if request.method == stun.METHOD_BINDING:
        xma = reply.xor_mapped_address
        if xma is None:
            return "malformed: no XOR-MAPPED-ADDRESS"
        if (":" in xma.host) != family_v6:
            return "malformed: XOR-MAPPED-ADDRESS of the wrong address family"
    return None


async def stun_transaction(ctx: CheckContext, ip: str, port: int,
                           request: stun.StunMessage, deadline: float) -> Transaction:
    """Send ``request`` with RFC 8489 retransmission until a valid answer, an ICMP
    error or ``deadline`` (event-loop time)."""
    loop = asyncio.get_running_loop()
    tx = Transaction(ip, port, f"{request.msg_type:#06x}")
    data = request.encode(fingerprint=True)
    flow, failure = await open_udp(ctx, ip, port)
    if flow is None:
        tx.failure = failure
        return tx
    tx.local = flow.local_address
    seen_malformed = seen_unexpected = False
    t0 = loop.time()
    rto = RTO_S
    next_send = t0
    try:
        while True:
            now = loop.time()
            if now >= deadline:
                break
            if now >= next_send:
                if len(tx.sends) >= MAX_SENDS:
                    break
                await flow.send(data)
                tx.sends.append(now - t0)
                wait = rto * (LAST_WAIT_FACTOR if len(tx.sends) == MAX_SENDS else 1)
                next_send = now + wait
                rto *= 2
            try:
                raw = await flow.recv(min(next_send, deadline) - loop.time())
            except TimeoutError:
                continue
            except OSError as exc:  # an ICMP error for this flow: a hard failure
                tx.failure = udp_failure(exc)
                tx.icmp_from = icmp_sender(exc)
                tx.received.add({"t": round(loop.time() - t0, 4), "kind": "icmp",
                                 "failure": tx.failure, "from": tx.icmp_from})
                return tx
            t = round(loop.time() - t0, 4)
            try:
                reply = stun.parse(raw)
            except stun.StunParseError as exc:
                seen_malformed = True
                tx.received.add({"t": t, "kind": "malformed", "bytes": len(raw),
                                    "reason": str(exc)})
                continue
            if reply.transaction_id != request.transaction_id:
                seen_unexpected = True
                tx.received.add({"t": t, "kind": "unexpected", "bytes": len(raw),
                                    "reason": "transaction ID is not ours",
                                    "type": f"{reply.msg_type:#06x}"})
                continue
            problem = validate_reply(request, reply, ":" in ip)
            if problem == "unexpected":
                seen_unexpected = True
                tx.received.add({"t": t, "kind": "unexpected", "bytes": len(raw),
                                    "reason": "not a response to our request",
                                    "type": f"{reply.msg_type:#06x}"})
                continue
            if problem is not None:
                seen_malformed = True
                tx.received.add({"t": t, "kind": "malformed", "bytes": len(raw),
                                    "reason": problem})
                continue
            tx.received.add({"t": t, "kind": "response", "bytes": len(raw),
                                "type": f"{reply.msg_type:#06x}"})
            tx.response = reply
            tx.rtt_s = loop.time() - t0 - tx.sends[-1]
            tx.failure = None
            return tx
    except OSError as exc:  # send failed (network unreachable, ...)
        tx.failure = udp_failure(exc)
        return tx
    finally:
        flow.close()
    if seen_malformed:
        tx.failure = failures.STUN_MALFORMED_REPLY
    elif seen_unexpected:
        tx.failure = failures.STUN_UNEXPECTED_REPLY
    return tx


async def run_transaction(endpoint: Endpoint, ctx: CheckContext, request: stun.StunMessage,
                          key: str, evaluate: Callable[[stun.StunMessage], str | None],
                          app: PayloadMaker | None = None) -> TestKeys:
    """Shared by the stun and turn checks: resolve, transact, control on failure. An
    app-flavoured ``request`` gives ``app``, a maker of the same kind of request, for the
    control to try on the reflector too: dropped there while plain STUN passes is
    ``app_stun_dpi``, not a cut destination."""
    host, port = host_and_port(endpoint)
    keys: TestKeys = {"failure": None, "failed_operation": None, key: None, "control": None}
    addresses = await resolve_first(ctx, host, keys)
    if addresses is None:
        return keys
    ip = addresses[0]

    async def control_later() -> dict[str, Any] | None:
        await asyncio.sleep(min(CONTROL_AFTER_S, ctx.remaining() / 3))
        return await reflector_control(ctx, port, ctx.deadline, app)

    control = asyncio.ensure_future(control_later())
    tx = await stun_transaction(ctx, ip, port, request, ctx.deadline)
    if tx.failure is None and tx.response is not None:
        tx.failure = evaluate(tx.response)
    if tx.failure is None or tx.failure not in _CONTROLLED:
        control.cancel()
        try:
            await control
        except asyncio.CancelledError:
            pass
        else:
            keys["control"] = control.result()
    else:
        keys["control"] = await control
        previous = (ctx.main_pass or {}).get("control")
        if keys["control"] and previous and control_methods(previous) == ["app_stun_dpi"]:
            keys["control"]["previous_outcome"] = "app_stun_dpi"
    keys[key] = tx.to_json(ctx.cfg.include_ip, tx.local)
    if tx.icmp_from is not None:
        keys["icmp_from"] = tx.icmp_from
    if tx.failure is not None:
        keys["failure"] = tx.failure
        keys["failed_operation"] = key
    return keys
