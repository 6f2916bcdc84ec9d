"""Scan speed of a full default scan through the network seam, with the real runner.

Prints, measured side by side in one run:
* where a clean run's wall time goes, phase by phase (a whole session: identity lookup
  and scan, in a fake world whose every answer takes ``--rtt``): start-up, the identity
  lookup (beside the scan, so its share of the wall is what it adds), the DNS listening
  window (first answer to the end of the lookup: checks no longer wait for it), the
  confirmation pass, the slowest checks;
* wall time / check budget when every endpoint is unreachable (blackholed: every connect
  waits out its budget), the reflector's call ports too (its baseline port 443 answers, so
  the call-path checks get its cookie and their trials, a fresh flow each, wait out theirs).
  Goal: at most 2.0 (the main pass and the confirmation pass each
  take about one budget, never the sum of the checks);
* the same when every endpoint answers;
* the ratio of running the same checks one by one (concurrency 1) to the concurrent run;
* start-up time of `voip-probe --help` against `python -c pass` (goal: < 0.3 s more);
* the process's exit after a scan, with the heap frozen as the console entry point leaves
  it (:func:`probe.cli.end_quickly`) against the interpreter's full teardown collections.

Usage: python benchmarks/scan_speed.py [--budget 1.0] [--rtt 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from probe.model import Plan, RunConfig
from probe.runner import RunInfo, plan_units, run_plan
from probe.targets import load_plan
from probe.testing import FAKE_NETWORKS, FakeNetwork, reflector_responder, stun_server


def fake_plan() -> Plan:
    """The shipped plan, its hosts living in the fake world's (bogon) address space."""
    import dataclasses

    plan = load_plan()
    return Plan(tuple(dataclasses.replace(s, endpoints=tuple(
        dataclasses.replace(e, expected_networks=FAKE_NETWORKS) for e in s.endpoints))
        for s in plan.services))


_STUN_SERVER = stun_server()


def answer_everything(data: bytes) -> bytes:
    """A UDP endpoint that answers everyone: a STUN server's answer to STUN (Binding
    success, 401 to an Allocate), an echo of anything else. (The project's reflector
    answers only a probe holding its cookie; these endpoints are a service's servers.)"""
    return _STUN_SERVER(data) or data


# --reflector (an address, as a volunteer may give it): the udp, differential and stream
# checks run. Clear of the hosts' addresses (198.18.1.1 onwards) and of the resolver's.
REFLECTOR = "198.18.250.7"


def fake_world(blackholed: bool) -> tuple[FakeNetwork, int]:
    """Every UDP endpoint answers (:func:`answer_everything`), the reflector as the project's
    does (:func:`probe.testing.reflector_responder`); blackholed: the censor drops every
    packet to every endpoint and to the reflector's call ports (the resolver and the
    reflector's baseline port 443 still answer)."""
    plan = fake_plan()
    hosts = sorted({e.target_host for e in plan.endpoints if e.target_host})
    # 198.18.1.1 onwards: clear of the resolver (198.18.0.53), which the censor must not drop.
    names = {h: [f"198.18.{i // 250 + 1}.{i % 250 + 1}"] for i, h in enumerate(hosts)}
    net = FakeNetwork(names=names, udp_default=answer_everything,
                      udp_hosts={REFLECTOR: reflector_responder})
    if blackholed:
        for proto in ("tcp", "udp"):
            net.censor.apply("drop_endpoint", hosts=hosts, proto=proto)
        call_ports = sorted({e.port for e in plan.endpoints
                             if e.target_host is None and e.port and e.port != 443})
        net.censor.apply("drop_udp_ports", addresses=[REFLECTOR], ports=call_ports)
    return net, len(plan_units(plan))


