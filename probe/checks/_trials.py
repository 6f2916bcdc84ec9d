"""Trials: payloads of several *kinds* (plain STUN, app-flavoured STUN, random bytes of the
same length) sent to the reflector, each the FIRST packet of its OWN flow (a fresh UDP
socket: a fresh source port, a fresh 5-tuple), in random order, repeated, each matched to
its own reply. This is the payload-differential test of techniques.md 4.5, used by the
udp and differential checks and the reflector control.

Why a flow per trial (DESIGN.md "Measurement rules learned from real DPI"): a DPI engine
classifies a flow over its first packets and then acts on the whole flow, so kinds sharing
a flow are judged by whichever went first. Why phases: some censors, once they recognise
an app, also drop the client's later traffic to that server address and port (residual
blocking). So when an app-flavoured kind is among the makers, the neutral kinds go first
on their own (phase ``b``, before: their answers awaited before any app probe leaves), then
every kind in random order (phase ``m``), then the neutral kinds again (phase ``a``,
after). Neutral kinds answered before and never after an app probe is residual blocking
triggered by the app probe (:func:`residual_kinds`), not a blocked port. For the same
reason the app probes to a reflector port wait until the neutral traffic other checks of
the run send there (the udp echo, the stream: :func:`neutral_use`) is over, bounded so
that the app phase keeps :data:`APP_PHASE_MIN_S` of the budget: a residual block they
trigger would cut that traffic, and its check would report a blocked or throttled port.
Every trial the run sends to a reflector port is noted (``ctx.shared``, the port's flow
ledger): trials whose first app probe followed another check's app probe that was dropped
there count those (``foreign_app_dropped``), since a residual block that one set off hides
their own app; and :func:`residual_set_off` tells, for any check sending to the port later
(a stun or turn check's control, a stream), whether the port passed neutral traffic until
another check's app probe was dropped there and nothing since: that check's app set off a
residual block, which says nothing of this check's own traffic.

A result (JSON-friendly, stored in test keys)::

    {"ip": reflector, "port": 3478, "kinds": {kind: {"sent", "answered", "rtt_s"}},
     "flows": [[phase, kind, source port, result], ...],   # in the order sent
     "icmp": failure | None, "icmp_from": address | None, "failure": None}

where a flow's result is ``ok`` (answered), ``lost`` (no answer in time) or the failure
string of an ICMP error on that flow (``port_unreachable``, ...); ``icmp_from`` is the
address that sent the first ICMP error (:func:`probe.net.icmp_sender`), None when the
system does not say.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, open_udp, udp_failure
from probe.checks._payloads import PayloadMaker
from probe.net import icmp_sender

NEUTRAL = ("random", "stun")  # kinds no censor should mind
APP = "app_stun"
SPACING_S = 0.02  # between two sends: the censor sees the trials in the order sent
APP_PHASE_MIN_S = 1.5  # app probes wait for other checks' neutral traffic, but leave this
FRESH_BEFORE_S = 0.3  # after a longer wait, the before phase is sent again (fresh evidence)
_NEUTRAL_USERS = "reflector_neutral_users"  # ctx.shared: port -> checks' traffic under way
_FLOWS = "reflector_flows"  # ctx.shared: port -> [(sent at, check, kind, its flow entry)]


@contextlib.asynccontextmanager
async def neutral_use(ctx: CheckContext, port: int) -> AsyncIterator[None]:
    """A check's neutral traffic to the reflector's ``port`` is under way for the body:
    app-flavoured trials to that port wait for it to end (:func:`trials`)."""
    users: dict[int, set[asyncio.Future[None]]] = ctx.shared.setdefault(_NEUTRAL_USERS, {})
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    users.setdefault(port, set()).add(done)
    try:
        yield
    finally:
        users[port].discard(done)
        done.set_result(None)


async def _after_neutral_users(ctx: CheckContext, port: int, deadline: float) -> float:
    """Wait until the neutral traffic other checks send to ``port`` is over, or until the
    app phase would have less than :data:`APP_PHASE_MIN_S` left; the seconds waited."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    users = list(ctx.shared.get(_NEUTRAL_USERS, {}).get(port, ()))
    left = deadline - APP_PHASE_MIN_S - t0
    if users and left > 0:
        await asyncio.wait(users, timeout=left)
    return loop.time() - t0


@dataclass
class KindStats:
    sent: int = 0
    answered: int = 0
    rtts: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "answered": self.answered,
                "rtt_s": [round(x, 4) for x in self.rtts]}


