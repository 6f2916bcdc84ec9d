"""Stream check: a short call-like stream through the reflector, on a call port and on
the baseline port (443) at the same time.

RTP-shaped datagrams (12-byte RTP header, 160 bytes of payload: 20 ms of audio) go out
at a call's packet rate (50 per second) for ``stream_seconds`` (RunConfig); the reflector
echoes them. Per stream: packets sent and echoed, loss, jitter (RFC 3550 A.8 on the
round-trip transit), the largest gap and when the last echo came. A call port that
fares far worse than the baseline (loss, jitter, or a cut-off: echoes stop while the
baseline's go on) is ``throttled``: a call that connects and then dies is blocked too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, CheckSpec, TestKeys
from probe.checks._media import AUDIO_RTP, GRACE_S, degraded, stream
from probe.checks._reflector import BASELINE_PORT, ReflectorCookie, run_neutral
from probe.checks._trials import rejected_on_path
from probe.model import Endpoint

NAME = "stream"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden",
                 doc="a call-like RTP-sized stream through the reflector on each port, "
                     "compared with its port 443")


def outcome(test_keys: TestKeys) -> tuple[str, list[str]]:
    """(ok | throttled | udp_blocked | nothing_listens | reflector_unreachable,
    reasons), a pure function of the stored stream statistics."""
    call, base = test_keys.get("call") or {}, test_keys.get("baseline") or {}
    if not call.get("received"):
        if rejected_on_path(call):
            return "udp_blocked", [f"ICMP port unreachable from {call['icmp_from']}, a router "
                                   "on the path"]
        if call.get("icmp") == failures.PORT_UNREACHABLE:
            return "nothing_listens", []
        if base and base.get("received"):
            return "udp_blocked", []
        return "reflector_unreachable", []
    if not base or not base.get("received"):
        return "ok", ["no baseline to compare with"] if not base else []
    reasons = [f"{r} on the baseline" if not r.startswith("cut off") else r
               for r in degraded(call, base)]
    return ("throttled" if reasons else "ok"), reasons


def methods(test_keys: TestKeys) -> list[str]:
    if test_keys.get("failure") == failures.NOT_APPLICABLE:
        return []
    result, _ = outcome(test_keys)
    return {"throttled": ["throttled"], "udp_blocked": ["udp_blocked"]}.get(result, [])


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_neutral(endpoint, ctx, _measure)


async def _measure(ctx: CheckContext, port: int, ip: str, cookie: ReflectorCookie,
                   ) -> TestKeys:
    seconds = max(0.5, min(float(ctx.cfg.stream_seconds), ctx.remaining() - GRACE_S - 0.2))
    jobs: list[Any] = [stream(ctx, ip, port, seconds, cookie)]
    if port != BASELINE_PORT:
        jobs.append(stream(ctx, ip, BASELINE_PORT, seconds, cookie))
    results = await asyncio.gather(*jobs)
    keys: TestKeys = {"failure": None, "failed_operation": None, "reflector_port": port,
                      "packets_per_s": AUDIO_RTP.packets_per_s,
                      "packet_bytes": AUDIO_RTP.packet_bytes,
                      "call": results[0], "baseline": results[1] if len(results) > 1 else None}
    result, reasons = outcome(keys)
    keys["outcome"], keys["reasons"] = result, reasons
    if result == "udp_blocked":
        keys["failure"], keys["failed_operation"] = failures.GENERIC_TIMEOUT, "stream"
        if rejected_on_path(keys["call"]):
            keys["icmp_from"] = keys["call"]["icmp_from"]
    elif result in ("nothing_listens", "reflector_unreachable"):
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = ("the reflector does not listen on this port"
                          if result == "nothing_listens"
                          else "no echo from the reflector on this port nor on its port 443")
    return keys
