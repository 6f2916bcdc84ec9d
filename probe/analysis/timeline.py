"""Timeline: date the onset and the end of blocking per network, service and function.

Input is any number of results files (DESIGN.md "Results file"); only each run's summary
line is read (:mod:`probe.analysis.summaries`), one file at a time, so memory grows with the
number of runs, never with the number of measurements. Output follows DESIGN.md
"Comparison and timeline".

The rule (documented in ``voip-probe timeline --help`` and README.md):

1. Runs are grouped by network: ASN plus network type (mobile, fixed, wifi, unknown),
   and ordered by ``measurement_start_time`` (then report id).
2. For each service and function a run is *conclusive* when its status is ``ok``
   (the function works: state *up*) or ``blocked``/``impaired`` (state *down*;
   ``--impaired-is-ok`` counts impaired as up). ``inconclusive`` statuses, functions
   missing from a run and runs of an offline network are ignored: they neither confirm
   nor break a change.
3. Among the conclusive runs, a run whose state differs from the current state starts a
   candidate change. The change is confirmed when at least ``threshold`` of the
   ``window`` conclusive runs starting with it (fewer at the end of the data) are in
   the new state. The default, 2 of 3, ignores a single stray failure during normal
   service and a single call that got through during a ban (intermittent blocking).
4. The first confirmed state sets the baseline and is not an event. Each later
   confirmed change is an event: ``onset`` (up to down) or ``restoration`` (down to up),
   with ``at`` = the time of the first run in the new state and ``previous`` = the time
   of the last run in the old state: the change happened between the two.
5. An onset's ``methods`` are the blocking methods seen in the confirming runs; a
   restoration's are those of the last blocked run (the blocking that ended).
6. A change still waiting for confirmation at the end of the data is reported as
   *unconfirmed* in the human summary, not as an event.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.analysis.summaries import (
    RunSummary,
    Warn,
    function_methods,
    function_status,
    iter_summaries,
)

Record = dict[str, Any]
StateKey = tuple[str, str]  # (service, function)
# Per run and function: (status, methods, reachable, total); shared between runs.
FunctionState = tuple[str, tuple[str, ...], int, int]

DOWN_STATUSES = frozenset({"blocked", "impaired"})


def state_of(status: str, impaired_is_down: bool) -> bool | None:
    """A function status as a state: ``True`` = down (blocked; impaired unless
    ``impaired_is_down`` is false), ``False`` = up (ok), ``None`` = not conclusive."""
    if status == "ok":
        return False
    if status == "blocked":
        return True
    if status == "impaired":
        return impaired_is_down
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    """When a change of state counts: ``threshold`` of ``window`` conclusive runs."""

    window: int = 3
    threshold: int = 2
    impaired_is_down: bool = True

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("the window must hold at least 1 run")
        if not 1 <= self.threshold <= self.window:
            raise ValueError(f"the threshold must be between 1 and the window ({self.window})")
        if 2 * self.threshold <= self.window:
            raise ValueError(
                f"the threshold ({self.threshold}) must be a majority of the window "
                f"({self.window}), or a change and its reversal could both be confirmed")

    def state_of(self, status: str) -> bool | None:
        """``True`` = down, ``False`` = up, ``None`` = not conclusive (ignored)."""
        return state_of(status, self.impaired_is_down)


@dataclass(frozen=True, slots=True)
class Run:
    """What the timeline keeps of one run (its measurements are never held)."""

    start: str
    report_id: str
    path: Path
    online: bool
    states: dict[StateKey, FunctionState]


@dataclass(frozen=True, slots=True)
class Event:
    service: str
    function: str
    kind: str  # onset | restoration
    at: str
    previous: str
    methods: tuple[str, ...]

    def to_json(self) -> Record:
        return {"service": self.service, "function": self.function, "kind": self.kind,
                "at": self.at, "previous": self.previous, "methods": list(self.methods)}


@dataclass(slots=True)
class Current:
    """Where a service function stands at the end of the data."""

    service: str
    function: str
    state: bool | None  # confirmed state: True down, False up, None never confirmed
    since: str | None  # time of the run that started the confirmed state
    latest_status: str  # status in the last run that had this function
    latest_methods: tuple[str, ...]
    conclusive_runs: int
    pending_since: str | None = None  # first run of an unconfirmed change


@dataclass(slots=True)
class NetworkTimeline:
    asn: str
    network_type: str
    runs: list[Run] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    current: list[Current] = field(default_factory=list)

    def to_json(self) -> Record:
        return {"asn": self.asn, "type": self.network_type, "runs": len(self.runs),
                "events": [e.to_json() for e in self.events]}


@dataclass(slots=True)
class Timeline:
    networks: list[NetworkTimeline]
    skipped_files: int = 0

    def to_json(self) -> Record:
        return {"networks": [n.to_json() for n in self.networks]}

    @property
    def runs(self) -> int:
        return sum(len(n.runs) for n in self.networks)


class _Interner:
    """Shares identical strings and state tuples between runs (memory: many runs repeat
    the same few states)."""

    def __init__(self) -> None:
        self._keys: dict[StateKey, StateKey] = {}
        self._states: dict[FunctionState, FunctionState] = {}

    def key(self, service: str, function: str) -> StateKey:
        k = (sys.intern(service), sys.intern(function))
        return self._keys.setdefault(k, k)

    def state(self, st: FunctionState) -> FunctionState:
        return self._states.setdefault(st, st)


def _as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def compact_run(summary: RunSummary, interner: _Interner) -> Run:
    states: dict[StateKey, FunctionState] = {}
    for service, function, verdict in summary.functions():
        st = (function_status(verdict), function_methods(verdict),
              _as_int(verdict.get("reachable")), _as_int(verdict.get("total")))
        states[interner.key(service, function)] = interner.state(st)
    return Run(summary.start, summary.report_id, summary.path, summary.online, states)


def collect_runs(summaries: Iterable[RunSummary]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (ASN, network type), each group in time order."""
    interner = _Interner()
    groups: dict[tuple[str, str], list[Run]] = {}
    for summary in summaries:
        key = (sys.intern(summary.asn), sys.intern(summary.network_type))
        groups.setdefault(key, []).append(compact_run(summary, interner))
    for runs in groups.values():
        runs.sort(key=lambda r: (r.start, r.report_id, str(r.path)))
    return groups


