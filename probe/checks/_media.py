"""Call media through the reflector: RTP- or SRTP-shaped datagrams at a call's packet rate,
echoed by the reflector, optionally after a STUN set-up on the same flow (one 5-tuple), as
a call sends them; and the statistics that tell a working call from a throttled or cut one.
Shared by the stream and call checks.

A stream sends ``packets_per_s`` datagrams of one :class:`MediaShape` for ``seconds``
over one flow and matches each echo to its packet (SSRC and sequence number, exact bytes).
With a ``setup`` payload (a STUN request), the request goes first and is re-sent every
:data:`SETUP_RESEND_S` until answered, through the whole stream (apps keep sending STUN
connectivity checks and keepalives during a call, RFC 7675); media starts once it is
answered, or after ``setup_wait_s``. With ``realtime``, packets go out as a call's do: a
slot the event loop missed by more than :data:`LATE_S` is skipped (``skipped``), never
sent in a burst, and nothing is sent later than the check's deadline less :data:`GRACE_S`.
Per stream: packets sent and echoed, loss, jitter (RFC 3550 A.8 on the round-trip
transit), the largest gap, the first and last echo, and the set-up's sends and answers.
Times are seconds since the stream's flow opened; ``opened_s`` places that on the
caller's clock (``origin``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from dataclasses import dataclass
from typing import Any

from probe.checks._base import CheckContext, open_udp, udp_failure
from probe.checks._payloads import Payload, PayloadMaker
from probe.checks._reflector import ReflectorCookie
from probe.net import icmp_sender

GRACE_S = 0.5  # wait for late echoes after the last send
LATE_S = 0.06  # a packet this late for its slot is skipped (a busy probe's event loop)
DRAIN_S = 0.02  # then read what is already there, as long as it keeps coming this fast
SETUP_RESEND_S = 0.5  # a set-up request not answered yet is sent again this often
# How much worse than a reference stream a stream must be to count as degraded.
LOSS_MARGIN = 0.2  # absolute loss fraction above the reference's ...
LOSS_FACTOR = 2.0  # ... and at least twice the reference's
JITTER_FACTOR = 3.0
JITTER_MARGIN_MS = 30.0
CUTOFF_S = 1.0  # echoes stopped this long before the end while the reference's did not


@dataclass(frozen=True, slots=True)
class MediaShape:
    """What one call's media looks like on the wire: RTP (RFC 3550: 12-byte header, a
    payload type, 20 ms of audio per packet), or SRTP-like (RFC 3711: the same header, an
    encrypted payload and a 10-byte authentication tag, HMAC-SHA1-80)."""

    name: str
    payload_type: int
    payload_bytes: int
    auth_tag_bytes: int = 0
    packets_per_s: int = 50
    timestamp_step: int = 960  # RTP clock ticks per packet (48 kHz, 20 ms)

    @property
    def packet_bytes(self) -> int:
        return 12 + self.payload_bytes + self.auth_tag_bytes

    def packet(self, seq: int, ssrc: bytes) -> bytes:
        header = struct.pack("!BBHI", 0x80, self.payload_type, seq & 0xFFFF,
                             (seq * self.timestamp_step) & 0xFFFFFFFF) + ssrc
        return header + os.urandom(self.payload_bytes + self.auth_tag_bytes)

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.name, "payload_type": self.payload_type,
                "packet_bytes": self.packet_bytes, "packets_per_s": self.packets_per_s}


# The stream check's shape: 160 bytes of audio (G.711, 20 ms), dynamic payload type 111.
AUDIO_RTP = MediaShape("rtp", 111, 160)


async def stream(ctx: CheckContext, ip: str, port: int, seconds: float,
                 cookie: ReflectorCookie, shape: MediaShape = AUDIO_RTP,
                 setup: PayloadMaker | None = None,
                 setup_wait_s: float = 1.0, origin: float | None = None,
                 first_echo: asyncio.Event | None = None,
                 realtime: bool = False) -> dict[str, Any]:
    """Send a call's media over one new flow to ``ip:port`` and collect the echoes;
    ``first_echo`` (if given) is set when the first media packet comes back. Every
    datagram carries a token of the reflector's ``cookie`` (media after the RTP header,
    the set-up in its transaction ID), without which the reflector does not answer."""
    loop = asyncio.get_running_loop()
    count = max(1, int(seconds * shape.packets_per_s))
    ssrc = os.urandom(4)
    out: dict[str, Any] = {"port": port, "sent": 0, "received": 0, "loss": 1.0,
                           "jitter_ms": 0.0, "max_gap_s": None, "first_echo_s": None,
                           "last_echo_s": 0.0, "duration_s": round(count / shape.packets_per_s, 3),
                           "icmp": None, "icmp_from": None, "ip": ip, "failure": None}
    flow, out["failure"] = await open_udp(ctx, ip, port)
    if flow is None:
        return out
    t0 = loop.time()
    out["opened_s"] = round(t0 - (origin if origin is not None else t0), 4)
    setup_state: dict[str, Any] | None = None
    answered = asyncio.Event()
    outstanding: list[tuple[Payload, float]] = []
    if setup is None:
        answered.set()
    else:
        setup_state = {"sent": 0, "answered": 0, "first_answer_s": None, "rtt_s": None}
        out["setup"] = setup_state
    sent: dict[int, tuple[float, bytes]] = {}
    arrivals: list[tuple[float, float]] = []  # (send time, receive time), relative

    async def send_setup() -> None:
        assert setup is not None and setup_state is not None
        try:
            while not setup_state["answered"]:
                payload = cookie.stamp(setup())
                outstanding.append((payload, loop.time()))
                await flow.send(payload.data)
                setup_state["sent"] += 1
                await asyncio.sleep(SETUP_RESEND_S)
        except OSError as exc:
            out["failure"] = udp_failure(exc)

    async def send_media() -> None:
        try:
            await asyncio.wait_for(answered.wait(), setup_wait_s)
        except TimeoutError:
            pass  # media goes out all the same: what the path does to it is evidence
        start = loop.time()
        out["media_start_s"] = round(start - t0, 4)
        stop = ctx.deadline - GRACE_S if realtime else float("inf")
        seq = 0
        for slot in range(count):
            now = loop.time()
            delay = start + slot / shape.packets_per_s - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif realtime and -delay > LATE_S:
                continue  # a real-time sender skips the slots it missed, it does not burst
            if loop.time() >= stop:
                break
            packet = cookie.with_cookie(shape.packet(seq, ssrc), "rtp")
            sent[seq & 0xFFFF] = (loop.time() - t0, packet)
            await flow.send(packet)
            seq += 1
            out["sent"] = seq
        if realtime:
            out["skipped"] = count - seq

    async def senders() -> None:
        setup_task = asyncio.ensure_future(send_setup()) if setup is not None else None
        try:
            await send_media()
        except OSError as exc:
            out["failure"] = udp_failure(exc)
        finally:
            if setup_task is not None:  # the set-up is re-sent only while media flows
                setup_task.cancel()
                await asyncio.gather(setup_task, return_exceptions=True)

    send_task = asyncio.ensure_future(senders())
    try:
        while True:
            if out.get("media_start_s") is not None:
                end = t0 + float(out["media_start_s"]) + count / shape.packets_per_s + GRACE_S
            else:
                end = ctx.deadline
            left = min(end, ctx.deadline) - loop.time()
            draining = left <= 0
            if draining:
                # echoes already received but not read yet (a busy probe) still count
                left = min(DRAIN_S, ctx.deadline - loop.time())
                if left <= 0:
                    break
            try:
                data = await flow.recv(left if draining else min(left, 0.1))
            except TimeoutError:
                if draining:
                    break
                continue
            except OSError as exc:  # an ICMP error, and who sent it (net.icmp_sender)
                if out["icmp"] is None:
                    out["icmp"], out["icmp_from"] = udp_failure(exc), icmp_sender(exc)
                continue
            now = loop.time()
            if setup_state is not None and _answers_setup(data, outstanding):
                setup_state["answered"] += 1
                if setup_state["first_answer_s"] is None:
                    setup_state["first_answer_s"] = round(now - t0, 4)
                answered.set()
                continue
            if len(data) < 12 or data[8:12] != ssrc:
                continue
            seq = struct.unpack_from("!H", data, 2)[0]
            entry = sent.pop(seq, None)
            if entry is None or entry[1] != data:
                continue
            arrivals.append((entry[0], now - t0))
            if first_echo is not None:
                first_echo.set()
    finally:
        send_task.cancel()
        try:
            await send_task
        except asyncio.CancelledError:
            pass
        flow.close()
    out.update(stats(arrivals, int(out["sent"])))
    return out


def _answers_setup(data: bytes, outstanding: list[tuple[Payload, float]]) -> bool:
    for index, (payload, _) in enumerate(outstanding):
        if payload.answered_by(data):
            del outstanding[index]
            return True
    return False


def stats(arrivals: list[tuple[float, float]], sent: int) -> dict[str, Any]:
    """Received, loss, jitter (RFC 3550 A.8 on round-trip transit), gaps, first/last echo,
    and when the last packet that came back was sent."""
    received = len(arrivals)
    out: dict[str, Any] = {"received": received,
                           "loss": round(1 - received / sent, 4) if sent else 1.0}
    if not arrivals:
        return out
    jitter = 0.0
    prev_transit = None
    for send_t, recv_t in arrivals:
        transit = recv_t - send_t
        if prev_transit is not None:
            jitter += (abs(transit - prev_transit) - jitter) / 16
        prev_transit = transit
    times = [r for _, r in arrivals]
    out["last_echoed_sent_s"] = round(max(t for t, _ in arrivals), 4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    out.update({"jitter_ms": round(jitter * 1000, 3),
                "max_gap_s": round(max(gaps), 4) if gaps else 0.0,
                "first_echo_s": round(times[0], 4), "last_echo_s": round(times[-1], 4)})
    return out


def media_end_s(s: dict[str, Any]) -> float:
    """When the stream's last packet went out (seconds since its flow opened)."""
    return float(s.get("media_start_s") or 0.0) + float(s["duration_s"])


