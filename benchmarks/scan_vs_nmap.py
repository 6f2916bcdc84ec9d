"""The probe's whole scan beside nmap's, in the censorship lab: same endpoints, one run.

A lab (root) with the shipped targets; the probe and nmap each run from the client
namespace as a volunteer would start them (a new process, wall time from start to exit):

* the probe: ``voip-probe run`` with the lab's targets, ``--doh`` and ``--timeout BUDGET``,
  no reflector (a volunteer's plain run: the checks that need one do not run);
* nmap: TCP connect (``-sT``) and UDP (``-sU``) scans of the same endpoints, the
  ``stun-info`` script on the UDP ports, default timing, no host discovery (``-Pn``).
  nmap scans every port it is given on every host, so hosts are grouped by the ports the
  targets list for them, one nmap per group, started together (wall: the last to end).

The probe's modules are compiled to bytecode first, as ``pip install`` leaves them (an
editable install under ``PYTHONDONTWRITEBYTECODE`` would compile every module at every
start). Two cases: clean, and every service blackholed (the censor drops TCP and UDP to every
endpoint of every service; the resolver, the DoH control and the control targets stay
up). Runs alternate between the two tools, and each figure is the median of ``--runs``.
Goals: clean probe wall <= nmap's, blackholed probe wall <= 2.0 budgets.

Usage: sudo python benchmarks/scan_vs_nmap.py [--budget 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from probe.lab.lab import Lab, require_root, shipped_targets
from probe.lab.play import run_probe
from probe.model import Endpoint
from probe.results import read_results
from probe.targets import load_plan

TCP_CHECKS = {"tcp", "tls", "https", "turn_tcp", "turn_tls"}
UDP_CHECKS = {"stun", "turn", "quic"}  # udp/differential/stream need a reflector
BLACKHOLED_SERVICES = ("whatsapp", "viber", "skype", "duo")


def port_of(ep: Endpoint) -> int | None:
    if ep.url is not None:
        return urlsplit(ep.url).port or 443
    return ep.port


def endpoint_groups(lab: Lab) -> dict[tuple[tuple[int, ...], tuple[int, ...]], list[str]]:
    """(TCP ports, UDP ports) -> the hosts the targets list with exactly those ports."""
    ports: dict[str, tuple[set[int], set[int]]] = {}
    for ep in load_plan(lab.target_files).endpoints:
        host, port = ep.target_host, port_of(ep)
        if host is None or port is None:
            continue
        tcp, udp = ports.setdefault(host.lower(), (set(), set()))
        if ep.check in TCP_CHECKS:
            tcp.add(port)
        elif ep.check in UDP_CHECKS:
            udp.add(port)
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[str]] = {}
    for host, (tcp, udp) in sorted(ports.items()):
        if tcp or udp:
            groups.setdefault((tuple(sorted(tcp)), tuple(sorted(udp))), []).append(host)
    return groups


def nmap_command(lab: Lab, hosts: list[str], tcp: tuple[int, ...], udp: tuple[int, ...],
                 ) -> list[str]:
    spec = ",".join([*(f"T:{p}" for p in tcp), *(f"U:{p}" for p in udp)])
    scans = [*(["-sT"] if tcp else []), *(["-sU", "--script", "stun-info"] if udp else [])]
    return ["ip", "netns", "exec", lab.ns["client"], "nmap", "-Pn", *scans, "-p", spec,
            "-oN", "/dev/null", *hosts]


def time_nmap(lab: Lab, groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[str]]
              ) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(nmap_command(lab, hosts, tcp, udp), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for (tcp, udp), hosts in groups.items()]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"nmap failed ({proc.returncode}): {err.decode()[-500:]}")
    return time.perf_counter() - t0


def time_probe(lab: Lab, budget: float, out: Path) -> tuple[float, float, int]:
    """(wall, the scan's own runtime from the summary, measurements)."""
    t0 = time.perf_counter()
    run = run_probe(lab, out, timeout_s=budget, reflector=False)
    wall = time.perf_counter() - t0
    files = list(out.glob("*.jsonl"))
    summary = read_results(files[0]).summary if len(files) == 1 else None
    if summary is None:
        raise SystemExit(f"the probe wrote no summary (exit {run.exit_code}): "
                         f"{run.stderr[-800:]}")
    return wall, float(summary["test_runtime"]), int(summary["measurements"])


def blackhole(lab: Lab) -> None:
    for service in BLACKHOLED_SERVICES:
        for proto in ("tcp", "udp"):
            lab.apply("drop_endpoint", service=service, proto=proto)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=5.0, help="the probe's --timeout")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    why = require_root()
    if why or shutil.which("nmap") is None:
        print(f"cannot run: {why or 'nmap is not installed'}", file=sys.stderr)
        return 2
    import compileall

    import probe

    compileall.compile_dir(Path(probe.__file__).parent, quiet=1)
    with Lab(targets=shipped_targets()) as lab, tempfile.TemporaryDirectory() as tmp:
        groups = endpoint_groups(lab)
        n_tcp = sum(len(t) * len(h) for (t, _), h in groups.items())
        n_udp = sum(len(u) * len(h) for (_, u), h in groups.items())
        print(f"lab endpoints: {sum(len(h) for h in groups.values())} hosts, {n_tcp} TCP and "
              f"{n_udp} UDP host:port pairs (nmap in {len(groups)} parallel groups); "
              f"probe budget {args.budget:g} s, medians of {args.runs}")
        ok = True
        for case in ("clean", "blackholed"):
            lab.clear_rules()
            if case == "blackholed":
                blackhole(lab)
            probe_walls, scans, nmap_walls = [], [], []
            measurements = 0
            for i in range(args.runs):
                wall, scan, measurements = time_probe(lab, args.budget,
                                                      Path(tmp) / f"{case}-{i}")
                probe_walls.append(wall)
                scans.append(scan)
                nmap_walls.append(time_nmap(lab, groups))
            probe, nmap = statistics.median(probe_walls), statistics.median(nmap_walls)
            print(f"{case:10s}: probe {probe:6.2f} s (scan {statistics.median(scans):.2f} s, "
                  f"{measurements} measurements) = {probe / args.budget:.2f} budgets; "
                  f"nmap {nmap:6.2f} s; probe/nmap = {probe / nmap:.2f}")
            if case == "clean":
                ok &= probe <= nmap
            else:
                ok &= probe / args.budget <= 2.0
        lab.clear_rules()
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