def scan(blackholed: bool, budget: float, concurrency: int = 256,
         slowest: list[tuple[float, str]] | None = None) -> tuple[float, int]:
    plan = fake_plan()
    net, _ = fake_world(blackholed)
    info = RunInfo(report_id="bench", start=datetime.now(UTC))
    records: list[dict] = []
    cfg = RunConfig(timeout_s=budget, concurrency=concurrency, reflector=REFLECTOR)
    t0 = time.perf_counter()
    asyncio.run(run_plan(plan, cfg, net, info, records.append))
    if slowest is not None:
        slowest.extend(sorted(((r["test_runtime"], f"{r['test_name']} {r['input']}")
                               for r in records), reverse=True)[:3])
    return time.perf_counter() - t0, len(records)


IDENTITY_TOML = """[identity]
stun_servers = ["stun.identity.test:3478"]
"""


def phases(budget: float, rtt: float) -> None:
    """One clean session in the fake world, every DNS answer ``rtt`` late; prints its
    phases from the moments each one ended."""
    import tempfile
    from pathlib import Path

    import probe.resolve.resolver as resolver_mod
    import probe.session as session_mod
    from probe.testing import stun_server

    net, _ = fake_world(False)
    net.dns_delay_s = rtt
    net.names["stun.identity.test"] = ["198.18.200.1"]
    net.udp_hosts["198.18.200.1"] = stun_server(mapped=("203.0.113.7", 40000))
    net.txt.update({
        "7.113.0.203.origin.asn.cymru.com": ["64500 | 203.0.113.0/24 | MA | afrinic | x"],
        "AS64500.asn.cymru.com": ["64500 | MA | afrinic | x | LAB-AS"]})
    marks: dict[str, float] = {}
    answered: dict[str, float] = {}
    settled: dict[str, float] = {}
    real_identity = session_mod.resolve_identity
    real_resolve, real_lookup = resolver_mod.HostResolver.resolve, resolver_mod.HostResolver.lookup

    async def identity(cfg, net):  # type: ignore[no-untyped-def]
        found = await real_identity(cfg, net)
        marks["identity"] = time.perf_counter()
        return found

    async def resolve(self, host, deadline):  # type: ignore[no-untyped-def]
        found = await real_resolve(self, host, deadline)
        answered.setdefault(host, time.perf_counter())
        return found

    async def lookup(self, host, deadline):  # type: ignore[no-untyped-def]
        found = await real_lookup(self, host, deadline)
        settled.setdefault(host, time.perf_counter())
        return found

    def progress(ev) -> None:  # type: ignore[no-untyped-def]
        if ev.kind == "pass_start" and ev.pass_name == "confirmation":
            marks["main"] = time.perf_counter()

    session_mod.resolve_identity = identity  # type: ignore[assignment]
    resolver_mod.HostResolver.resolve = resolve  # type: ignore[method-assign]
    resolver_mod.HostResolver.lookup = lookup  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "identity.toml"
            conf.write_text(IDENTITY_TOML)
            cfg = RunConfig(timeout_s=budget, identity_config=str(conf))
            t0 = time.perf_counter()
            outcome = session_mod.run_session(fake_plan(), cfg, Path(tmp), net=net,
                                              progress=progress)
            end = time.perf_counter()
    finally:
        session_mod.resolve_identity = real_identity  # type: ignore[assignment]
        resolver_mod.HostResolver.resolve = real_resolve  # type: ignore[method-assign]
        resolver_mod.HostResolver.lookup = real_lookup  # type: ignore[method-assign]
    wall = end - t0
    windows = sorted(settled[h] - answered[h] for h in settled if h in answered)
    first_answers = sorted(answered[h] - t0 for h in answered)
    main_end = marks.get("main", end)
    slow = sorted(((r["test_runtime"], f"{r['test_name']} {r['input']}")
                   for r in outcome.records), reverse=True)[:3]
    print(f"clean session ({len(outcome.records)} measurements, DNS rtt {rtt * 1000:.0f} ms,"
          f" budget {budget:g} s): wall {wall:.3f} s")
    print(f"  identity lookup: done at {marks['identity'] - t0:.3f} s, beside the scan "
          f"(its share of the wall: {(marks['identity'] - t0) / wall:.0%}; "
          f"{outcome.summary['probe_asn']})")
    print(f"  DNS: first host answered at {first_answers[0]:.3f} s, last at "
          f"{first_answers[-1]:.3f} s; listening window after the answer: median "
          f"{statistics.median(windows):.3f} s (checks start at the answer, not after it)")
    print(f"  main pass: {main_end - t0:.3f} s; confirmation pass: {end - main_end:.3f} s "
          f"({sum(r['pass'] == 'confirmation' for r in outcome.records)} checks)")
    print("  slowest checks: " + ", ".join(f"{name} {t:.2f} s" for t, name in slow))