def cut_off(s: dict[str, Any]) -> bool:
    """Echoes came and then stopped: nothing sent in the last :data:`CUTOFF_S` (at most
    40 % of a short stream) came back. Judged by when the last echoed packet was *sent*,
    so that a busy probe reading its echoes late does not hide a cut."""
    if not s.get("received"):
        return False
    quiet_s = min(CUTOFF_S, 0.4 * float(s["duration_s"]))
    last = s.get("last_echoed_sent_s")
    last_s = float(last) if last is not None else float(s["last_echo_s"])
    return last_s < media_end_s(s) - quiet_s


def degraded(subject: dict[str, Any], reference: dict[str, Any],
             loss_margin: float = LOSS_MARGIN, jitter_margin_ms: float = JITTER_MARGIN_MS,
             ) -> list[str]:
    """Why ``subject`` fared far worse than ``reference`` (two streams of one shape at the
    same time): loss, jitter, or a cut-off; empty when it did not."""
    reasons = []
    loss_s, loss_r = float(subject["loss"]), float(reference["loss"])
    if loss_s - loss_r >= loss_margin and loss_s >= LOSS_FACTOR * loss_r:
        reasons.append(f"loss {loss_s:.0%} against {loss_r:.0%}")
    jit_s, jit_r = float(subject["jitter_ms"]), float(reference["jitter_ms"])
    if jit_s > JITTER_FACTOR * jit_r + jitter_margin_ms:
        reasons.append(f"jitter {jit_s:.0f} ms against {jit_r:.0f} ms")
    if cut_off(subject) and not cut_off(reference):
        last = subject.get("last_echoed_sent_s", subject["last_echo_s"])
        reasons.append(f"cut off: nothing sent after {float(last):.1f} s of "
                       f"{media_end_s(subject):.1f} s came back")
    return reasons
