"""Shared machinery of the call-path checks (stun, turn, udp, differential, stream).

* :func:`stun_transaction`: one STUN request over UDP with RFC 8489 retransmission
  (section 6.2.1: RTO 500 ms, doubling, Rc = 7 sends, Rm = 16) cut to the check's
  budget, every send and every datagram received recorded, and the reply validated
  (cookie, transaction ID, FINGERPRINT, XOR-MAPPED-ADDRESS). Outcomes are distinct
  failure strings: no answer (``generic_timeout_error``), an ICMP error
  (``port_unreachable``, ``host_unreachable`` ...), a malformed reply
  (``stun_malformed_reply``) or only well-formed replies that answer someone else
  (``stun_unexpected_reply``: a wrong transaction ID, an injected answer).
* :func:`trials`: payloads of several *kinds* (plain STUN, app-flavoured STUN, random
  bytes of the same length) sent in random order, repeated, over ONE flow (the same
  5-tuple) to the reflector, each matched to its own reply; plus a baseline flow to the
  reflector's port 443. This is the payload-differential test of techniques.md 4.5.
* :func:`control_methods`: what a same-port reflector control says about a failure
  to a service's server: the port is blocked (``udp_blocked``), STUN is (``stun_dpi``),
  or only that destination is (``relay_unreachable``).
* Privacy: the probe's public address (XOR-MAPPED-ADDRESS) is recorded only with
  ``--include-ip``; raw reply bytes are never recorded.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import failures, stun

if TYPE_CHECKING:
    from probe.checks import CheckContext
    from probe.net import UdpFlow

RTO_S = 0.5  # RFC 8489 6.2.1: initial RTO >= 500 ms
MAX_SENDS = 7  # Rc
LAST_WAIT_FACTOR = 16  # Rm
BASELINE_PORT = 443
SCRUBBED = "[scrubbed]"
MIN_STUN_LEN = 48  # big enough for the reflector's Binding response to fit (40 bytes)

# --- reflector ----------------------------------------------------------------------


async def reflector_address(ctx: CheckContext) -> tuple[str | None, dict[str, Any]]:
    """The reflector's IP (resolved if a name) and a record of how it was found."""
    host = ctx.cfg.reflector
    if not host:
        return None, {"failure": failures.NOT_APPLICABLE,
                      "reason": "no reflector given (--reflector)"}
    res = await ctx.resolver.resolve(host, ctx.deadline)
    if res.failure is not None or not res.addresses:
        return None, {"failure": res.failure or failures.DNS_NO_ANSWER,
                      "failed_operation": "resolve_reflector"}
    v4 = [a for a in res.addresses if ":" not in a]
    return (v4 or res.addresses)[0], {"failure": None}


def udp_failure(exc: BaseException) -> str:
    """An exception from a UDP flow as a failure string (ICMP port unreachable is
    reported by the kernel as ECONNREFUSED on a connected UDP socket)."""
    if isinstance(exc, ConnectionRefusedError):
        return failures.PORT_UNREACHABLE
    return failures.classify(exc)


# --- one STUN transaction -----------------------------------------------------------


