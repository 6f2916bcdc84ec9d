"""Memory of the collector under gzip bombs, and the rate limiter's cost per request.

Usage: python benchmarks/collector_memory.py [--bombs 40] [--baseline TREE]
       [--baseline-bombs 2]

Starts ``voip-probe serve`` on 127.0.0.1 (loopback only, SQLite, ``--max-upload-mb 32``)
and sends ``--bombs`` concurrent gzip bombs of each kind: the one of issue 14 (32 KiB of
gzip inflating to ``b"ab\\n" * 11_000_000``), valid measurement lines repeated past the
limit, and one endless line. Prints each answer's status and the server's peak resident
memory (``VmHWM`` of /proc/PID/status), per kind, on a fresh server each.

With ``--baseline TREE`` (a checkout of older code, e.g. ``git worktree add --detach
/tmp/old <commit>``), the same is done side by side against that tree's ``serve``, with
``--baseline-bombs`` concurrent bombs on both (the old code took ~750 MiB a bomb, so
keep that small), and the peak ratios old/new are printed; then the per-request time of
the rate limiter with 100,001 known clients, old beside new.

Exits 1 when a bomb got anything but a 4xx or the server passed 256 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MIB = 256


def bombs() -> dict[str, bytes]:
    line = json.dumps({
        "measurement_start_time": "2016-11-04 09:30:00", "test_runtime": 0.1,
        "probe_asn": "AS36903", "probe_cc": "MA", "report_id": "bomb",
        "software_name": "voip-probe", "software_version": "0.1.0",
        "input": "tcp://e1.whatsapp.net:443", "test_name": "tcp_connect",
        "test_keys": {"failure": None}, "service": "whatsapp", "function": "messaging",
        "schema_version": 1}).encode() + b"\n"
    return {
        "issue 14 (ab lines)": gzip.compress(b"ab\n" * 11_000_000, compresslevel=9),
        "valid lines": gzip.compress(line * (40 * 2**20 // len(line)), compresslevel=9),
        "one endless line": gzip.compress(b"{" + b" " * (40 * 2**20), compresslevel=9),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class Server:
    def __init__(self, tree: Path, data_dir: Path) -> None:
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), "--rate-limit", "0", "--max-upload-mb", "32",
             "--log-level", "warning"],
            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"serve ({tree}) did not come up")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def storm(url: str, body: bytes, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as client:
        async def one() -> int:
            try:
                r = await client.post(url + "/api/v1/results", content=body,
                                      headers={"Content-Encoding": "gzip"})
                return r.status_code
            except httpx.HTTPError:
                return 0  # the connection dropped (a server out of memory)
        return list(await asyncio.gather(*[one() for _ in range(n)]))


def run(tree: Path, body: bytes, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="collector-memory-") as tmp:
        server = Server(tree, Path(tmp) / "data")
        try:
            idle = peak_rss_mib(server.proc.pid)
            started = time.perf_counter()
            codes = asyncio.run(storm(server.url, body, n))
            elapsed = time.perf_counter() - started
            peak = peak_rss_mib(server.proc.pid)
        finally:
            server.stop()
    return {"codes": codes, "idle": idle, "peak": peak, "s": elapsed}


def describe(codes: list[int]) -> str:
    counts: dict[int, int] = {}
    for c in codes:
        counts[c] = counts.get(c, 0) + 1
    return ", ".join(f"{n}x {c or 'dropped'}" for c, n in sorted(counts.items()))


def limiter_cost(tree: Path, clients: int = 100_001, checks: int = 200) -> float:
    """Mean seconds per check with ``clients`` known clients, none of them idle long
    enough to be forgotten (the old table scanned them all on every check)."""
    spec = importlib.util.spec_from_file_location(
        f"ratelimit_{abs(hash(tree))}", tree / "probe/collector/ratelimit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    limiter = module.RateLimiter(per_minute=600)
    for i in range(clients):
        limiter.check(f"c{i}", 10.0)
    started = time.perf_counter()
    for i in range(checks):
        limiter.check(f"new-{i}", 10.0 + i * 1e-6)
    return (time.perf_counter() - started) / checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bombs", type=int, default=40)
    ap.add_argument("--baseline", type=Path, help="a source tree of older code")
    ap.add_argument("--baseline-bombs", type=int, default=2)
    args = ap.parse_args()
    ok = True
    kinds = bombs()
    print(f"gzip bombs: {', '.join(f'{k} {len(b) // 1024} KiB' for k, b in kinds.items())}")
    print(f"\n{args.bombs} concurrent bombs of each kind, this tree (limit {LIMIT_MIB} MiB):")
    for kind, body in kinds.items():
        r = run(ROOT, body, args.bombs)
        good = all(400 <= c < 500 for c in r["codes"]) and r["peak"] < LIMIT_MIB
        ok &= good
        print(f"  {kind:22} peak RSS {r['peak']:6.1f} MiB (idle {r['idle']:.1f}), "
              f"{r['s']:5.1f} s, answers: {describe(r['codes'])}"
              f"{'' if good else '  <-- FAILS'}")
    if args.baseline is not None:
        n = args.baseline_bombs
        print(f"\n{n} concurrent bombs of issue 14's kind, side by side:")
        body = kinds["issue 14 (ab lines)"]
        old = run(args.baseline.resolve(), body, n)
        new = run(ROOT, body, n)
        for name, r in (("baseline", old), ("this tree", new)):
            print(f"  {name:10} peak RSS {r['peak']:7.1f} MiB (idle {r['idle']:.1f}), "
                  f"{r['s']:5.1f} s, answers: {describe(r['codes'])}")
        grew = (old["peak"] - old["idle"]) / max(0.1, new["peak"] - new["idle"])
        print(f"  peak RSS ratio baseline/this tree: {old['peak'] / new['peak']:.1f}x; "
              f"growth above idle: {grew:.0f}x")
        old_s = limiter_cost(args.baseline.resolve())
        new_s = limiter_cost(ROOT)
        print(f"\nrate limiter, one request with 100,001 known clients: baseline "
              f"{old_s * 1e3:.2f} ms, this tree {new_s * 1e3:.4f} ms "
              f"({old_s / new_s:.0f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
