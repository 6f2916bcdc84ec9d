"""Trials: payloads of several *kinds* (plain STUN, app-flavoured STUN, random bytes of
the same length) sent in random order, repeated, over ONE flow (the same 5-tuple) to the
reflector, each matched to its own reply. This is the payload-differential test of
techniques.md 4.5, used by the udp and differential checks and the reflector control."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe.checks._base import CheckContext, udp_failure
from probe.checks._payloads import Payload, PayloadMaker

if TYPE_CHECKING:
    from probe.net import UdpFlow


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
