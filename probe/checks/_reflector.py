"""The reflector as the call-path checks use it: its address, the cookie that makes it
answer, and a same-port control for checks to a service's own servers.

**Cookie** (the reflector's side: :mod:`probe.reflector`). The reflector echoes only a
datagram that carries a token made from a cookie it handed to the probe's address. Every
check that sends to the reflector gets it by :func:`reflector_target` (address and
cookie) and marks what it sends with :meth:`ReflectorCookie.with_cookie` (bytes) or
:meth:`ReflectorCookie.stamp` / :meth:`ReflectorCookie.stamped` (payloads, payload
makers). The cookie is fetched once per run per reflector address (on the baseline port
and the check's own port at once, retried with back-off, every waiting check sharing the
requests), kept in the run's shared state (``ctx.shared``) and fetched again before it
expires. It is bound to the address, not the
port, so each trial may use a fresh flow. The token goes where DPI does not look and
nothing the differential compares changes: a STUN message's transaction ID (the app's
message types and attributes untouched; FINGERPRINT recomputed), bytes 12 to 24 of
random payloads and of RTP-like packets (after the 12-byte header); lengths stay the same.
No cookie (the reflector cannot be reached on either port) is recorded as
``reflector_cookie`` and the check is ``not_applicable``, as for an unreachable reflector.

:func:`control_methods` says what a same-port reflector control shows about a failure
to a service's server: the port is blocked (``udp_blocked``), STUN is (``stun_dpi``),
or only that destination is (``relay_unreachable``). The reflector's port 443 is the
baseline (the port least likely to be blocked). The control's trials are fresh flows,
the neutral kinds before and after an app-flavoured one (:mod:`probe.checks._trials`), so
that residual blocking the app probe triggers is not read as a blocked port. Nor is a
residual block set off earlier: in the confirmation pass, after the main pass's control saw
the app's request dropped (``previous_outcome``: ``app_stun_dpi`` still), or by another
check's app probe to the same reflector port (``after_other_app``: the control cannot
tell, :func:`probe.checks._trials.residual_set_off`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from probe import failures
from probe import reflector as wire
from probe.checks._base import CheckContext, TestKeys, open_udp, port_of, udp_failure
from probe.checks._payloads import Payload, PayloadMaker, differential_makers
from probe.checks._trials import (
    answered,
    any_answered,
    app_loss,
    neutral_use,
    rejected_on_path,
    residual_set_off,
    trials,
)
from probe.hostnames import ipv4_first
from probe.model import Endpoint

BASELINE_PORT = 443
HELLO_WAIT_S = 0.3  # a cookie request is sent again after this, then 1.5 times longer ...
HELLO_MAX_WAIT_S = 1.0  # ... up to this
CHECK_RESERVE_S = 0.5  # the cookie is waited for until this long before a check's deadline
REFRESH_AFTER = 0.8  # of the slot: a cookie lives at least one slot; fetch anew before

PayloadKind = Literal["stun", "random", "rtp"]


@dataclass
class ReflectorCookie:
    """A cookie from the reflector at ``ip``: what makes it answer this probe."""

    ip: str
    cookie: bytes
    slot_s: int
    fetched_at: float  # loop time
    port: int  # the port it came from

    def fresh(self, now: float) -> bool:
        return now - self.fetched_at < self.slot_s * REFRESH_AFTER

    def token(self) -> bytes:
        """A new token (12 bytes that look random, different each time)."""
        return wire.make_token(self.cookie)

    def with_cookie(self, payload: bytes, kind: PayloadKind) -> bytes:
        """``payload`` carrying a token, same length: a STUN message (``stun``) in its
        transaction ID, random bytes (``random``) and an RTP-like packet (``rtp``) at
        bytes 12-24. ValueError if ``payload`` cannot carry one that way."""
        return wire.with_token(payload, self.cookie, kind)

    def stamp(self, payload: Payload) -> Payload:
        """A :class:`Payload` carrying a token (a STUN one keeps matching its response)."""
        if payload.txid is not None:
            data = self.with_cookie(payload.data, "stun")
            return Payload(data, data[8:20])
        return Payload(self.with_cookie(payload.data, "random"), None)

    def stamped(self, makers: dict[str, PayloadMaker]) -> dict[str, PayloadMaker]:
        """The same payload makers, each payload carrying a token."""
        def stamping(maker: PayloadMaker) -> PayloadMaker:
            return lambda: self.stamp(maker())

        return {kind: stamping(maker) for kind, maker in makers.items()}

    def to_json(self) -> dict[str, Any]:
        return {"failure": None, "port": self.port}


@dataclass
class _CookieState:
    """One reflector's cookie in a run: the cookie, and the fetches under way (one per
    port) that every check waiting for it shares."""

    cookie: ReflectorCookie | None = None
    got: asyncio.Event = field(default_factory=asyncio.Event)
    fetches: dict[int, asyncio.Task[str | None]] = field(default_factory=dict)


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
    return ipv4_first(res.addresses)[0], {"failure": None}


async def reflector_cookie(ctx: CheckContext, ip: str, port: int,
                           ) -> tuple[ReflectorCookie | None, dict[str, Any]]:
    """The run's cookie from the reflector at ``ip``, and a record of how it was got.

    Without a fresh one, cookie requests go to the baseline port and to ``port`` at once
    (each port's requests shared by every check waiting on it, retried with back-off)
    until a cookie reply comes, from any port, or until ``CHECK_RESERVE_S`` before this
    check's deadline (what is left is for the check itself)."""
    loop = asyncio.get_running_loop()
    states: dict[str, _CookieState] = ctx.shared.setdefault("reflector_cookies", {})
    state = states.setdefault(ip, _CookieState())
    if state.cookie is not None and not state.cookie.fresh(loop.time()):
        state.cookie, state.got = None, asyncio.Event()  # fetch anew before it expires
    ports = list(dict.fromkeys((BASELINE_PORT, port)))
    until = ctx.deadline - CHECK_RESERVE_S
    results: dict[int, str | None] = {}
    while state.cookie is None and loop.time() < until:
        for p in ports:
            task = state.fetches.get(p)
            if task is None or (task.done() and _outcome(task) != failures.PORT_UNREACHABLE):
                state.fetches[p] = asyncio.ensure_future(_ask(ctx, ip, p, until, state))
        running = [state.fetches[p] for p in ports if not state.fetches[p].done()]
        if not running:  # every port answered with an ICMP error (nothing listens)
            break
        got = asyncio.ensure_future(state.got.wait())
        try:
            await asyncio.wait([got, *running], timeout=until - loop.time(),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            got.cancel()
    for p in ports:
        task = state.fetches.get(p)
        results[p] = _outcome(task) if task is not None and task.done() else (
            None if state.cookie is not None else failures.GENERIC_TIMEOUT)
    if state.cookie is not None:
        return state.cookie, state.cookie.to_json()
    return None, {"failure": failures.GENERIC_TIMEOUT, "failed_operation": "reflector_cookie",
                  "ports": {str(p): results[p] for p in ports}}


def _outcome(task: asyncio.Task[str | None]) -> str | None:
    """A finished fetch's failure (None: it got the cookie, or another port did)."""
    if task.cancelled():
        return failures.GENERIC_TIMEOUT
    exc = task.exception()
    return udp_failure(exc) if exc is not None else task.result()


async def _ask(ctx: CheckContext, ip: str, port: int, until: float,
               state: _CookieState) -> str | None:
    """Cookie requests to ``port`` with back-off until a cookie reply (kept in ``state``:
    None), another port's fetch got one (None), ``until`` (a timeout) or an ICMP error
    (that failure)."""
    loop = asyncio.get_running_loop()
    flow, failure = await open_udp(ctx, ip, port)
    if flow is None:
        return failure
    wait = HELLO_WAIT_S
    try:
        while state.cookie is None and loop.time() < until:
            await flow.send(wire.hello())
            resend = min(until, loop.time() + wait)
            wait = min(wait * 1.5, HELLO_MAX_WAIT_S)
            while state.cookie is None and (left := resend - loop.time()) > 0:
                try:
                    reply = await flow.recv(left)
                except TimeoutError:
                    break
                parsed = wire.parse_cookie_reply(reply)
                if parsed is not None:
                    state.cookie = ReflectorCookie(ip, parsed[1], parsed[0], loop.time(), port)
                    state.got.set()
        return None if state.cookie is not None else failures.GENERIC_TIMEOUT
    except OSError as exc:  # ICMP port unreachable: nothing listens there
        return udp_failure(exc)
    finally:
        flow.close()


async def reflector_target(ctx: CheckContext, port: int,
                           ) -> tuple[str | None, ReflectorCookie | None, dict[str, Any]]:
    """The reflector's address and the run's cookie for a check on ``port``; without
    them, (None, None, the test keys to return): ``not_applicable`` with the reason."""
    ip, info = await reflector_address(ctx)
    if ip is None:
        return None, None, info
    cookie, record = await reflector_cookie(ctx, ip, port)
    if cookie is None:
        return None, None, {"failure": failures.NOT_APPLICABLE,
                            "reason": "no cookie from the reflector (it cannot be reached "
                                      "on its port 443 nor on this port)",
                            "reflector_cookie": record}
    return ip, cookie, {"failure": None}


async def reflector_control(ctx: CheckContext, port: int, deadline: float,
                            app: PayloadMaker | None = None) -> dict[str, Any] | None:
    """Plain STUN and random bytes to the reflector on ``port`` (and, given ``app``, the
    app-flavoured request the failed check sent, as kind ``app_stun``), and random bytes
    to its baseline port; None when no reflector is configured."""
    if not ctx.cfg.reflector:
        return None
    ip, cookie, info = await reflector_target(ctx, port)
    if ip is None or cookie is None:
        return info
    makers, _ = differential_makers(None)
    if app is not None:
        makers["app_stun"] = app
    makers = cookie.stamped(makers)
    same, base = await asyncio.gather(
        trials(ctx, ip, port, makers, 2, deadline),
        trials(ctx, ip, BASELINE_PORT, {"random": makers["random"]}, 2, deadline),
    )
    control: dict[str, Any] = {"failure": None, "same_port": same, "baseline": base}
    if not any_answered(same) and residual_set_off(
            ctx, port, asyncio.get_running_loop().time()) is not None:
        # the port passed neutral traffic until another check's app probe was dropped
        # there, and nothing since: its residual block, not this check's doing
        control["after_other_app"] = True
    return control


def control_methods(control: dict[str, Any] | None) -> list[str]:
    """Methods a failure to a service's server shows, given the same-port control."""
    if not control or control.get("failure"):
        return []
    same, base = control.get("same_port"), control.get("baseline")
    if not any_answered(same):
        if rejected_on_path(same):
            return ["udp_blocked"]  # a router on the path refused the datagrams
        if (same or {}).get("icmp") == failures.PORT_UNREACHABLE:
            return []  # the reflector does not listen on this port: the path works, no test
        if control.get("previous_outcome") == "app_stun_dpi":
            # the confirmation, after the main pass's control saw the app's request
            # dropped: the censor still blocks the port it saw the app on (residual)
            return ["app_stun_dpi"]
        if control.get("after_other_app"):
            return []  # another check's app set off a residual block on this port: no test
    if answered(same, "stun") and answered(same, "app_stun") is False:
        loss = app_loss(same)
        if loss == "app_stun_dpi":
            return ["app_stun_dpi"]  # plain STUN passes on this port, the app's request not
        if loss == "starved":
            return []  # the port loses plain traffic as much: nothing can be singled out
    if answered(same, "stun"):
        return ["relay_unreachable"]  # STUN passes on this port: that destination is cut
    if answered(same, "random"):
        return ["stun_dpi"]  # random bytes pass on the same 5-tuple, STUN does not
    if any_answered(base):
        return ["udp_blocked"]  # nothing passes on this port, the baseline port works
    return []  # the reflector is unreachable: nothing can be said


#: A neutral check's measurement: (ctx, port, the reflector's address, the run's cookie).
NeutralMeasure = Callable[[CheckContext, int, str, "ReflectorCookie"], Awaitable[TestKeys]]


async def run_neutral(endpoint: Endpoint, ctx: CheckContext,
                      measure: NeutralMeasure) -> TestKeys:
    """Run a check that sends neutral traffic (random bytes, media) to the reflector on the
    endpoint's port. The run's app-flavoured probes to that port wait until it is over
    (:func:`probe.checks._trials.neutral_use`); without the reflector's address or cookie
    the check is ``not_applicable`` with the reason."""
    port = port_of(endpoint)
    async with neutral_use(ctx, port):
        ip, cookie, info = await reflector_target(ctx, port)
        if ip is None or cookie is None:
            return info
        return await measure(ctx, port, ip, cookie)
