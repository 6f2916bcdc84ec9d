"""Timeline at scale: 1,000,000 measurements across many files and networks.

Generates results files (DESIGN.md "Results file") in a temporary folder: ``--networks``
networks (ASN x network type), runs every 30 minutes on each, ``--per-file``
measurements per run, calls blocked during a ban period with intermittent leaks, and a
few crashed files without a summary line. Then, side by side in one process:

1. ``timeline``: :func:`probe.analysis.timeline.build_timeline` (what ``voip-probe timeline``
   runs), timed, then run again under tracemalloc for its peak Python memory;
2. the CLI end to end in a subprocess (``voip-probe timeline DIR --json``), timed, with
   its peak resident memory (getrusage of the child);
3. a baseline that parses every line of every file (``probe.results.iter_records``),
   i.e. what a timeline that loads measurements would at least cost.

Prints measurements per second, peak memory and its ratio to the total size of the
files, and the speed ratio of the timeline to the full parse. Nothing is asserted: the
goal (under 5 s on 2 cores, memory bounded) is read from the output.

    python benchmarks/timeline_scale.py [--measurements 1000000] [--per-file 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probe.analysis.timeline import Rule, build_timeline
from probe.results import expand_paths, iter_records

SERVICES = {"whatsapp": ("dns", "messaging", "registration", "web", "calls"),
            "skype": ("dns", "messaging", "web", "calls"),
            "viber": ("dns", "messaging", "calls"),
            "duo": ("dns", "web", "calls")}
TYPES = ("mobile", "fixed", "wifi")


def _line(base: dict, service: str, function: str, k: int, failed: bool) -> str:
    return json.dumps({**base, "input": f"udp://{service}-{k}.example.net:3478",
                       "test_name": "stun_binding", "service": service, "function": function,
                       "pass": "main", "test_runtime": 0.031,
                       "test_keys": {"failure": "generic_timeout_error" if failed else None,
                                     "rtt_ms": None if failed else 41.5}},
                      separators=(",", ":"))


def generate(folder: Path, measurements: int, per_file: int, networks: int,
             crashed_every: int, seed: int) -> tuple[int, int, int]:
    """Write the files; returns (files, measurements, bytes)."""
    rng = random.Random(seed)
    files = max(1, measurements // per_file)
    keys = [(s, f) for s, fns in SERVICES.items() for f in fns]
    nets = [(f"AS{36900 + i // len(TYPES)}", TYPES[i % len(TYPES)]) for i in range(networks)]
    t0 = datetime(2016, 1, 1, tzinfo=UTC)
    written = total_bytes = 0
    for n in range(files):
        asn, net_type = nets[n % networks]
        run_no = n // networks
        runs_per_net = files // networks or 1
        start = t0 + timedelta(minutes=30 * run_no, seconds=n % networks)
        stamp = start.strftime("%Y-%m-%d %H:%M:%S")
        # Calls are banned in the middle third of each network's runs, with 10% leaks,
        # and fail by accident 5% of the time outside it.
        banned = runs_per_net // 3 <= run_no < 2 * runs_per_net // 3
        calls_blocked = (rng.random() > 0.1) if banned else (rng.random() < 0.05)
        report_id = f"{n:08x}{rng.getrandbits(96):024x}"
        base = {"measurement_start_time": stamp, "probe_asn": asn, "probe_cc": "MA",
                "report_id": report_id, "software_name": "voip-probe",
                "software_version": "0.1.0", "annotations": {"network_type": net_type},
                "schema_version": 1}
        lines = []
        for k in range(per_file):
            service, function = keys[k % len(keys)]
            lines.append(_line(base, service, function, k,
                               function == "calls" and calls_blocked))
        services = {}
        for service, fns in SERVICES.items():
            functions = {}
            for function in fns:
                blocked = function == "calls" and calls_blocked
                functions[function] = {"status": "blocked" if blocked else "ok",
                                       "reachable": 0 if blocked else 8, "total": 8,
                                       "methods": ["stun_dpi"] if blocked else []}
            services[service] = {"status": "blocked" if calls_blocked else "ok",
                                 "functions": functions}
        summary = {"record": "summary", "schema_version": 1, "report_id": report_id,
                   "measurement_start_time": stamp, "test_runtime": 21.0, "probe_asn": asn,
                   "probe_cc": "MA", "results_file": "", "network": {
                       "status": "online", "asn": asn, "cc": "MA", "type": net_type},
                   "services": services}
        if crashed_every and n % crashed_every == crashed_every - 1:
            body = "\n".join(lines) + "\n" + lines[-1][:50]  # torn, no summary
        else:
            body = "\n".join(lines) + "\n" + json.dumps(summary, separators=(",", ":")) + "\n"
        name = f"{start:%Y%m%dT%H%M%SZ}_{asn}_{net_type}_{report_id[:8]}.jsonl"
        data = body.encode()
        (folder / name).write_bytes(data)
        written += per_file
        total_bytes += len(data)
    return files, written, total_bytes


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", type=int, default=1_000_000)
    ap.add_argument("--per-file", type=int, default=200)
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--crashed-every", type=int, default=500,
                    help="every Nth file has no summary line (0: none)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-baseline", action="store_true", help="skip the full-parse baseline")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="timeline-scale-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        files, measurements, size = generate(folder, args.measurements, args.per_file,
                                             args.networks, args.crashed_every, args.seed)
        print(f"generated {measurements:,} measurements in {files:,} files on "
              f"{args.networks} networks, {_mib(size)}, in {time.perf_counter() - t:.1f} s")

        warnings: list[str] = []
        t = time.perf_counter()
        timeline = build_timeline(expand_paths([folder]), Rule(), warnings.append)
        lib_s = time.perf_counter() - t
        # Memory in a second pass: tracing allocations slows Python down several times.
        tracemalloc.start()
        build_timeline(expand_paths([folder]), Rule(), lambda _m: None)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        events = sum(len(n.events) for n in timeline.networks)
        print(f"timeline (library): {lib_s:.2f} s, {measurements / lib_s:,.0f} measurements/s, "
              f"{timeline.runs:,} runs, {len(timeline.networks)} networks, {events} events, "
              f"{len(warnings)} warnings")
        print(f"  peak traced memory {_mib(peak)}; peak / total file size = {peak / size:.4f}; "
              f"{peak / max(timeline.runs, 1) / 1024:.2f} KiB per run, "
              f"{peak / measurements:.1f} bytes per measurement")

        cli = [sys.executable, "-m", "probe", "timeline", str(folder), "--json"]
        t = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, check=False,
                              env={**os.environ, "COLUMNS": "120"})
        cli_s = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        cli_events = sum(len(n["events"]) for n in json.loads(proc.stdout)["networks"])
        print(f"timeline (CLI, subprocess, exit {proc.returncode}): {cli_s:.2f} s, "
              f"{measurements / cli_s:,.0f} measurements/s, {cli_events} events")
        print(f"  peak resident memory {_mib(rss)}; peak RSS / total file size = "
              f"{rss / size:.4f}")

        if not args.no_baseline:
            t = time.perf_counter()
            lines = 0
            for path in expand_paths([folder]):
                for _rec in iter_records(path):
                    lines += 1
            full_s = time.perf_counter() - t
            print(f"baseline full parse of every line: {full_s:.2f} s, "
                  f"{lines / full_s:,.0f} lines/s")
            print(f"ratio full parse / timeline = {full_s / lib_s:.1f}x")


if __name__ == "__main__":
    main()
