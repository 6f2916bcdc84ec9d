"""Crowd confirmation: when is a change of a service function on a network an event, and
how sure are we (issue 17).

Input: per network (country, ASN, network type), service and function, the runs of
every probe on that network: ``(time, status, methods)``. Probes are told apart by the
pseudonym in their results files (:mod:`probe.pseudonym`); runs without one count as a
single "anonymous" probe, so they never confirm each other.

The rule, per probe (one pass in time order, :func:`advance`; it can be continued run by
run, which is what the collector does on each upload):

1. ``ok`` is *up*, ``blocked``/``impaired`` is *down* (``impaired_is_down``); other
   statuses are inconclusive: counted, never a state.
2. The probe's first conclusive run sets its *settled* state (a baseline, not a change).
3. A run in the other state opens a *candidate* change. If the probe is seen back in the
   settled state less than ``window_s`` after the candidate began, the candidate was a
   *flap* and is dropped (one stray failure, or one call that got through during a ban,
   is not an event). A candidate that has lasted ``window_s`` (a later run in either
   state at least that long after it began) *settles*: that is a probe change, dated
   ``at`` = the candidate's first run and ``previous`` = the probe's last run in the
   old state. A candidate not yet settled at the end of the data is *pending*; it still
   counts unless the probe flapped within ``window_s`` before it (a flapping probe).
4. Each probe has a weight in [0, 1]: ``min(1, 2 x share of conclusive runs) x
   max(0, 1 - 2 x flaps / conclusive runs)``. A probe whose runs are mostly
   inconclusive, or that flaps, weighs less.

Then across probes (:func:`events`): probe changes of the same kind (onset/restoration)
whose ``at`` lie within ``window_s`` of the first of them form one event. Its weight is
the sum of the weights of the distinct probes in it. The event is ``confirmed`` when
that weight reaches ``probes`` (K, default 2: two independent, steady probes),
``single-probe`` otherwise; an event weighing less than ``min_weight`` is not reported
at all. An event is dated by its first probe change (``at``), ``previous`` is the latest
old-state run before ``at`` among its probes (the change happened between the two), and
``last_at`` is when the last of its probes saw it. ``pending`` is true while none of its
probe changes has settled.

Consequences (tested): two steady probes that agree within the window -> confirmed; one
probe -> single-probe; one probe flapping -> no event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache

from probe.analysis import timeline

ANONYMOUS = ""  # the probe key of runs without a pseudonym
CONFIRMED = "confirmed"
SINGLE_PROBE = "single-probe"


@lru_cache(maxsize=1 << 16)
def seconds(at: str) -> float:
    """Epoch seconds of a results-file time ("YYYY-MM-DD HH:MM:SS", UTC)."""
    return datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Rule:
    probes: float = 2.0  # K: the weight of agreeing probes that confirms an event
    window_s: float = 86400.0
    impaired_is_down: bool = True
    min_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.probes < 1:
            raise ValueError("the number of probes that confirm an event must be >= 1")
        if self.window_s <= 0:
            raise ValueError("the confirmation window must be longer than 0 s")
        if not 0 < self.min_weight <= self.probes:
            raise ValueError("min_weight must be > 0 and at most the confirming weight")

    def state_of(self, status: str) -> bool | None:
        """``True`` = down, ``False`` = up, ``None`` = inconclusive (as the timeline)."""
        return timeline.state_of(status, self.impaired_is_down)


@dataclass(frozen=True, slots=True)
class Observation:
    """One run's verdict for one service function."""

    at: str
    status: str
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeChange:
    probe: str
    kind: str  # onset | restoration
    at: str  # first run in the new state
    previous: str  # last run in the old state
    methods: tuple[str, ...]
    settled: bool = True


@dataclass(slots=True)
class ProbeState:
    """What the rule keeps of one probe on one network and service function."""

    total: int = 0
    conclusive: int = 0
    flaps: int = 0
    settled: bool | None = None
    settled_since: str | None = None
    state_methods: tuple[str, ...] = ()  # blocking methods of the settled down state
    last_at: str | None = None
    last_status: str = "inconclusive"
    last_conclusive_at: str | None = None
    last_conclusive_status: str | None = None
    last_flap_at: str | None = None
    cand_since: str | None = None  # the open candidate change, if any
    cand_previous: str | None = None
    cand_methods: tuple[str, ...] = ()

    @property
    def weight(self) -> float:
        return probe_weight(self.total, self.conclusive, self.flaps)


