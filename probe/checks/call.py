"""Call check: an app's call emulated against the reflector, beside a control call of the
same shape without the app's fingerprint (DESIGN.md "Measurement rules learned from real
DPI": a call is a STUN/TURN exchange followed by media on the same 5-tuple for seconds).

Three flows, each the first packet of its own fresh 5-tuple, all to the reflector:

* the **control** (on the call's port, first): a plain STUN Binding request padded to the
  app request's length, then media of the app's shape;
* the **call** (same port, once the control's media comes back): the app-flavoured STUN
  request (``flavor``: :func:`probe.stun.app_flavoured`, what nDPI labels WhatsAppCall,
  TeamsCall, GoogleCall, ViberVoip), then media at a call's packet rate and sizes for
  ``stream_seconds`` (RunConfig), cut to the check's budget: RTP for WhatsApp and Viber,
  SRTP-like (an authentication tag) for the others. The set-up request is re-sent every
  half second until answered, as apps keep sending connectivity checks;
* the **baseline**: the control's media on the reflector's port 443 (the port least
  likely to be blocked): is the reflector reachable, and does the call's port starve
  every call (throttling) or only the app's.

The control goes first so that a censor has classified it before it sees the app (nDPI
labels a later plain STUN flow to a server port where it saw an app with that app).

Outcomes (a pure function of the stored statistics, :func:`outcome`):

* the call's set-up or media dropped (never echoed, or cut off) while the control's pass:
  a blocked call, ``app_stun_dpi``; nothing the control sent after the call's first packet
  coming back is residual blocking triggered by the app (``residual_blocking: true``);
* both set-ups dropped while both media pass: ``stun_dpi``;
* both calls cut or starved (neither the app's doing): ``throttled``, as the stream check
  judges a cut-off (the call connects, then starves);
* nothing passes on the port while the baseline does, or an ICMP port unreachable comes
  from a router on the path (``icmp_from``: the rejecting hop) rather than from the
  reflector: ``udp_blocked``; in the confirmation
  pass, after a main pass that saw ``app_stun_dpi``, that is the censor still blocking the
  port after the main pass's app call (``residual_blocking: true``, ``previous_outcome``;
  nDPI's STUN cache does this to STUN flows even without a residual rule);
* the control's media far worse than the baseline's, or the call's far worse than the
  control's (loss, jitter): ``throttled`` (impaired, the call connects); not compared when
  the probe itself could not keep a call's pace (it skipped many packets: a busy machine);
* the reflector silent on this port and on 443, or not listening: ``not_applicable``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures, stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, one_of, port_of
from probe.checks._media import CUTOFF_S, GRACE_S, MediaShape, degraded, media_end_s, stream
from probe.checks._payloads import differential_makers
from probe.checks._reflector import BASELINE_PORT, reflector_target
from probe.checks._trials import rejected_on_path
from probe.model import Endpoint

NAME = "call"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden", options={"flavor": one_of(*stun.FLAVORS)},
                 doc="an app's call against the reflector: its STUN set-up (flavor = ...) "
                     "then RTP/SRTP-like media on the same flow, beside a control call "
                     "without the app's fingerprint")
# Each app's audio: payload type and bytes per 20 ms packet (RTP for WhatsApp and Viber;
# SRTP with an 80-bit authentication tag, RFC 3711, for Teams and WebRTC apps).
SHAPES: dict[str, MediaShape] = {
    "whatsapp": MediaShape("rtp", 120, 90),
    "viber": MediaShape("rtp", 96, 80),
    "teams": MediaShape("srtp", 104, 100, auth_tag_bytes=10),
    "google": MediaShape("srtp", 111, 100, auth_tag_bytes=10),
    "signal": MediaShape("srtp", 111, 100, auth_tag_bytes=10),
    "telegram": MediaShape("srtp", 111, 100, auth_tag_bytes=10),
}
CONTROL_LEAD_S = 0.5  # the call starts when the control's media comes back, or after this
SETUP_WAIT_S = 0.5  # media starts when the set-up is answered, or after this
SLACK_S = 0.7  # left of the budget at the end: a busy probe's event loop runs late
BUSY_SKIPPED = 0.2  # see _busy
CALL_LOSS_MARGIN = 0.35  # the call's loss above the control's, to be throttled ...
CALL_JITTER_MARGIN_MS = 60.0  # ... or its jitter
RESIDUAL_SLACK_S = 0.5  # the control's last packet back was sent by the call's start + this
# (the censor arms its block when it has seen the call's first packet: it may lag)
_FAILED = {"app_stun_dpi": "call", "stun_dpi": "setup", "udp_blocked": "udp",
           "inconclusive": "call"}
_METHODS = {"app_stun_dpi": ["app_stun_dpi"], "stun_dpi": ["stun_dpi"],
            "udp_blocked": ["udp_blocked"], "cut_off": ["throttled"],
            "throttled": ["throttled"]}


def _setup_answered(s: dict[str, Any]) -> bool:
    return int((s.get("setup") or {}).get("answered") or 0) > 0


def _alive(s: dict[str, Any]) -> bool:
    """Anything of this flow came back."""
    return bool(s.get("received")) or _setup_answered(s)


def _last_back(s: dict[str, Any]) -> float:
    """When the last packet that came back was sent, on the check's clock."""
    return float(s.get("opened_s") or 0.0) + float(s.get("last_echoed_sent_s") or 0.0)


