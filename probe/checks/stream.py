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
import itertools
import os
import struct
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, CheckSpec, TestKeys, udp_failure
from probe.checks._reflector import BASELINE_PORT, ReflectorCookie, run_neutral
from probe.model import Endpoint

NAME = "stream"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden",
                 doc="a call-like RTP-sized stream through the reflector on each port, "
                     "compared with its port 443")
PACKETS_PER_S = 50
PAYLOAD_LEN = 160
GRACE_S = 0.5  # wait for late echoes after the last send
# Thresholds: how much worse than the baseline the call port must be.
LOSS_MARGIN = 0.2  # absolute loss fraction above the baseline's ...
LOSS_FACTOR = 2.0  # ... and at least twice the baseline's
JITTER_FACTOR = 3.0
JITTER_MARGIN_MS = 30.0
CUTOFF_S = 1.0  # echoes stopped this long before the end while the baseline's did not


def outcome(test_keys: TestKeys) -> tuple[str, list[str]]:
    """(ok | throttled | udp_blocked | nothing_listens | reflector_unreachable,
    reasons), a pure function of the stored stream statistics."""
    call, base = test_keys.get("call") or {}, test_keys.get("baseline") or {}
    if not call.get("received"):
        if call.get("icmp") == failures.PORT_UNREACHABLE:
            return "nothing_listens", []
        if base and base.get("received"):
            return "udp_blocked", []
        return "reflector_unreachable", []
    if not base or not base.get("received"):
        return "ok", ["no baseline to compare with"] if not base else []
    reasons = []
    loss_c, loss_b = float(call["loss"]), float(base["loss"])
    if loss_c - loss_b >= LOSS_MARGIN and loss_c >= LOSS_FACTOR * loss_b:
        reasons.append(f"loss {loss_c:.0%} against {loss_b:.0%} on the baseline")
    jit_c, jit_b = float(call["jitter_ms"]), float(base["jitter_ms"])
    if jit_c > JITTER_FACTOR * jit_b + JITTER_MARGIN_MS:
        reasons.append(f"jitter {jit_c:.0f} ms against {jit_b:.0f} ms on the baseline")
    dur = float(call["duration_s"])
    if (float(call["last_echo_s"]) < dur - CUTOFF_S
            and float(base["last_echo_s"]) >= float(base["duration_s"]) - CUTOFF_S):
        reasons.append(f"cut off: echoes stopped at {call['last_echo_s']:.1f} s of {dur:.1f} s")
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
                      "packets_per_s": PACKETS_PER_S, "packet_bytes": 12 + PAYLOAD_LEN,
                      "call": results[0], "baseline": results[1] if len(results) > 1 else None}
    result, reasons = outcome(keys)
    keys["outcome"], keys["reasons"] = result, reasons
    if result == "udp_blocked":
        keys["failure"], keys["failed_operation"] = failures.GENERIC_TIMEOUT, "stream"
    elif result in ("nothing_listens", "reflector_unreachable"):
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = ("the reflector does not listen on this port"
                          if result == "nothing_listens"
                          else "no echo from the reflector on this port nor on its port 443")
    return keys


async def stream(ctx: CheckContext, ip: str, port: int, seconds: float,
                 cookie: ReflectorCookie) -> dict[str, Any]:
    """Send an RTP-like stream over one flow and collect the echoes (each packet carries
    the cookie's token after its RTP header)."""
    loop = asyncio.get_running_loop()
    count = max(1, int(seconds * PACKETS_PER_S))
    ssrc = os.urandom(4)
    out: dict[str, Any] = {"port": port, "sent": 0, "received": 0, "loss": 1.0,
                           "jitter_ms": 0.0, "max_gap_s": None, "first_echo_s": None,
                           "last_echo_s": 0.0, "duration_s": round(count / PACKETS_PER_S, 3),
                           "icmp": None, "failure": None}
    try:
        flow = await ctx.net.udp_open(ip, port)
    except Exception as exc:
        out["failure"] = udp_failure(exc)
        return out
    sent: dict[int, tuple[float, bytes]] = {}
    arrivals: list[tuple[float, float]] = []  # (send time, receive time), relative
    t0 = loop.time()

    async def sender() -> None:
        for seq in range(count):
            at = t0 + seq / PACKETS_PER_S
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            header = struct.pack("!BBHI", 0x80, 111, seq, seq * 960) + ssrc
            packet = cookie.with_cookie(header + os.urandom(PAYLOAD_LEN), "rtp")
            sent[seq] = (loop.time() - t0, packet)
            try:
                await flow.send(packet)
            except OSError as exc:
                out["failure"] = udp_failure(exc)
                return
            out["sent"] = seq + 1

    send_task = asyncio.ensure_future(sender())
    end = t0 + count / PACKETS_PER_S + GRACE_S
    try:
        while True:
            left = min(end, ctx.deadline) - loop.time()
            if left <= 0:
                break
            try:
                data = await flow.recv(left)
            except TimeoutError:
                break
            except OSError as exc:
                out["icmp"] = udp_failure(exc)
                continue
            if len(data) < 12 or data[8:12] != ssrc:
                continue
            seq = struct.unpack_from("!H", data, 2)[0]
            entry = sent.pop(seq, None)
            if entry is None or entry[1] != data:
                continue
            arrivals.append((entry[0], loop.time() - t0))
    finally:
        send_task.cancel()
        try:
            await send_task
        except asyncio.CancelledError:
            pass
        flow.close()
    out.update(_stats(arrivals, int(out["sent"])))
    return out


def _stats(arrivals: list[tuple[float, float]], sent: int) -> dict[str, Any]:
    received = len(arrivals)
    stats: dict[str, Any] = {"received": received,
                             "loss": round(1 - received / sent, 4) if sent else 1.0}
    if not arrivals:
        return stats
    jitter = 0.0
    prev_transit = None
    for send_t, recv_t in arrivals:  # RFC 3550 A.8, on round-trip transit
        transit = recv_t - send_t
        if prev_transit is not None:
            jitter += (abs(transit - prev_transit) - jitter) / 16
        prev_transit = transit
    times = [r for _, r in arrivals]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    stats.update({"jitter_ms": round(jitter * 1000, 3),
                  "max_gap_s": round(max(gaps), 4) if gaps else 0.0,
                  "first_echo_s": round(times[0], 4), "last_echo_s": round(times[-1], 4)})
    return stats