def probe_weight(total: int, conclusive: int, flaps: int) -> float:
    """Rule step 4: mostly inconclusive or flapping probes weigh less."""
    if total <= 0 or conclusive <= 0:
        return 0.0
    q_inconclusive = min(1.0, 2.0 * conclusive / total)
    q_flap = max(0.0, 1.0 - 2.0 * flaps / conclusive)
    return round(q_inconclusive * q_flap, 4)


def _union(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({*a, *b}))


def advance(state: ProbeState, obs: Observation, rule: Rule, probe: str = ANONYMOUS
            ) -> tuple[ProbeState, list[ProbeChange]]:
    """Rule steps 1-3 for one more run of one probe (runs must come in time order).
    Returns the new state and the probe changes that settled with this run."""
    st = replace(state)
    st.total += 1
    st.last_at, st.last_status = obs.at, obs.status
    down = rule.state_of(obs.status)
    if down is None:
        return st, []
    st.conclusive += 1
    changes: list[ProbeChange] = []
    if st.settled is None:
        st.settled, st.settled_since = down, obs.at
        st.state_methods = obs.methods if down else ()
    elif st.cand_since is None:
        if down == st.settled:
            if down:
                st.state_methods = _union(st.state_methods, obs.methods)
        else:
            st.cand_since, st.cand_previous, st.cand_methods = (
                obs.at, st.last_conclusive_at, obs.methods)
    else:
        lasted = seconds(obs.at) - seconds(st.cand_since) >= rule.window_s
        if down != st.settled:  # the candidate goes on
            st.cand_methods = _union(st.cand_methods, obs.methods)
            if lasted:
                changes.append(_settle(st, probe))
        elif lasted:  # it held long enough before this run reverted it
            old_last = st.last_conclusive_at
            changes.append(_settle(st, probe))
            st.cand_since, st.cand_previous, st.cand_methods = obs.at, old_last, obs.methods
        else:  # back within the window: a flap
            st.flaps += 1
            st.last_flap_at = obs.at
            st.cand_since, st.cand_previous, st.cand_methods = None, None, ()
            if down:
                st.state_methods = _union(st.state_methods, obs.methods)
    st.last_conclusive_at, st.last_conclusive_status = obs.at, obs.status
    return st, changes


def _settle(st: ProbeState, probe: str) -> ProbeChange:
    assert st.cand_since is not None and st.settled is not None
    onset = not st.settled
    change = ProbeChange(probe, "onset" if onset else "restoration", st.cand_since,
                         st.cand_previous or st.cand_since,
                         st.cand_methods if onset else st.state_methods)
    st.settled, st.settled_since = onset, st.cand_since
    st.state_methods = st.cand_methods if onset else ()
    st.cand_since, st.cand_previous, st.cand_methods = None, None, ()
    return change


def pending_change(state: ProbeState, rule: Rule, probe: str = ANONYMOUS
                   ) -> ProbeChange | None:
    """The probe's open candidate as a pending change, unless the probe flapped within
    the window before it (rule step 3)."""
    if state.cand_since is None or state.settled is None:
        return None
    if state.last_flap_at is not None and (
            seconds(state.cand_since) - seconds(state.last_flap_at) < rule.window_s):
        return None
    onset = not state.settled
    return ProbeChange(probe, "onset" if onset else "restoration", state.cand_since,
                       state.cand_previous or state.cand_since,
                       state.cand_methods if onset else state.state_methods, settled=False)


def fold(observations: Iterable[Observation], rule: Rule, probe: str = ANONYMOUS
         ) -> tuple[ProbeState, list[ProbeChange]]:
    """One probe's whole history (sorted here by time): final state and settled changes."""
    state = ProbeState()
    changes: list[ProbeChange] = []
    for obs in sorted(observations, key=lambda o: o.at):
        state, settled = advance(state, obs, rule, probe)
        changes.extend(settled)
    return state, changes


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    at: str
    previous: str
    last_at: str
    methods: tuple[str, ...]
    probes: int
    weight: float
    confidence: str  # confirmed | single-probe
    pending: bool

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "at": self.at, "previous": self.previous,
                "last_at": self.last_at, "methods": list(self.methods),
                "probes": self.probes, "weight": self.weight,
                "confidence": self.confidence, "pending": self.pending}


def events(changes: Iterable[ProbeChange], weights: Mapping[str, float], rule: Rule
           ) -> list[Event]:
    """Across probes: group probe changes into events and grade them (module docstring).
    ``changes`` holds the settled changes and the pending ones (:func:`pending_change`)."""
    out: list[Event] = []
    by_kind: dict[str, list[ProbeChange]] = {}
    for change in changes:
        by_kind.setdefault(change.kind, []).append(change)
    for kind, group in by_kind.items():
        group.sort(key=lambda c: (c.at, c.probe))
        i = 0
        while i < len(group):
            first = seconds(group[i].at)
            j = i
            while j < len(group) and seconds(group[j].at) - first <= rule.window_s:
                j += 1
            event = _grade(kind, group[i:j], weights, rule)
            if event is not None:
                out.append(event)
            i = j
    out.sort(key=lambda e: (e.at, e.kind))
    return out