def _stopped_before(s: dict[str, Any], other: dict[str, Any] | None) -> bool:
    """``s``'s media came back for a while and then stopped while ``other``'s (running at
    the same time) kept coming back: judged on the check's clock by when the last packet
    that came back was sent, so that a probe reading its echoes late (or running out of
    budget) treats every flow alike."""
    if not s.get("received") or not other or not other.get("received"):
        return False
    quiet_s = min(CUTOFF_S, 0.4 * float(s["duration_s"]))
    # only while ``s`` was sending: the control runs longer than the call
    end = float(s.get("opened_s") or 0.0) + media_end_s(s)
    return min(_last_back(other), end) - _last_back(s) > quiet_s


def _busy(*streams: dict[str, Any] | None) -> bool:
    """The probe could not keep a call's pace (its event loop skipped more than
    :data:`BUSY_SKIPPED` of some stream's packets): its loss and jitter say more about the
    probe than about the path, and are not compared."""
    for s in streams:
        if s and s.get("skipped") is not None:
            planned = int(s.get("sent") or 0) + int(s["skipped"])
            if planned and int(s["skipped"]) > BUSY_SKIPPED * planned:
                return True
    return False


def _starved(control: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    """Loss or jitter far worse on the control than on the baseline port (a cut is not
    starving: a censor that cuts a flow cuts it whole)."""
    if not base or not base.get("received") or not control.get("received") or \
            _stopped_before(control, base):
        return []
    return [r for r in degraded(control, base) if not r.startswith("cut off")]


def outcome(test_keys: TestKeys) -> tuple[str, list[str]]:
    """(ok | app_stun_dpi | stun_dpi | udp_blocked | cut_off | throttled | inconclusive |
    nothing_listens | reflector_unreachable, reasons) from the stored statistics."""
    result, reasons, _ = _judge(test_keys)
    return result, reasons


def residual(test_keys: TestKeys) -> bool:
    """The app's call dropped and the control with it once the call started (or, in the
    confirmation pass, from its first packet after the main pass saw the app dropped):
    the censor blocks the port after it saw the app."""
    return _judge(test_keys)[2]


def _judge(test_keys: TestKeys) -> tuple[str, list[str], bool]:
    """(outcome, reasons, residual blocking seen)."""
    call = test_keys.get("call") or {}
    control = test_keys.get("control") or {}
    base = test_keys.get("baseline")
    if not _alive(call) and not _alive(control):
        rejected = [s for s in (call, control) if rejected_on_path(s)]
        if rejected:
            return "udp_blocked", [f"ICMP port unreachable from {rejected[0]['icmp_from']}, "
                                   "a router on the path, not the reflector"], False
        if failures.PORT_UNREACHABLE in (call.get("icmp"), control.get("icmp")):
            return "nothing_listens", [], False
        if base is not None and not base.get("received"):
            return "reflector_unreachable", [], False
        if test_keys.get("previous_outcome") == "app_stun_dpi":
            return "app_stun_dpi", ["the control is dropped from its first packet: after the "
                                    "main pass's app call was dropped, the censor still "
                                    "blocks this server port (residual blocking)"], True
        return "udp_blocked", ["neither the call nor the control got an answer"], False
    if not _alive(control):
        return "inconclusive", ["the control got no answer while the call did"], False
    busy = _busy(call, control, base)
    starved = [] if busy else _starved(control, base)
    call_dead = not call.get("received") or _stopped_before(call, control)
    if call_dead:
        if control.get("received") and not _stopped_before(control, base) and not starved:
            return "app_stun_dpi", [f"{_call_fate(call)} while the control's media passed"], \
                False
        if not _setup_answered(call) and _setup_answered(control) and _stopped_at(
                control, call):
            return "app_stun_dpi", [f"{_call_fate(call)}; the control passed until the call "
                                    "started and nothing of it after"], True
    if starved:  # the port starves every call, the app's or not: connects, then starves
        return "throttled", [f"{r} on the control against the baseline port"
                             for r in starved], False
    if call_dead or (_stopped_before(control, base) and _stopped_before(call, base)):
        return "cut_off", [f"{_call_fate(call)}; the control's media was cut or starved "
                           "too"], False
    # The call and the control start apart, so a busy path treats them less alike than two
    # streams side by side: wider margins than the stream check's (a cut is judged above).
    reasons = [] if busy else [
        r for r in degraded(call, control, CALL_LOSS_MARGIN, CALL_JITTER_MARGIN_MS)
        if not r.startswith("cut off")]
    if reasons:
        return "throttled", [f"{r} against the control" for r in reasons], False
    if not _setup_answered(call):
        if _setup_answered(control):
            return "app_stun_dpi", ["the app's set-up got no answer while the control's "
                                    "did"], False
        return "stun_dpi", ["neither set-up got an answer while the media passed"], False
    return "ok", [], False


def _stopped_at(control: dict[str, Any], call: dict[str, Any]) -> bool:
    """Nothing the control sent after the call's first packet came back (on the check's
    clock): what a censor that blocks the port once it saw the app does to it."""
    if not control.get("received"):
        return False
    return _last_back(control) <= float(call.get("opened_s") or 0.0) + RESIDUAL_SLACK_S


def _call_fate(call: dict[str, Any]) -> str:
    if not call.get("received"):
        return ("the call's set-up was answered, its media never" if _setup_answered(call)
                else "the call got no answer to its set-up or media")
    return (f"the call's media was cut off: nothing sent after "
            f"{float(call.get('last_echoed_sent_s') or 0.0):.1f} s came back")


def methods(test_keys: TestKeys) -> list[str]:
    if test_keys.get("failure") == failures.NOT_APPLICABLE:
        return []
    result, _ = outcome(test_keys)
    return list(_METHODS.get(result, []))


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    port = port_of(endpoint)
    flavor = endpoint.options.get("flavor")
    if not flavor:
        raise ValueError(f"{endpoint.source}: a call endpoint needs flavor = "
                         f"({', '.join(stun.FLAVORS)})")
    ip, cookie, info = await reflector_target(ctx, port)
    if ip is None or cookie is None:
        return info
    loop = asyncio.get_running_loop()
    origin = loop.time()
    shape = SHAPES[flavor]
    makers, length = differential_makers(flavor)
    # The whole call (the control's lead, the set-up, the media, late echoes) fits the budget.
    seconds = max(0.3, min(float(ctx.cfg.stream_seconds),
                           ctx.remaining() - CONTROL_LEAD_S - SETUP_WAIT_S - GRACE_S
                           - SLACK_S))
    # The control (and the baseline beside it) runs until the call's media ends, so that
    # what the call's start does to it shows.
    control_s = seconds + CONTROL_LEAD_S + SETUP_WAIT_S
    control_ready = asyncio.Event()
    control = asyncio.ensure_future(stream(ctx, ip, port, control_s, cookie, shape, makers["stun"],
                                           SETUP_WAIT_S, origin, control_ready, True))
    baseline = None
    if port != BASELINE_PORT:
        # the same shape as the control: a starved probe loses alike on every flow
        baseline = asyncio.ensure_future(stream(ctx, ip, BASELINE_PORT, control_s, cookie, shape,
                                                origin=origin, realtime=True))
    try:
        await asyncio.wait_for(control_ready.wait(), CONTROL_LEAD_S)
    except TimeoutError:
        pass  # the call goes on: what happens to it is evidence all the same
    call = await stream(ctx, ip, port, seconds, cookie, shape, makers["app_stun"], SETUP_WAIT_S,
                        origin, realtime=True)
    keys: TestKeys = {"failure": None, "failed_operation": None, "reflector_port": port,
                      "flavor": flavor, "setup_bytes": length, **shape.to_json(),
                      "call": call, "control": await control,
                      "baseline": await baseline if baseline is not None else None}
    previous = (ctx.main_pass or {}).get("outcome")
    if previous:
        keys["previous_outcome"] = previous
    result, reasons = outcome(keys)
    keys["outcome"], keys["reasons"] = result, reasons
    if result in ("nothing_listens", "reflector_unreachable"):
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = ("the reflector does not listen on this port"
                          if result == "nothing_listens"
                          else "no echo from the reflector on this port nor on its port 443")
    elif result in _FAILED:
        keys["failure"], keys["failed_operation"] = failures.GENERIC_TIMEOUT, _FAILED[result]
        if result == "app_stun_dpi":
            keys["residual_blocking"] = residual(keys)
        rejected = [s for s in (call, keys["control"]) if rejected_on_path(s)]
        if rejected:
            keys["icmp_from"] = rejected[0]["icmp_from"]  # the rejecting hop
    return keys
