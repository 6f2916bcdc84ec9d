"""What the reflector's cookie check costs per datagram (probe/reflector.py).

Usage: python benchmarks/reflector_cost.py [COUNT]   (default 200000 datagrams per kind)

Times, side by side in one run, the reflector's decision (no I/O) for: an echo as it was
before cookies (the per-source bucket, then the datagram back: the baseline), a proven
echo (token checked: two cookies and two MACs), a datagram without a token (dropped), a
forged-source flood of distinct addresses, and a cookie request. Prints each as a ratio
to the baseline.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from probe import reflector
from probe.checks._payloads import random_bytes


def per_datagram(fn: Callable[[int], object], count: int) -> float:
    t0 = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - t0) / count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int, nargs="?", default=200_000)
    n = ap.parse_args().count
    resp = reflector.Responder(rate=1e12, burst=1e12, unproven_rate=1e12,
                               unproven_burst=1e12)
    limiter = reflector.SourceLimiter(1e12, 1e12)
    client = ("203.0.113.7", 40000)
    cookie = resp.cookie(client[0])
    proven = reflector.with_token(random_bytes(172), cookie, "random")
    unproven = os.urandom(172)
    hello = reflector.hello()
    now = time.monotonic

    def before(i: int) -> object:  # the old decision: bucket, then the echo
        return proven if limiter.allow(client[0], now()) else None

    figures = {
        "echo before cookies (baseline)": per_datagram(before, n),
        "proven echo (token checked)": per_datagram(lambda i: resp.reply(proven, client), n),
        "no token (dropped)": per_datagram(lambda i: resp.reply(unproven, client), n),
        "forged flood, distinct sources": per_datagram(
            lambda i: resp.reply(unproven, (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                                            1024 + i % 60000)), n),
        "cookie request": per_datagram(lambda i: resp.reply(hello, client), n),
    }
    base = figures["echo before cookies (baseline)"]
    print(f"{n} datagrams per kind; decision time per datagram, as a ratio to the baseline")
    for name, t in figures.items():
        print(f"  {name:34s} {t * 1e6:7.2f} us  x{t / base:5.2f}")
    print(f"  bucket table after the flood: {len(resp.limiter)} source(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