def _grade(kind: str, members: Sequence[ProbeChange], weights: Mapping[str, float],
           rule: Rule) -> Event | None:
    probes = {c.probe for c in members}
    weight = round(sum(weights.get(p, 0.0) for p in probes), 4)
    if weight < rule.min_weight:
        return None
    at = members[0].at
    before = [c.previous for c in members if c.previous < at]
    previous = max(before) if before else members[0].previous
    methods = tuple(sorted({m for c in members for m in c.methods}))
    confidence = CONFIRMED if weight >= rule.probes - 1e-9 else SINGLE_PROBE
    return Event(kind, at, previous, max(c.at for c in members), methods, len(probes),
                 weight, confidence, not any(c.settled for c in members))


@dataclass(frozen=True, slots=True)
class Current:
    """Where a service function stands on a network now."""

    status: str  # ok | impaired | blocked | mixed | inconclusive
    probes: int  # probes seen within the window before the latest run
    as_of: str | None  # the latest run


def current(states: Mapping[str, ProbeState], rule: Rule) -> Current:
    """The weighted majority of the latest conclusive status of each probe seen within
    ``window_s`` before the latest run (:func:`decide`)."""
    seen = [s for s in states.values() if s.last_at is not None]
    if not seen:
        return Current("inconclusive", 0, None)
    as_of = max(s.last_at for s in seen if s.last_at is not None)
    horizon = seconds(as_of) - rule.window_s
    recent = [s for s in seen if seconds(s.last_at or as_of) >= horizon]
    votes: dict[str, tuple[float, int]] = {}
    for s in recent:
        if s.last_conclusive_status is None or s.last_conclusive_at is None:
            continue
        if seconds(s.last_conclusive_at) < horizon:
            continue
        weight, count = votes.get(s.last_conclusive_status, (0.0, 0))
        votes[s.last_conclusive_status] = (weight + s.weight, count + 1)
    return decide(votes, len(recent), as_of, rule)


def decide(votes: Mapping[str, tuple[float, int]], probes: int, as_of: str | None,
           rule: Rule) -> Current:
    """The current status from ``votes``: per latest status, the summed weight and the
    number of probes. Down (blocked, impaired) against up (ok) by weight (by number
    when every voter weighs nothing); ``mixed`` when they weigh the same; the heavier
    status of the winning side."""
    if not votes:
        return Current("inconclusive", probes, as_of)
    weights = {st: w for st, (w, _n) in votes.items()}
    if sum(weights.values()) <= 0:
        weights = {st: float(n) for st, (_w, n) in votes.items()}
    down = sum(w for st, w in weights.items() if rule.state_of(st))
    up = sum(w for st, w in weights.items() if rule.state_of(st) is False)
    if abs(down - up) < 1e-9:
        return Current("mixed", probes, as_of)
    side = [st for st in weights if bool(rule.state_of(st)) == (down > up)
            and rule.state_of(st) is not None]
    return Current(max(side, key=lambda st: (weights[st], st)), probes, as_of)


@dataclass(slots=True)
class Analysis:
    """Everything the rule says about one service function on one network."""

    events: list[Event] = field(default_factory=list)
    current: Current = field(default_factory=lambda: Current("inconclusive", 0, None))
    states: dict[str, ProbeState] = field(default_factory=dict)
    changes: list[ProbeChange] = field(default_factory=list)


def analyse(runs: Mapping[str, Iterable[Observation]], rule: Rule) -> Analysis:
    """The whole rule at once: ``runs`` maps each probe to its observations."""
    result = Analysis()
    for probe, observations in runs.items():
        state, settled = fold(observations, rule, probe)
        result.states[probe] = state
        result.changes.extend(settled)
    return finish(result.states, result.changes, rule)


def finish(states: Mapping[str, ProbeState], settled: Iterable[ProbeChange], rule: Rule
           ) -> Analysis:
    """Events and current status from the probes' states and their settled changes."""
    changes = list(settled)
    for probe, state in states.items():
        pending = pending_change(state, rule, probe)
        if pending is not None:
            changes.append(pending)
    weights = {probe: state.weight for probe, state in states.items()}
    return Analysis(events(changes, weights, rule), current(states, rule), dict(states),
                    changes)
