"""What sharing client SSL contexts buys: a burst of TLS handshakes on loopback, with a
fresh context per handshake (as before) beside the shared contexts of ``probe.net``.

Usage: python benchmarks/tls_contexts.py [--handshakes 40] [--rounds 3]

Starts the tests' loopback TLS server (its own throwaway CA, 127.0.0.1 only), then runs
the same burst of concurrent ``RealNetwork.tls_handshake`` calls both ways, alternating,
while a ticker measures how late the event loop wakes it (every stall delays every other
check's timers: DNS retransmissions, STUN timeouts). Prints the wall time and the worst
event-loop stall of each way and the fresh/shared ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import probe.net as net  # noqa: E402
from tests.helpers.tlsserver import LoopbackTlsServer  # noqa: E402

SHARED = net.make_ssl_context


def fresh(ca_bundle: str | None, verify: bool = True, alpn: Sequence[str] = ()
          ) -> ssl.SSLContext:
    """The context as it was built before: one per handshake (the shared builder without
    its cache)."""
    return net._ssl_context.__wrapped__(ca_bundle, None, verify, tuple(alpn))


async def burst(port: int, ca: str, n: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            t = loop.time()
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - t - 0.005)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    real = net.RealNetwork()
    infos = await asyncio.gather(*(real.tls_handshake("127.0.0.1", port, "lab.test", 10.0,
                                                       ca_bundle=ca) for _ in range(n)),
                                 return_exceptions=True)
    wall = time.perf_counter() - t0
    done = True
    await tick
    failed = [i for i in infos if isinstance(i, BaseException)]
    if failed:
        raise SystemExit(f"tls_contexts: {len(failed)} handshakes failed: {failed[0]!r}")
    return wall, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"fresh": [], "shared": []}
    with tempfile.TemporaryDirectory() as tmp, \
            LoopbackTlsServer(["lab.test"], Path(tmp)) as server:
        ca = str(server.ca_file)
        for _ in range(args.rounds):
            for way, maker in (("fresh", fresh), ("shared", SHARED)):
                net.make_ssl_context = maker
                results[way].append(asyncio.run(burst(server.port, ca, args.handshakes)))
        net.make_ssl_context = SHARED
    med = {way: (statistics.median(w for w, _ in r), statistics.median(s for _, s in r))
           for way, r in results.items()}
    for way, (wall, stall) in med.items():
        print(f"{way:>6}: {args.handshakes} handshakes in {wall * 1000:7.1f} ms, "
              f"worst event-loop stall {stall * 1000:6.1f} ms (median of {args.rounds})")
    print(f"fresh/shared: wall x{med['fresh'][0] / med['shared'][0]:.1f}, "
          f"worst stall x{med['fresh'][1] / max(med['shared'][1], 1e-6):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
