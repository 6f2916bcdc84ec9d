"""Stream check: a short call-like stream through the reflector, on a call port and on
the baseline port (443) at the same time.

RTP-shaped datagrams (12-byte RTP header, 160 bytes of payload: 20 ms of audio) go out
at a call's packet rate (50 per second) for ``stream_seconds`` (RunConfig); the reflector
echoes them. Per stream: packets sent and echoed, loss, jitter (RFC 3550 A.8 on the
round-trip transit), the largest gap and when the last echo came. A call port that
fares far worse than the baseline (loss, jitter, or a cut-off: echoes stop while the
baseline's go on) is ``throttled``: a call that connects and then dies is blocked too.

Except when another check's app-flavoured probe to the same reflector port was dropped
while the stream ran and the stream's echoes stopped right then (``other_app_dropped_s``,
seconds since the stream's flow opened): a censor that blocks a port once it saw an app
there (residual blocking) cut it, which that check reports; the stream, no test of
throttling any more, is ``not_applicable`` (``after_other_app``). The run's app probes
wait for the streams to end (:func:`probe.checks._trials.neutral_use`), but only so long.
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, CheckSpec, TestKeys
from probe.checks._media import AUDIO_RTP, GRACE_S, degraded, media_end_s, stream
from probe.checks._reflector import BASELINE_PORT, ReflectorCookie, run_neutral
from probe.checks._trials import dropped_app_probes, rejected_on_path
from probe.model import Endpoint

NAME = "stream"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden",
                 doc="a call-like RTP-sized stream through the reflector on each port, "
                     "compared with its port 443")


# The stream's last echoed packet went out this close to another check's dropped app
# probe: the stream was cut by what that probe set off (20 ms between packets, and the
# censor acts on the probe's flow a moment after the probe passes it).
CUT_AT_PROBE_S = 0.3
CUT_LOSS_MARGIN = 0.15  # loss beyond what the cut explains: the stream starved before it


def outcome(test_keys: TestKeys) -> tuple[str, list[str]]:
    """(ok | throttled | udp_blocked | nothing_listens | reflector_unreachable |
    after_other_app, reasons), a pure function of the stored stream statistics."""
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
    cut_at = _cut_at_other_app(call, test_keys.get("other_app_dropped_s") or [])
    if reasons and cut_at is not None:
        return "after_other_app", [
            f"echoes stopped at {cut_at:.1f} s, when another check's app probe to this port "
            "was dropped: residual blocking that check reports, not throttling"]
    return ("throttled" if reasons else "ok"), reasons


def _cut_at_other_app(call: dict[str, Any], dropped_s: list[float]) -> float | None:
    """The time of the dropped app probe (another check's) at which the stream's echoes
    stopped for good, if they did: nothing sent after it came back, and the stream was
    whole until then (its loss is what the cut explains, give or take
    :data:`CUT_LOSS_MARGIN`: a stream a policer starved all along was throttled)."""
    last = call.get("last_echoed_sent_s")
    if last is None or not call.get("duration_s"):
        return None
    for t in dropped_s:
        if abs(float(last) - t) > CUT_AT_PROBE_S:
            continue
        cut_share = max(0.0, media_end_s(call) - t) / float(call["duration_s"])
        if float(call["loss"]) <= cut_share + CUT_LOSS_MARGIN:
            return float(t)
    return None


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
    origin = asyncio.get_running_loop().time()
    jobs: list[Any] = [stream(ctx, ip, port, seconds, cookie, origin=origin)]
    if port != BASELINE_PORT:
        jobs.append(stream(ctx, ip, BASELINE_PORT, seconds, cookie))
    results = await asyncio.gather(*jobs)
    keys: TestKeys = {"failure": None, "failed_operation": None, "reflector_port": port,
                      "packets_per_s": AUDIO_RTP.packets_per_s,
                      "packet_bytes": AUDIO_RTP.packet_bytes,
                      "call": results[0], "baseline": results[1] if len(results) > 1 else None}
    call = results[0]
    if call.get("opened_s") is not None:
        opened = origin + float(call["opened_s"])
        during = [round(t - opened, 3) for t in dropped_app_probes(ctx, port)
                  if 0 <= t - opened <= media_end_s(call)]
        if during:
            keys["other_app_dropped_s"] = during
    result, reasons = outcome(keys)
    keys["outcome"], keys["reasons"] = result, reasons
    if result == "udp_blocked":
        keys["failure"], keys["failed_operation"] = failures.GENERIC_TIMEOUT, "stream"
        if rejected_on_path(keys["call"]):
            keys["icmp_from"] = keys["call"]["icmp_from"]
    elif result in ("nothing_listens", "reflector_unreachable", "after_other_app"):
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = {"nothing_listens": "the reflector does not listen on this port",
                          "reflector_unreachable": "no echo from the reflector on this port "
                                                   "nor on its port 443",
                          "after_other_app": reasons[0]}[result]
    return keys
