"""The runner: a plan becomes a stream of measurements.

Every check of the plan runs concurrently under one global limit (``concurrency``), each
within its own budget (``timeout_s``, counted from when it gets a slot). After the main
pass, every failed check runs once more (the confirmation pass, DESIGN.md measurement
rules), so a scan where everything is blackholed takes about two budgets, never the sum
of the checks. The second budget is kept: the confirmation pass ends two budgets after
the run began (the process start for ``voip-probe run``), whatever the main pass's
stragglers and the start-up took, though each confirmation keeps at least three
quarters of a budget (on an overloaded machine the run overruns instead). A check in
the confirmation pass sees its main-pass test keys (``CheckContext.main_pass``): its own
first probes may have triggered what it meets now.
Each finished check is handed to ``emit`` at once (the results writer), so a run cut
short keeps everything measured so far.

DNS: each service gets one ``dns`` measurement per host it uses (function ``dns``); the
lookup itself is shared by every check of the pass (:class:`~probe.resolve.HostResolver`),
which knows each host's expected networks (the union over the plan, so that an answer
there is never taken for a bogon). There is no barrier: each check starts on its own
host's answer as soon as it is in, and is settled against the whole lookup when it ends
(:meth:`~probe.resolve.HostResolver.settle`).
The confirmation pass reuses the main pass's successful lookups and repeats failed ones.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probe import SCHEMA_VERSION, SOFTWARE_NAME, __version__, failures
from probe.checks import CheckContext, get_check
from probe.hostnames import is_ip_literal
from probe.model import Endpoint, Plan, Record, RunConfig
from probe.net import Network
from probe.resolve import DnsResult, HostResolver, early_answers

# A check that overruns its own budget by more than this is stopped by the runner.
GRACE_S = 0.5
# The confirmation pass ends this long before two budgets are over (the summary is
# still to be written), and each of its checks gets at least this share of a budget.
FINISH_RESERVE_S = 0.3
MIN_CONFIRM_SHARE = 0.75


def ooni_time(dt: datetime) -> str:
    """OONI df-000 time format: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(slots=True)
class RunInfo:
    """What every measurement of one run shares (OONI base fields)."""

    report_id: str
    start: datetime
    probe_asn: str = "AS0"
    probe_cc: str = "ZZ"
    network_type: str = "unknown"
    probe_network_name: str | None = None
    probe_ip: str | None = None  # written only with --include-ip
    annotations: dict[str, Any] = field(default_factory=dict)

    def base(self) -> Record:
        rec: Record = {
            "schema_version": SCHEMA_VERSION,
            "report_id": self.report_id,
            "software_name": SOFTWARE_NAME,
            "software_version": __version__,
            "test_start_time": ooni_time(self.start),
            "probe_asn": self.probe_asn,
            "probe_cc": self.probe_cc,
            "probe_network_name": self.probe_network_name,
        }
        if self.probe_ip is not None:
            rec["probe_ip"] = self.probe_ip
        return rec

    def stamp(self, record: Record) -> Record:
        """``record`` with this run's shared fields as they are now: a measurement made
        before the identity lookup finished is written with its result."""
        record.update(self.base())
        if "annotations" in record:
            record["annotations"] = {**self.annotations, **record["annotations"]}
        return record


@dataclass(frozen=True, slots=True)
class Progress:
    """An event for the live view: ``pass_start``, ``check_start`` or ``check_done``."""

    kind: str
    pass_name: str
    endpoint: Endpoint | None = None
    record: Record | None = None
    total: int = 0


ProgressFn = Callable[[Progress], None]
Emit = Callable[[Record], None]


def dns_units(plan: Plan) -> list[Endpoint]:
    """One ``dns`` endpoint per (service, host) the plan uses; IP literals need none,
    control services get none (their checks record their own lookups), and neither do a
    service's ``neutral`` endpoints (a third party's server standing for the path: its
    lookup says nothing about the service's names)."""
    units: list[Endpoint] = []
    for svc in plan.services:
        if svc.is_control:
            continue
        seen: set[str] = set()
        for ep in svc.endpoints:
            host = ep.target_host
            if host is None or host in seen or is_ip_literal(host) \
                    or ep.options.get("neutral") is True:
                continue
            seen.add(host)
            units.append(Endpoint(service=svc.id, function="dns", check="dns", host=host,
                                  pool="all", expected_networks=ep.expected_networks,
                                  source=ep.source))
    return units


def plan_units(plan: Plan) -> list[Endpoint]:
    """Everything one pass runs: the derived dns lookups, then the plan's endpoints."""
    return [*dns_units(plan), *plan.endpoints]


def host_networks(units: Sequence[Endpoint]) -> dict[str, tuple[str, ...]]:
    """host -> the union of ``expected_networks`` of every endpoint that uses it."""
    found: dict[str, list[str]] = {}
    for ep in units:
        host = ep.target_host
        if host is None:
            continue
        nets = found.setdefault(host.lower().rstrip("."), [])
        nets.extend(n for n in ep.expected_networks if n not in nets)
    return {h: tuple(n) for h, n in found.items() if n}


def is_failure(record: Record) -> bool:
    tk = record.get("test_keys") or {}
    failure = tk.get("failure")
    return failure is not None and failure != failures.NOT_APPLICABLE and not tk.get("check_error")