@dataclass
class Transaction:
    """The record of one STUN transaction (stored in test_keys, JSON-friendly)."""

    ip: str
    port: int
    request_type: str
    sends: list[float] = field(default_factory=list)  # seconds since the first send
    received: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = failures.GENERIC_TIMEOUT
    response: stun.StunMessage | None = None
    rtt_s: float | None = None
    local: tuple[str, int] | None = None

    def to_json(self, include_ip: bool, local: tuple[str, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ip": self.ip, "port": self.port, "request_type": self.request_type,
            "sends": [round(t, 4) for t in self.sends], "received": self.received,
            "failure": self.failure, "rtt_s": None if self.rtt_s is None else round(self.rtt_s, 4),
        }
        if self.response is not None:
            out["response"] = describe_response(self.response, include_ip, local)
        return out


def describe_response(msg: stun.StunMessage, include_ip: bool,
                      local: tuple[str, int] | None = None) -> dict[str, Any]:
    """Type, attributes, error code, realm; the mapped address only if ``include_ip``."""
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
        out["mapped_address"] = f"{xma.host}:{xma.port}" if include_ip else SCRUBBED
        if local is not None:
            out["behind_nat"] = (xma.host, xma.port) != (local[0], local[1])
        plain = msg.mapped_address
        if plain is not None:
            # RFC 8489 14.2: NAT ALGs rewrite addresses in the clear; compare both forms.
            out["alg_rewrote_mapped_address"] = plain != xma
    return out


def _validate(request: stun.StunMessage, reply: stun.StunMessage, family_v6: bool) -> str | None:
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
    try:
        flow = await ctx.net.udp_open(ip, port)
    except Exception as exc:  # network failures are data
        tx.failure = udp_failure(exc)
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
                tx.received.append({"t": round(loop.time() - t0, 4), "kind": "icmp",
                                    "failure": tx.failure})
                return tx
            t = round(loop.time() - t0, 4)
            try:
                reply = stun.parse(raw)
            except stun.StunParseError as exc:
                seen_malformed = True
                tx.received.append({"t": t, "kind": "malformed", "bytes": len(raw),
                                    "reason": str(exc)})
                continue
            if reply.transaction_id != request.transaction_id:
                seen_unexpected = True
                tx.received.append({"t": t, "kind": "unexpected", "bytes": len(raw),
                                    "reason": "transaction ID is not ours",
                                    "type": f"{reply.msg_type:#06x}"})
                continue
            problem = _validate(request, reply, ":" in ip)
            if problem == "unexpected":
                seen_unexpected = True
                tx.received.append({"t": t, "kind": "unexpected", "bytes": len(raw),
                                    "reason": "not a response to our request",
                                    "type": f"{reply.msg_type:#06x}"})
                continue
            if problem is not None:
                seen_malformed = True
                tx.received.append({"t": t, "kind": "malformed", "bytes": len(raw),
                                    "reason": problem})
                continue
            tx.received.append({"t": t, "kind": "response", "bytes": len(raw),
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


# --- payload kinds ----------------------------------------------------------------------

def pad_to(msg: stun.StunMessage, length: int) -> stun.StunMessage:
    """Append a SOFTWARE attribute so that the message (with FINGERPRINT) is ``length``
    bytes long; the app's markers stay where they were."""
    missing = length - len(msg.encode(fingerprint=True))
    if missing < 0 or missing % 4:
        raise ValueError(f"cannot pad a STUN message to {length} bytes")
    if missing:
        msg.add(stun.ATTR_SOFTWARE, b"." * (missing - 4))
    return msg


def plain_stun(length: int) -> stun.StunMessage:
    """A plain Binding request (SOFTWARE, FINGERPRINT) of exactly ``length`` bytes."""
    text_len = length - stun.HEADER_LEN - 4 - 8  # SOFTWARE header, FINGERPRINT
    if text_len < 1 or length % 4:
        raise ValueError(f"no plain STUN message of {length} bytes")
    software = (stun.SOFTWARE + " " + "." * 200)[:text_len]
    return stun.binding_request(software=software)


def random_bytes(length: int) -> bytes:
    """Random bytes that no STUN demultiplexer would take for STUN (no magic cookie)."""
    while True:
        data = os.urandom(length)
        if length < 8 or data[4:8] != stun.MAGIC_COOKIE.to_bytes(4, "big"):
            return data


@dataclass
class Payload:
    data: bytes
    txid: bytes | None  # STUN payloads: answered by a Binding response or an echo

    def answered_by(self, reply: bytes) -> bool:
        if reply == self.data:
            return True
        if self.txid is None:
            return False
        try:
            msg = stun.parse(reply)
        except stun.StunParseError:
            return False
        return msg.transaction_id == self.txid and msg.msg_class == stun.CLASS_SUCCESS


PayloadMaker = Callable[[], Payload]


def stun_payload(msg: stun.StunMessage) -> Payload:
    return Payload(msg.encode(fingerprint=True), msg.transaction_id)


def differential_makers(flavor: str | None) -> tuple[dict[str, PayloadMaker], int]:
    """Payload makers for plain STUN, app STUN (if ``flavor``) and random bytes, all of
    one length, so that only the content differs."""
    length = MIN_STUN_LEN
    if flavor:
        length = max(length, len(stun.app_flavoured(flavor).encode(fingerprint=True)))
    makers: dict[str, PayloadMaker] = {
        "stun": lambda: stun_payload(plain_stun(length)),
        "random": lambda: Payload(random_bytes(length), None),
    }
    if flavor:
        makers["app_stun"] = lambda: stun_payload(pad_to(stun.app_flavoured(flavor), length))
    return makers, length


# --- trials over one flow ----------------------------------------------------------------


@dataclass
class KindStats:
    sent: int = 0
    answered: int = 0
    rtts: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "answered": self.answered,
                "rtt_s": [round(x, 4) for x in self.rtts]}


async def trials(ctx: CheckContext, ip: str, port: int, makers: dict[str, PayloadMaker],
                 repeats: int, deadline: float, wait_s: float = 0.6,
                 until_all_answered: bool = False) -> dict[str, Any]:
    """Send each kind ``repeats`` times in random order over one flow; count answers.
    With ``until_all_answered``, stop as soon as every kind has had an answer.

    Returns {"port", "order", "kinds": {kind: KindStats}, "icmp": failure|None,
    "failure": set when the flow could not be used}.
    """
    loop = asyncio.get_running_loop()
    order = [k for k in makers for _ in range(repeats)]
    random.shuffle(order)
    stats = {k: KindStats() for k in makers}
    result: dict[str, Any] = {"port": port, "order": order, "icmp": None, "failure": None}
    try:
        flow = await ctx.net.udp_open(ip, port)
    except Exception as exc:
        result["failure"] = udp_failure(exc)
        result["kinds"] = {k: s.to_json() for k, s in stats.items()}
        return result
    outstanding: list[tuple[str, Payload, float]] = []
    per_trial = wait_s
    try:
        for i, kind in enumerate(order):
            if until_all_answered and all(st.answered for st in stats.values()):
                result["order"] = order[:i]
                break
            now = loop.time()
            left = deadline - now
            if left <= 0.05:
                break
            # spread what is left over the remaining trials, at most wait_s each
            per_trial = min(wait_s, left / (len(order) - i))
            payload = makers[kind]()
            await flow.send(payload.data)
            stats[kind].sent += 1
            outstanding.append((kind, payload, now))
            await _collect(flow, outstanding, stats, result, now + per_trial, payload)
        # late answers (an answer may come just after its trial's window)
        await _collect(flow, outstanding, stats, result, min(deadline, loop.time() + per_trial))
    except OSError as exc:
        result["failure"] = udp_failure(exc)
    finally:
        flow.close()
    result["kinds"] = {k: s.to_json() for k, s in stats.items()}
    return result


async def _collect(flow: UdpFlow, outstanding: list[tuple[str, Payload, float]],
                   stats: dict[str, KindStats], result: dict[str, Any], until: float,
                   awaited: Payload | None = None) -> None:
    """Receive and match answers until the loop time ``until``, or sooner once ``awaited``
    (without it: every outstanding payload) is answered. An ICMP error on the flow is noted
    in ``result["icmp"]`` and receiving goes on."""
    loop = asyncio.get_running_loop()

    def waiting() -> bool:
        if awaited is None:
            return bool(outstanding)
        return any(p is awaited for _, p, _ in outstanding)

    while waiting() and loop.time() < until:
        try:
            reply = await flow.recv(until - loop.time())
        except TimeoutError:
            return
        except OSError as exc:
            result["icmp"] = udp_failure(exc)
            continue
        _match(reply, outstanding, stats, loop.time())


def _match(reply: bytes, outstanding: list[tuple[str, Payload, float]],
           stats: dict[str, KindStats], now: float) -> None:
    for index, (kind, payload, sent_at) in enumerate(outstanding):
        if payload.answered_by(reply):
            stats[kind].answered += 1
            stats[kind].rtts.append(now - sent_at)
            del outstanding[index]
            return


def merge_trials(first: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Counts of two rounds of :func:`trials` on the same port, added up."""
    kinds: dict[str, Any] = {}
    for kind in set(first.get("kinds") or {}) | set(more.get("kinds") or {}):
        a = (first.get("kinds") or {}).get(kind) or {"sent": 0, "answered": 0, "rtt_s": []}
        b = (more.get("kinds") or {}).get(kind) or {"sent": 0, "answered": 0, "rtt_s": []}
        kinds[kind] = {"sent": a["sent"] + b["sent"], "answered": a["answered"] + b["answered"],
                       "rtt_s": [*a["rtt_s"], *b["rtt_s"]]}
    return {"port": first.get("port"), "order": [*first.get("order", []), *more.get("order", [])],
            "icmp": first.get("icmp") or more.get("icmp"),
            "failure": first.get("failure") or more.get("failure"), "kinds": kinds,
            "rounds": int(first.get("rounds", 1)) + int(more.get("rounds", 1))}


def answered(result: dict[str, Any] | None, kind: str) -> bool | None:
    """Did any payload of ``kind`` get an answer? None when not tried."""
    if not result:
        return None
    stats = (result.get("kinds") or {}).get(kind)
    if not stats or not stats.get("sent"):
        return None
    return bool(stats.get("answered"))


def any_answered(result: dict[str, Any] | None) -> bool:
    return any(int(s.get("answered", 0)) > 0
               for s in ((result or {}).get("kinds") or {}).values())


# --- a same-port reflector control for checks to a service's own servers --------------


async def reflector_control(ctx: CheckContext, port: int, deadline: float,
                            ) -> dict[str, Any] | None:
    """Plain STUN and random bytes to the reflector on ``port``, and random bytes to its
    baseline port; None when no reflector is configured."""
    ip, info = await reflector_address(ctx)
    if ip is None:
        return None if info["failure"] == failures.NOT_APPLICABLE else info
    makers, _ = differential_makers(None)
    same, base = await asyncio.gather(
        trials(ctx, ip, port, makers, 2, deadline),
        trials(ctx, ip, BASELINE_PORT, {"random": makers["random"]}, 2, deadline),
    )
    return {"failure": None, "same_port": same, "baseline": base}


def control_methods(control: dict[str, Any] | None) -> list[str]:
    """Methods a failure to a service's server shows, given the same-port control."""
    if not control or control.get("failure"):
        return []
    same, base = control.get("same_port"), control.get("baseline")
    if not any_answered(same) and (same or {}).get("icmp") == failures.PORT_UNREACHABLE:
        return []  # the reflector does not listen on this port: the path works, no test
    if answered(same, "stun"):
        return ["relay_unreachable"]  # STUN passes on this port: that destination is cut
    if answered(same, "random"):
        return ["stun_dpi"]  # random bytes pass on the same 5-tuple, STUN does not
    if any_answered(base):
        return ["udp_blocked"]  # nothing passes on this port, the baseline port works
    return []  # the reflector is unreachable: nothing can be said