@dataclass
class _Round:
    """The trials of one call to :func:`trials`, as they are sent and answered."""

    ip: str
    port: int
    stats: dict[str, KindStats]
    last_sent_at: float | None = None  # loop time
    flows: list[list[Any]] = field(default_factory=list)
    icmp: str | None = None
    icmp_from: str | None = None
    failure: str | None = None
    foreign_app_dropped: int | None = None
    waited_s: float | None = None  # for other checks' neutral traffic, before the app phase
    first_app_at: float | None = None  # loop time

    def to_json(self) -> dict[str, Any]:
        out = {"ip": self.ip, "port": self.port,
               "kinds": {k: s.to_json() for k, s in self.stats.items()},
               "flows": self.flows, "icmp": self.icmp, "icmp_from": self.icmp_from,
               "failure": self.failure}
        if self.foreign_app_dropped is not None:
            out["foreign_app_dropped"] = self.foreign_app_dropped
        if self.waited_s is not None:
            out["waited_s"] = self.waited_s
        return out

    def note_foreign(self, ctx: CheckContext) -> None:
        """How many app probes of other checks were dropped on this port before this
        round's first app probe (their answers are in by now: they went first), or, in a
        round without app probes, before its last trial."""
        until = self.first_app_at if self.first_app_at is not None else self.last_sent_at
        if until is None:
            return
        self.foreign_app_dropped = sum(1 for t in dropped_app_probes(ctx, self.port)
                                       if t < until)


def plan(kinds: list[str], repeats: int, phased: bool) -> list[tuple[str, str]]:
    """(phase, kind) in the order to send: with ``phased`` (an app kind is compared), the
    neutral kinds before, every kind ``repeats`` times in random order, the neutral kinds
    after; else every kind ``repeats`` times in random order."""
    mixed = [k for k in kinds for _ in range(repeats)]
    random.shuffle(mixed)
    if not phased:
        return [("m", k) for k in mixed]
    neutral = [k for k in kinds if k in NEUTRAL]
    return [*(("b", k) for k in neutral), *(("m", k) for k in mixed),
            *(("a", k) for k in neutral)]


async def trials(ctx: CheckContext, ip: str, port: int, makers: dict[str, PayloadMaker],
                 repeats: int, deadline: float, wait_s: float = 0.6,
                 until_all_answered: bool = False) -> dict[str, Any]:
    """Each kind ``repeats`` times, every trial on a fresh flow (see the module docstring);
    with an app kind among ``makers``, in the phases before, mixed, after.

    With ``until_all_answered``, one trial at a time (each waiting for its answer, the
    budget spread over the trials left) until every kind has had an answer: a cheap
    reachability test. Otherwise trials go out :data:`SPACING_S` apart and wait for their
    answers side by side (``wait_s`` each), so a round costs about one wait, not one per
    trial; the before phase is awaited before anything else is sent.
    """
    phased = APP in makers and not until_all_answered
    order = plan(list(makers), repeats, phased)
    rnd = _Round(ip, port, {k: KindStats() for k in makers})
    loop = asyncio.get_running_loop()
    if until_all_answered:
        for i, (phase, kind) in enumerate(order):
            if all(st.answered for st in rnd.stats.values()):
                break
            left = deadline - loop.time()
            if left <= 0.05:
                break
            await _trial(ctx, ip, port, phase, kind, makers[kind], rnd,
                         loop.time() + min(wait_s, left / (len(order) - i)))
        rnd.note_foreign(ctx)
        return rnd.to_json()
    waiting: list[asyncio.Future[None]] = []

    async def send(phase: str, kind: str) -> None:
        sent = asyncio.Event()
        waiting.append(asyncio.ensure_future(_trial(
            ctx, ip, port, phase, kind, makers[kind], rnd,
            min(deadline, loop.time() + wait_s), sent)))
        await sent.wait()  # sent (or failed to open) before the next one goes

    for index, (phase, kind) in enumerate(order):
        if phase != "b" and index and order[index - 1][0] == "b":
            await asyncio.gather(*waiting)  # the before phase's answers, before any app probe
            rnd.waited_s = round(await _after_neutral_users(ctx, port, deadline), 3)
            if rnd.waited_s > FRESH_BEFORE_S:
                # The port's state may have changed while other checks' traffic went on
                # (a policer it exhausted, a block): the before phase again, right before
                # the app probes, so that what passed "before" is what passed just then.
                for again in [k for p, k in order if p == "b"]:
                    if deadline - loop.time() > 0.05:
                        await send("b", again)
                        await asyncio.sleep(SPACING_S)
                await asyncio.gather(*waiting)
        elif index:
            await asyncio.sleep(SPACING_S)
        if deadline - loop.time() <= 0.05:
            break
        await send(phase, kind)
    await asyncio.gather(*waiting)
    rnd.note_foreign(ctx)
    return rnd.to_json()