def confirmation_deadline(t0: float, budget_s: float, run_end: float) -> float:
    """The deadline of a confirmation check that gets its slot at ``t0``: a budget, cut
    to end with the run's second budget (``run_end``), but never below a share of a
    budget (:data:`MIN_CONFIRM_SHARE`: a confirmation must still be able to tell)."""
    return max(min(t0 + budget_s, run_end), t0 + MIN_CONFIRM_SHARE * budget_s)


async def run_plan(plan: Plan, cfg: RunConfig, net: Network, info: RunInfo, emit: Emit,
                   progress: ProgressFn | None = None,
                   started: float | None = None) -> list[Record]:
    """Run the main pass and the confirmation pass; return every record emitted.
    ``started``: when the user's run began (``loop.time()`` clock; default: now), from
    which the confirmation pass ends within two budgets (see the module docstring)."""
    loop = asyncio.get_running_loop()
    begun = loop.time() if started is None else min(started, loop.time())
    units = plan_units(plan)
    expected = host_networks(units)
    records: list[Record] = []
    shared: dict[str, Any] = {}  # what the checks of this run share (CheckContext.shared)
    main, resolver = await _run_pass(units, "main", cfg, net, info, emit, progress, None,
                                     expected, shared=shared)
    records.extend(main)
    if cfg.confirm_failures:
        failed = [r for r in main if is_failure(r)]
        if failed:
            seed = {h: res for h, res in resolver.results().items() if res.failure is None}
            run_end = begun + 2 * cfg.timeout_s - FINISH_RESERVE_S
            confirm, _ = await _run_pass([r["_unit"] for r in failed], "confirmation", cfg,
                                         net, info, emit, progress, seed, expected, run_end,
                                         shared=shared,
                                         main_keys={id(r["_unit"]): r["test_keys"]
                                                    for r in failed})
            records.extend(confirm)
    for r in records:
        r.pop("_unit", None)
    return records


async def _run_pass(units: Sequence[Endpoint], pass_name: str, cfg: RunConfig, net: Network,
                    info: RunInfo, emit: Emit, progress: ProgressFn | None,
                    seed: dict[str, DnsResult] | None,
                    expected: dict[str, tuple[str, ...]] | None = None,
                    run_end: float | None = None,
                    shared: dict[str, Any] | None = None,
                    main_keys: dict[int, dict[str, Any]] | None = None,
                    ) -> tuple[list[Record], HostResolver]:
    loop = asyncio.get_running_loop()
    resolver = HostResolver(net, cfg, seed, expected)
    limit = asyncio.Semaphore(max(1, cfg.concurrency))
    out: list[Record] = []
    shared = {} if shared is None else shared
    if progress:
        progress(Progress("pass_start", pass_name, total=len(units)))

    async def one(ep: Endpoint) -> None:
        async with limit:
            if progress:
                progress(Progress("check_start", pass_name, endpoint=ep))
            started = datetime.now(UTC)
            t0 = loop.time()
            deadline = t0 + cfg.timeout_s if run_end is None else \
                confirmation_deadline(t0, cfg.timeout_s, run_end)
            ctx = CheckContext(cfg=cfg, net=net, resolver=resolver, deadline=deadline,
                               shared=shared, main_pass=(main_keys or {}).get(id(ep)))
            with early_answers() as taken:
                keys = await _run_check(ep, ctx, deadline - t0 + GRACE_S)
            if taken:
                keys = await resolver.settle(taken, keys, ctx.deadline + GRACE_S - loop.time())
            record = make_record(info, ep, pass_name, keys, started, loop.time() - t0)
            emit(record)
            record["_unit"] = ep
            out.append(record)
            if progress:
                progress(Progress("check_done", pass_name, endpoint=ep, record=record))

    try:
        await asyncio.gather(*(one(ep) for ep in units))
    finally:
        await resolver.aclose()
    return out, resolver


async def _run_check(ep: Endpoint, ctx: CheckContext, hard_limit_s: float) -> dict[str, Any]:
    check = get_check(ep.check)
    try:
        async with asyncio.timeout(hard_limit_s):
            keys = await check.run(ep, ctx)
    except TimeoutError:
        # The check ignored its deadline; the measurement still counts as a timeout.
        return {"failure": failures.GENERIC_TIMEOUT, "failed_operation": "top_level",
                "budget_exceeded": True}
    except Exception as exc:
        # A bug or a target the check cannot handle: recorded, excluded from verdicts,
        # and reported by the command line; one broken check never ends the run.
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        print(f"voip-probe: check {ep.check} failed on {ep.input}: {tb}", file=sys.stderr)
        return {"failure": f"{failures.UNKNOWN} {tb}", "failed_operation": "top_level",
                "check_error": tb}
    if "failure" not in keys:
        raise AssertionError(f"check {ep.check} returned test_keys without 'failure'")
    return keys


def make_record(info: RunInfo, ep: Endpoint, pass_name: str, keys: dict[str, Any],
                started: datetime, runtime_s: float) -> Record:
    rec = info.base()
    rec.update({
        "measurement_start_time": ooni_time(started),
        "test_runtime": round(runtime_s, 4),
        "input": ep.input,
        "annotations": {**info.annotations, "network_type": info.network_type},
        "test_name": ep.check,
        "test_version": get_check(ep.check).VERSION,
        "service": ep.service,
        "function": ep.function,
        "pool": ep.pool,
        "pass": pass_name,
        "test_keys": keys,
    })
    return rec