def startup(cmd: list[str], n: int = 7) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# A child that scans the blackholed fake world (a full run's heap), then ends: it prints
# the moment it is done, the parent notes when the process is gone.
EXIT_CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
import gc
from scan_speed import scan
from probe.cli import end_quickly
scan(True, {budget!r})
objects = len(gc.get_objects())
if sys.argv[1] == "frozen":
    end_quickly()
print(objects, time.monotonic(), flush=True)
"""


def exit_cost(frozen: bool, budget: float) -> tuple[float, int]:
    """(seconds from the child's last line to its exit, objects alive at the end)."""
    from pathlib import Path

    code = EXIT_CHILD.format(bench=str(Path(__file__).resolve().parent), budget=budget)
    proc = subprocess.Popen([sys.executable, "-c", code, "frozen" if frozen else "teardown"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    objects, done = proc.stdout.readline().split()
    proc.wait()
    gone = time.monotonic()
    if proc.returncode != 0:
        raise SystemExit(f"the exit child failed ({proc.returncode})")
    return gone - float(done), int(objects)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=1.0, help="check budget in seconds")
    ap.add_argument("--small-budget", type=float, default=0.05,
                    help="budget for the one-by-one comparison (kept small: it is slow)")
    ap.add_argument("--rtt", type=float, default=0.02,
                    help="how late every DNS answer comes in the clean session")
    args = ap.parse_args()
    _, units = fake_world(False)
    print(f"default scan: {units} checks per pass (dns lookups included)")
    phases(args.budget, args.rtt)

    wall_dead, n_dead = scan(True, args.budget)
    slow: list[tuple[float, str]] = []
    wall_ok, n_ok = scan(False, args.budget, slowest=slow)
    print(f"all unreachable: {wall_dead:.2f} s = {wall_dead / args.budget:.2f} x budget "
          f"({n_dead} measurements; goal <= 2.0)")
    print(f"all answering:   {wall_ok:.3f} s = {wall_ok / args.budget:.3f} x budget "
          f"({n_ok} measurements); slowest: "
          + ", ".join(f"{name} {t:.2f} s" for t, name in slow))

    b = args.small_budget
    conc, _ = scan(True, b)
    seq, _ = scan(True, b, concurrency=1)
    print(f"one by one vs concurrent (unreachable, budget {b} s): {seq:.2f} s vs {conc:.2f} s "
          f"= {seq / conc:.0f}x slower one by one")

    base = startup([sys.executable, "-c", "pass"])
    cli = startup([sys.executable, "-m", "probe", "--help"])
    print(f"start-up: voip-probe --help {cli:.3f} s, python -c pass {base:.3f} s: "
          f"+{cli - base:.3f} s ({cli / base:.1f}x; goal < +0.3 s)")
    walls: dict[bool, list[float]] = {True: [], False: []}
    objects = 0
    for _ in range(5):  # alternating, side by side
        for frozen in (False, True):
            cost, objects = exit_cost(frozen, b)
            walls[frozen].append(cost)
    frozen_s, full_s = statistics.median(walls[True]), statistics.median(walls[False])
    print(f"exit after a scan ({objects} objects alive): {frozen_s:.3f} s with the heap frozen "
          f"(the entry point), {full_s:.3f} s with full teardown collections "
          f"({full_s / frozen_s:.1f}x)")
    ok = wall_dead / args.budget <= 2.0 and cli - base < 0.3
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