async def _trial(ctx: CheckContext, ip: str, port: int, phase: str, kind: str,
                 maker: PayloadMaker, rnd: _Round, until: float,
                 sent: asyncio.Event | None = None) -> None:
    """One trial: open a fresh flow, send one payload, wait for its answer until the loop
    time ``until``; record it in ``rnd``."""
    loop = asyncio.get_running_loop()
    entry: list[Any] = [phase, kind, None, "lost"]
    rnd.flows.append(entry)
    try:
        flow, failure = await open_udp(ctx, ip, port)
        if flow is None:
            entry[3] = rnd.failure = failure
            return
        entry[2] = flow.local_address[1]
        try:
            payload = maker()
            t0 = loop.time()
            try:
                await flow.send(payload.data)
            except OSError as exc:
                entry[3] = rnd.failure = udp_failure(exc)
                return
            rnd.stats[kind].sent += 1
            rnd.last_sent_at = t0
            if kind == APP and rnd.first_app_at is None:
                rnd.first_app_at = t0
            ctx.shared.setdefault(_FLOWS, {}).setdefault(port, []).append(
                (t0, id(ctx), kind, entry))
            if sent is not None:
                sent.set()
            while loop.time() < until:
                try:
                    reply = await flow.recv(until - loop.time())
                except TimeoutError:
                    return
                except OSError as exc:  # an ICMP error for this flow
                    entry[3] = udp_failure(exc)
                    if rnd.icmp is None:
                        rnd.icmp, rnd.icmp_from = entry[3], icmp_sender(exc)
                    return
                if payload.answered_by(reply):
                    rnd.stats[kind].answered += 1
                    rnd.stats[kind].rtts.append(loop.time() - t0)
                    entry[3] = "ok"
                    return
        finally:
            flow.close()
    finally:
        if sent is not None:
            sent.set()


def dropped_app_probes(ctx: CheckContext, port: int) -> list[float]:
    """When (loop times, in order) other checks' app-flavoured probes to the reflector's
    ``port`` went out that got no answer (dropped, or not answered yet)."""
    return sorted(t for t, owner, kind, e in ctx.shared.get(_FLOWS, {}).get(port, [])
                  if kind == APP and owner != id(ctx) and e[3] != "ok")


def residual_set_off(ctx: CheckContext, port: int, before: float) -> float | None:
    """When another check's app-flavoured probe, dropped on the reflector's ``port`` before
    the loop time ``before``, set off a residual block there: neutral trials to the port
    (any check's) were answered before it, and none sent after it has been. None when
    the port's ledger does not show that (no such probe, nothing neutral passed before
    it, or neutral traffic passed after it: no residual block)."""
    dropped = [t for t in dropped_app_probes(ctx, port) if t < before]
    if not dropped:
        return None
    first = dropped[0]
    flows = ctx.shared.get(_FLOWS, {}).get(port, [])
    neutral = [(t, e[3]) for t, _, kind, e in flows if kind in NEUTRAL]
    passed_before = any(t < first and result == "ok" for t, result in neutral)
    passed_after = any(t > first and result == "ok" for t, result in neutral)
    return first if passed_before and not passed_after else None