def detect(runs: list[Run], key: StateKey, rule: Rule) -> tuple[list[Event], Current]:
    """Apply the rule (module docstring) to one service function of one network."""
    service, function = key
    points: list[tuple[Run, bool, FunctionState]] = []
    latest: FunctionState | None = None
    for run in runs:
        st = run.states.get(key)
        if st is None:
            continue
        latest = st
        down = rule.state_of(st[0]) if run.online else None
        if down is not None:
            points.append((run, down, st))

    events: list[Event] = []
    state: bool | None = None
    since: str | None = None
    n = len(points)
    for i in range(n):
        run, down, _st = points[i]
        if down is state:
            continue
        window = points[i:i + rule.window]
        agreeing = [p for p in window if p[1] is down]
        if len(agreeing) < rule.threshold:
            continue
        if state is not None:
            # The last run in the old state; by the majority rule it is the run just before.
            j = i - 1
            while j > 0 and points[j][1] is not state:
                j -= 1
            prev_run, _prev_down, prev_st = points[j]
            if down:
                methods = tuple(sorted({m for p in agreeing for m in p[2][1]}))
                kind = "onset"
            else:
                methods = prev_st[1]
                kind = "restoration"
            events.append(Event(service, function, kind, run.start, prev_run.start, methods))
        state, since = down, run.start

    pending: str | None = None
    if state is not None:
        for run, down, _st in reversed(points):
            if down is state:
                break
            pending = run.start
    elif points:
        pending = points[0][0].start
    current = Current(service, function, state, since,
                      latest[0] if latest else "inconclusive", latest[1] if latest else (),
                      n, pending)
    return events, current


def analyse(groups: dict[tuple[str, str], list[Run]], rule: Rule) -> list[NetworkTimeline]:
    out: list[NetworkTimeline] = []
    for (asn, network_type), runs in sorted(groups.items()):
        net = NetworkTimeline(asn, network_type, runs)
        keys = sorted({k for r in runs for k in r.states})
        for key in keys:
            events, current = detect(runs, key, rule)
            net.events.extend(events)
            net.current.append(current)
        net.events.sort(key=lambda e: (e.at, e.service, e.function))
        out.append(net)
    return out


def build_timeline(paths: Iterable[Path], rule: Rule, warn: Warn) -> Timeline:
    """Read the summaries of ``paths`` (one at a time) and detect the events."""
    skipped = 0

    def counting_warn(message: str) -> None:
        nonlocal skipped
        if message.endswith("skipped"):
            skipped += 1
        warn(message)

    groups = collect_runs(iter_summaries(paths, counting_warn))
    return Timeline(analyse(groups, rule), skipped)
