"""Load on the collector: uploads per second and latency, SQLite beside PostgreSQL, and
one PostgreSQL collector beside two sharing the database (scale-out).

Usage: python benchmarks/collector_load.py [--clients 20] [--uploads 600] [--lines 50]

Starts ``voip-probe serve`` on 127.0.0.1 (loopback only): on SQLite (the default), then
on a throwaway PostgreSQL server (Debian's ``postgresql``, started by this script on a
unix socket, see probe.collector.throwaway_pg) once as one instance and once as two
instances (each with a data folder of its own) sharing a fresh database, the clients
spread over them in turn as a load balancer would. The same distinct, gzip-compressed
results files (following DESIGN.md "Results file") are uploaded by ``--clients``
concurrent clients to each set-up, then uploaded again (the "already stored" path).
Prints uploads per second and p50/p99 latency side by side, with the PostgreSQL/SQLite
and two/one instance ratios measured in this one run. Exits 1 if any upload was not
acknowledged with the expected id.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from probe.collector import throwaway_pg


def results_file(k: int, lines: int) -> bytes:
    rid = f"20161104T093000Z_bench_{k:06d}"
    start = f"2016-11-{1 + k % 28:02d} {k % 24:02d}:30:00"
    records = []
    for i in range(lines):
        function = ("messaging", "calls", "registration", "web")[i % 4]
        records.append({
            "measurement_start_time": start, "test_runtime": 0.05 + i / 1000,
            "probe_asn": f"AS{36903 + k % 5}", "probe_cc": "MA", "report_id": rid,
            "software_name": "voip-probe", "software_version": "0.1.0",
            "input": f"tcp://e{i}.whatsapp.net:443", "annotations": {"network_type": "mobile"},
            "test_name": "tcp_connect",
            "test_keys": {"failure": None if i % 3 else "generic_timeout_error",
                          "connect_ms": 12.5},
            "service": ("whatsapp", "skype", "viber", "duo")[i % 4], "function": function,
            "pass": "main", "schema_version": 1,
        })
    services = {s: {"status": "blocked", "functions": {
        "messaging": {"status": "ok", "reachable": 4, "total": 4, "methods": []},
        "calls": {"status": "blocked", "reachable": 0, "total": 3, "methods": ["stun_dpi"]}}}
        for s in ("whatsapp", "skype", "viber", "duo")}
    records.append({
        "record": "summary", "schema_version": 1, "report_id": rid,
        "measurement_start_time": start, "probe_asn": f"AS{36903 + k % 5}", "probe_cc": "MA",
        "network": {"status": "online", "asn": f"AS{36903 + k % 5}", "cc": "MA",
                    "type": "mobile"},
        "services": services, "measurements": lines, "results_file": f"{rid}.jsonl",
    })
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()


@dataclass
class Phase:
    uploads: int
    seconds: float
    latencies_ms: list[float]
    failures: int

    @property
    def per_s(self) -> float:
        return self.uploads / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


async def run_phase(urls: list[str], bodies: list[tuple[str, bytes]], clients: int,
                    expect: int) -> Phase:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    latencies: list[float] = []
    failures = 0

    async def worker(url: str) -> None:
        nonlocal failures
        async with httpx.AsyncClient(timeout=60) as client:
            while True:
                try:
                    digest, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await client.post(url + "/api/v1/results", content=body,
                                      headers={"Content-Encoding": "gzip"})
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != expect or r.json().get("id") != digest:
                    failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(clients)))
    return Phase(len(bodies), time.perf_counter() - started, latencies, failures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes],
                                                                      str]:
    port = free_port()
    cmd = [sys.executable, "-m", "probe", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--rate-limit", "0", "--log-level", "warning"]
    if database_url:
        cmd += ["--database-url", database_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve failed: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("serve did not come up")


def bench(name: str, database_url: str | None, bodies: list[tuple[str, bytes]],
          clients: int, instances: int = 1) -> tuple[Phase, Phase]:
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []
        try:
            for i in range(instances):
                data_dir = Path(tmp) / f"instance-{i}"
                data_dir.mkdir()
                proc, url = start_collector(data_dir, database_url)
                procs.append(proc)
                urls.append(url)
            new = asyncio.run(run_phase(urls, bodies, clients, 201))
            again = asyncio.run(run_phase(urls, bodies, clients, 200))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    print(f"  {name}: {new.uploads} new uploads in {new.seconds:.1f} s, "
          f"{again.uploads} repeats in {again.seconds:.1f} s", file=sys.stderr)
    return new, again


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--uploads", type=int, default=600, help="distinct files per back end")
    ap.add_argument("--lines", type=int, default=50, help="measurements per file")
    args = ap.parse_args()

    raw = [results_file(k, args.lines) for k in range(args.uploads)]
    bodies = [(hashlib.sha256(b).hexdigest(), gzip.compress(b, 6)) for b in raw]
    size_kib = statistics.mean(len(b) for b in raw) / 1024
    print(f"{args.uploads} files of {args.lines} measurements ({size_kib:.0f} KiB each, "
          f"gzip), {args.clients} concurrent clients, loopback, {os.cpu_count()} CPUs",
          file=sys.stderr)

    results: dict[str, tuple[Phase, Phase]] = {}
    results["SQLite"] = bench("SQLite", None, bodies, args.clients)
    reason = throwaway_pg.unavailable_reason()
    if reason is None:
        with throwaway_pg.ThrowawayPostgres() as pg:
            results["PostgreSQL"] = bench("PostgreSQL", pg.create_database("bench"), bodies,
                                          args.clients)
            results["PostgreSQL x2"] = bench("PostgreSQL x2", pg.create_database("bench2"),
                                             bodies, args.clients, instances=2)
    else:
        print(f"PostgreSQL skipped: {reason}", file=sys.stderr)

    names = list(results)
    print(f"\n{'':28}" + "".join(f"{n:>14}" for n in names)
          + ("   PostgreSQL/SQLite   two/one instance" if len(names) == 3 else ""))
    rows = [
        ("new uploads / s", lambda p: p[0].per_s),
        ("new p50 latency (ms)", lambda p: p[0].pct(0.50)),
        ("new p99 latency (ms)", lambda p: p[0].pct(0.99)),
        ("repeat uploads / s", lambda p: p[1].per_s),
        ("repeat p50 latency (ms)", lambda p: p[1].pct(0.50)),
        ("repeat p99 latency (ms)", lambda p: p[1].pct(0.99)),
    ]
    for label, get in rows:
        values = [get(results[n]) for n in names]
        line = f"{label:28}" + "".join(f"{v:14.1f}" for v in values)
        if len(values) == 3:
            line += f"   {values[1] / values[0]:17.2f}x   {values[2] / values[1]:15.2f}x"
        print(line)
    failures = sum(p.failures for pair in results.values() for p in pair)
    print(f"\nnot acknowledged as expected: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