def merge_trials(first: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Two rounds of :func:`trials` on the same port, added up (flows in the order sent)."""
    kinds: dict[str, Any] = {}
    for kind in set(first.get("kinds") or {}) | set(more.get("kinds") or {}):
        a = (first.get("kinds") or {}).get(kind) or {"sent": 0, "answered": 0, "rtt_s": []}
        b = (more.get("kinds") or {}).get(kind) or {"sent": 0, "answered": 0, "rtt_s": []}
        kinds[kind] = {"sent": a["sent"] + b["sent"], "answered": a["answered"] + b["answered"],
                       "rtt_s": [*a["rtt_s"], *b["rtt_s"]]}
    icmp_first = first if first.get("icmp") else more
    return {"ip": first.get("ip"), "port": first.get("port"), "kinds": kinds,
            "flows": [*first.get("flows", []), *more.get("flows", [])],
            "icmp": icmp_first.get("icmp"), "icmp_from": icmp_first.get("icmp_from"),
            "failure": first.get("failure") or more.get("failure"),
            "rounds": int(first.get("rounds", 1)) + int(more.get("rounds", 1)),
            **({"waited_s": first["waited_s"]} if "waited_s" in first else {}),
            **({"foreign_app_dropped": first["foreign_app_dropped"]}
               if "foreign_app_dropped" in first else {})}


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


def _sent(result: dict[str, Any] | None) -> tuple[list[list[Any]], int | None]:
    """The trials that went out (a flow opened), in the order sent, and the index among
    them of the first app-flavoured probe (None: no app probe went out)."""
    flows = [f for f in (result or {}).get("flows") or [] if f[2] is not None]
    return flows, next((i for i, f in enumerate(flows) if f[1] == APP), None)


def _answered_share(flows: list[list[Any]]) -> float:
    return sum(1 for f in flows if f[3] == "ok") / len(flows)


def passed_before_app(result: dict[str, Any] | None) -> list[str]:
    """The neutral kinds that passed right before the first app probe: the kind's latest
    before-phase trial was answered, and if neutral trials went out between the before
    phase and the first app probe, not all of them were lost (a port that already lost
    everything before the app was seen was not blocked by the app)."""
    flows, first_app = _sent(result)
    ahead = flows if first_app is None else flows[:first_app]
    last_b = max((i for i, f in enumerate(ahead) if f[0] == "b"), default=None)
    if last_b is None:
        return []
    between = [f for f in ahead[last_b + 1:] if f[1] in NEUTRAL]
    if between and not any(f[3] == "ok" for f in between):
        return []
    out = []
    for kind in NEUTRAL:
        latest = [f for f in ahead if f[0] == "b" and f[1] == kind]
        if latest and latest[-1][3] == "ok":
            out.append(kind)
    return out


def app_singled_out(result: dict[str, Any] | None, alpha: float = 0.1) -> bool | None:
    """Were the app probes dropped where neutral traffic passed, beyond chance? From the
    first app probe on, the neutral trials' answered share ``q``; every app probe lost
    (``n``) would happen by plain loss with probability ``(1 - q) ** n``: at most
    ``alpha`` is the app singled out (True), more is not (False). None when no app probe
    went out or one was answered."""
    flows, first_app = _sent(result)
    if first_app is None:
        return None
    window = flows[first_app:]
    apps = [f for f in window if f[1] == APP]
    if any(f[3] == "ok" for f in apps):
        return None
    neutral = [f for f in window if f[1] in NEUTRAL]
    if not neutral:
        return False
    chance: float = (1.0 - _answered_share(neutral)) ** len(apps)
    return chance <= alpha


def neutral_starved(result: dict[str, Any] | None) -> bool:
    """From the first app probe on (all trials when there is none), most neutral trials
    got no answer: the port loses plain traffic too, so no payload can be singled out."""
    flows, first_app = _sent(result)
    neutral = [f for f in flows[first_app or 0:] if f[1] in NEUTRAL]
    return bool(neutral) and _answered_share(neutral) < 0.5


def residual_kinds(result: dict[str, Any] | None) -> list[str]:
    """The neutral kinds answered in the before phase and never on a flow sent after the
    first app-flavoured probe (tried there at least once): blocking the app probe
    triggered. Empty when no app probe was sent or nothing shows it."""
    flows, first_app = _sent(result)
    if first_app is None:
        return []
    out = []
    before = passed_before_app(result)
    for kind in NEUTRAL:
        after = [f for f in flows[first_app + 1:] if f[1] == kind]
        if kind in before and after and not any(f[3] == "ok" for f in after):
            out.append(kind)
    if "random" in out and "stun" not in out:
        # A censor that saw the app blocks the port (every kind) or labels later STUN
        # there as the app (STUN only); random bytes lost while plain STUN passes is loss.
        return []
    return out


def app_loss(result: dict[str, Any] | None) -> str:
    """What every app probe lost, while plain STUN and random bytes were answered at some
    time, shows: ``app_stun_dpi`` where the app is singled out (plain traffic passing
    right up to the app probe and never after: residual blocking; or beside it beyond
    what its loss explains), ``starved`` where the port lost most plain traffic too (a
    policer, heavy loss), else ``inconclusive``."""
    if residual_kinds(result) or app_singled_out(result):
        return "app_stun_dpi"
    return "starved" if neutral_starved(result) else "inconclusive"


def rejected_on_path(result: dict[str, Any] | None) -> bool:
    """An ICMP port unreachable on these trials sent by an address other than the one
    they went to: a router on the path refused the datagrams (routers send none for the
    traffic they forward; a firewall's REJECT does)."""
    result = result or {}
    sender = result.get("icmp_from")
    return (result.get("icmp") == failures.PORT_UNREACHABLE and sender is not None
            and sender != result.get("ip"))
