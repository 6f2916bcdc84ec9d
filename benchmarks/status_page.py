"""The status page at scale: render time of ``/`` and of one network's page, SQLite
beside PostgreSQL, from one run.

Usage: python benchmarks/status_page.py [--measurements 1000000] [--probes 2000]
                                        [--lines 50] [--repeat 5] [--threads 4]

Generates a year of results files (DESIGN.md "Results file") from ``--probes`` probes,
each with its own pseudonym, on 160 networks (20 countries, 4 ASNs, mobile and fixed;
a few networks hold most probes): ``--measurements`` measurement lines in all, ``--lines``
per file, so 1,000,000 / 50 = 20,000 runs of 20 service functions each. Probes run in
sessions (5 runs, 30 to 90 minutes apart) at random times of the year. About 40 % of
the networks ban calls of some services for a while (``stun_dpi``); 3 % of runs are
inconclusive, 1 % have a stray failure, and 5 % of the probes flap. Files arrive
roughly in time order, 5 % of them late (as from a spool).

Each back end (SQLite in a temporary folder; a throwaway PostgreSQL server on a unix
socket, see probe.collector.throwaway_pg) receives every file through
``Storage.store`` (validation excluded: files are parsed once beforehand), from
``--threads`` threads, which keeps the status tables up to date upload by upload. Then:

- ``/`` and the busiest network's page are rendered ``--repeat`` times from the status
  tables (uncached: the median is printed), and served from the page cache;
- for comparison, what a page would cost without the aggregation: every run of every
  probe read back (``status_obs``) and the crowd rule applied to all of it.

Prints the figures and the PostgreSQL/SQLite ratios, all measured in this run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.analysis import crowd
from probe.collector import throwaway_pg
from probe.collector.aggregate import StatusReader
from probe.collector.filters import Filters
from probe.collector.page import PageCache, PageRequest, render_network, render_overview
from probe.collector.storage import Storage, StorageUnavailable
from probe.collector.validate import Upload, parse_upload

SERVICES = ("whatsapp", "skype", "viber", "duo")
FUNCTIONS = ("dns", "messaging", "registration", "web", "calls")
COUNTRIES = ("MA", "EG", "AE", "SA", "IR", "PK", "CN", "TR", "ET", "VN", "BY", "CU", "QA",
             "OM", "JO", "SY", "IQ", "KZ", "UZ", "VE")
YEAR_S = 365 * 86400
START = 1451606400  # 2016-01-01 00:00:00 UTC


@dataclass
class Network:
    cc: str
    asn: str
    network_type: str
    bans: dict[str, tuple[float, float]]  # service -> calls banned from, until


@dataclass
class Probe:
    pseudonym: str
    network: Network
    flapping: bool


def plan(probes: int, rng: random.Random) -> list[Probe]:
    networks = []
    for i, cc in enumerate(COUNTRIES):
        for j in range(4):
            for network_type in ("mobile", "fixed"):
                bans = {}
                if rng.random() < 0.4:
                    begin = START + rng.uniform(0.1, 0.6) * YEAR_S
                    for service in rng.sample(SERVICES, rng.randint(1, 3)):
                        bans[service] = (begin + rng.uniform(0, 3) * 86400,
                                         begin + rng.uniform(60, 200) * 86400)
                networks.append(Network(cc, f"AS{10000 + i * 10 + j}", network_type, bans))
    weights = [1.0 / (k + 1) for k in range(len(networks))]  # a few big networks
    out = []
    for _ in range(probes):
        pseudonym = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(16))
        out.append(Probe(pseudonym, rng.choices(networks, weights)[0], rng.random() < 0.05))
    return out


def results_file(probe: Probe, at: float, lines: int, k: int, rng: random.Random) -> bytes:
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    net = probe.network
    rid = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(at))}_bench_{k:07d}"
    inconclusive = rng.random() < 0.03
    services = {}
    for service in SERVICES:
        functions = {}
        for function in FUNCTIONS:
            banned = function == "calls" and service in net.bans and \
                net.bans[service][0] <= at < net.bans[service][1]
            if probe.flapping:
                banned = rng.random() < 0.5
            elif rng.random() < 0.01:
                banned = not banned
            status = "inconclusive" if inconclusive else ("blocked" if banned else "ok")
            functions[function] = {"status": status, "reachable": 0 if banned else 3,
                                   "total": 3, "methods": ["stun_dpi"] if banned else []}
        services[service] = {"status": "ok", "functions": functions}
    records = []
    for i in range(lines):
        records.append({
            "measurement_start_time": start, "test_runtime": 0.05, "probe_asn": net.asn,
            "probe_cc": net.cc, "report_id": rid, "software_name": "voip-probe",
            "software_version": "0.1.0", "input": f"tcp://e{i}.example:443",
            "annotations": {"network_type": net.network_type,
                            "probe_pseudonym": probe.pseudonym},
            "test_name": "tcp_connect", "test_keys": {"failure": None},
            "service": SERVICES[i % 4], "function": FUNCTIONS[i % 5], "pass": "main",
            "schema_version": 1})
    records.append({
        "record": "summary", "schema_version": 1, "report_id": rid,
        "measurement_start_time": start, "probe_asn": net.asn, "probe_cc": net.cc,
        "network": {"status": "online", "asn": net.asn, "cc": net.cc,
                    "type": net.network_type},
        "services": services, "measurements": lines})
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()


def generate(args: argparse.Namespace) -> list[Upload]:
    """Each probe runs in sessions (``voip-probe watch`` for a few hours: a run every
    30 to 90 minutes, 5 runs), sessions at random times of the year."""
    rng = random.Random(17)
    probes = plan(args.probes, rng)
    runs: list[tuple[float, Probe]] = []
    total = args.measurements // args.lines
    while len(runs) < total:
        for probe in probes:
            at = START + rng.random() * (YEAR_S - 86400)
            for _ in range(5):
                runs.append((at, probe))
                at += rng.uniform(1800, 5400)
            if len(runs) >= total:
                break
    runs = sorted(runs[:total], key=lambda r: r[0])
    for i in range(len(runs)):  # 5 % arrive late (from a spool): swapped with a later one
        if rng.random() < 0.05:
            j = min(len(runs) - 1, i + rng.randint(1, 200))
            runs[i], runs[j] = runs[j], runs[i]
    return [parse_upload(results_file(probe, at, args.lines, k, rng))
            for k, (at, probe) in enumerate(runs)]


def ingest(storage: Storage, uploads: list[Upload], threads: int) -> tuple[float, int]:
    """Store every upload from ``threads`` threads; returns the seconds it took and how
    many stores were retried (the database busy: the API's 503, which a client retries)."""
    queue: Iterator[Upload] = iter(uploads)
    lock = threading.Lock()
    errors: list[BaseException] = []
    retries = [0]

    def work() -> None:
        while True:
            with lock:
                up = next(queue, None)
            if up is None:
                return
            for attempt in range(5):
                try:
                    storage.store(up)
                    break
                except StorageUnavailable as exc:
                    with lock:
                        retries[0] += 1
                    if attempt == 4:
                        errors.append(exc)
                        return
                    time.sleep(0.5 * 2 ** attempt)
                except BaseException as exc:
                    errors.append(exc)
                    return

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started, retries[0]


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def recompute_everything(storage: Storage, rule: crowd.Rule) -> int:
    """Without the aggregation: every run read back, the rule applied to all of it."""
    runs: dict[tuple[str, ...], dict[str, list[crowd.Observation]]] = {}
    with storage.db.connection() as conn:
        rows = conn.fetchall("SELECT cc, asn, network_type, service, function, probe, at, "
                             "status, methods FROM status_obs")
    for r in rows:
        runs.setdefault(tuple(r[:5]), {}).setdefault(r[5], []).append(
            crowd.Observation(r[6], r[7], tuple(m for m in r[8].split(",") if m)))
    return sum(len(crowd.analyse(probes, rule).events) for probes in runs.values())


def timed(spent: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, adding the seconds each call takes to ``spent[0]``."""
    lock = threading.Lock()

    def call(*a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            with lock:
                spent[0] += time.perf_counter() - started

    return call


def measure(name: str, storage: Storage, uploads: list[Upload], args: argparse.Namespace
            ) -> dict[str, float]:
    rule = storage.status.rule
    print(f"{name}: storing {len(uploads)} files ...", file=sys.stderr, flush=True)
    in_store, in_status = [0.0], [0.0]
    storage.store = timed(in_store, storage.store)  # type: ignore[method-assign]
    storage.status.add = timed(in_status, storage.status.add)  # type: ignore[method-assign]
    seconds, retries = ingest(storage, uploads, args.threads)
    reader = StatusReader(storage.db)
    everything = reader.current(Filters())
    busiest = max(everything, key=lambda c: c["runs"])
    network = (busiest["cc"], busiest["asn"], busiest["network_type"])
    overview = PageRequest(Filters())
    one = PageRequest(Filters(), network)
    html_overview = render_overview(reader, overview, rule)
    html_network = render_network(reader, one, rule) or ""
    cache = PageCache(min_age_s=0)  # every request asks whether the data changed
    cache.get("/", reader.generation, lambda: render_overview(reader, overview, rule))
    events = len(reader.events(Filters(), limit=10**9))
    figures = {
        "runs stored per second": len(uploads) / seconds,
        "stores retried (database busy)": float(retries),
        "status aggregation per upload (ms)": in_status[0] / len(uploads) * 1000,
        "aggregation share of store time (%)": 100 * in_status[0] / in_store[0],
        "/ rendered (ms)": median_ms(lambda: render_overview(reader, overview, rule),
                                     args.repeat),
        "network page rendered (ms)": median_ms(
            lambda: render_network(reader, one, rule), args.repeat),
        "/ from the page cache (ms)": median_ms(
            lambda: cache.get("/", reader.generation,
                              lambda: render_overview(reader, overview, rule)), args.repeat),
        "recompute from every run (ms)": median_ms(
            lambda: recompute_everything(storage, rule), max(1, args.repeat // 2)),
        "events": float(events),
        "/ size (kB)": len(html_overview) / 1000,
        "network page size (kB)": len(html_network) / 1000,
        "busiest network runs": float(busiest["runs"]),
    }
    print(f"{name}: busiest network {' '.join(network)}; cache renders {cache.renders}",
          file=sys.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measurements", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=50, help="measurement lines per file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    started = time.perf_counter()
    uploads = generate(args)
    print(f"generated {len(uploads)} files, {len(uploads) * args.lines} measurements from "
          f"{args.probes} probes in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="status-bench-") as tmp:
        sqlite = Storage(Path(tmp) / "sqlite")
        sqlite.open()
        try:
            results["SQLite"] = measure("SQLite", sqlite, uploads, args)
        finally:
            sqlite.close()
        reason = throwaway_pg.unavailable_reason()
        if reason is None:
            with throwaway_pg.ThrowawayPostgres() as pg:
                storage = Storage(Path(tmp) / "pg", pg.create_database("bench"))
                storage.open()
                try:
                    results["PostgreSQL"] = measure("PostgreSQL", storage, uploads, args)
                finally:
                    storage.close()
        else:
            print(f"PostgreSQL skipped: {reason}", file=sys.stderr)
    names = list(results)
    print(f"status page: {len(uploads)} files, {len(uploads) * args.lines} measurements, "
          f"{args.probes} probes, {args.threads} upload threads")
    print(f"{'':34}" + "".join(f"{n:>14}" for n in names)
          + ("   PostgreSQL/SQLite" if len(names) == 2 else ""))
    for key in results[names[0]]:
        values = [results[n][key] for n in names]
        line = f"{key:34}" + "".join(f"{v:14.1f}" for v in values)
        if len(values) == 2 and values[0]:
            line += f"{values[1] / values[0]:14.2f}"
        print(line)
    for name in names:
        r = results[name]
        print(f"{name}: recompute / rendered /: "
              f"{r['recompute from every run (ms)'] / r['/ rendered (ms)']:.0f}x; "
              f"rendered / cached /: {r['/ rendered (ms)'] / r['/ from the page cache (ms)']:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
