"""Fuzz the STUN parser (probe/stun.py) with random and mutated messages.

Usage: python benchmarks/fuzz_stun.py [COUNT] [--seed N]   (default 100000 of each kind)

Feeds COUNT random byte strings and COUNT mutated valid messages (bit flips, byte
overwrites, truncation, extension, length-field fix-ups, inserted attributes) to
``stun.parse``. Anything other than success or ``StunParseError`` is a crash. Prints how
many were tried, parsed and rejected per kind, the throughput ratio of the two kinds
measured in this run, and exits 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback

from probe import stun

ATTR_POOL = (
    0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x000D, 0x0014, 0x0015, 0x0019, 0x0020,
    0x8022, 0x8028, 0x802B, 0x4000, 0x4007, 0x8054, 0x8095, 0x8070, 0x8055, 0xFF03,
)


def seed_messages(rng: random.Random) -> list[bytes]:
    seeds = []
    for _ in range(200):
        txid = rng.randbytes(12)
        msg = stun.StunMessage(rng.choice((0x0001, 0x0101, 0x0111, 0x0113, 0x0800, 0x0801)),
                               txid)
        if rng.random() < 0.7:
            v4 = rng.random() < 0.6
            host = (f"203.0.113.{rng.randrange(256)}" if v4
                    else f"2001:db8::{rng.randrange(65536):x}")
            msg.add(stun.ATTR_XOR_MAPPED_ADDRESS,
                    stun.encode_xor_address(host, rng.randrange(65536), txid))
        if rng.random() < 0.3:
            msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(401, "Unauthorized"))
        for _ in range(rng.randrange(4)):
            msg.add(rng.choice(ATTR_POOL), rng.randbytes(rng.randrange(0, 24)))
        seeds.append(msg.encode(fingerprint=rng.random() < 0.7))
    return seeds


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2:
            del buf[rng.randrange(len(buf) + 1):]
        elif op == 3:
            buf += rng.randbytes(rng.randrange(1, 16))
        elif op == 4 and len(buf) >= 20:
            buf += struct.pack("!HH", rng.choice(ATTR_POOL), rng.randrange(0, 40))
            buf += rng.randbytes(rng.randrange(0, 40))
        if rng.random() < 0.5 and len(buf) >= 4:  # keep the length field plausible
            buf[2:4] = struct.pack("!H", max(0, len(buf) - 20) & 0xFFFF)
    return bytes(buf)


def run(kind: str, inputs, count: int) -> tuple[int, int, int, float]:  # type: ignore[no-untyped-def]
    parsed = rejected = crashed = 0
    start = time.perf_counter()
    for _ in range(count):
        data = next(inputs)
        try:
            stun.parse(data)
            parsed += 1
        except stun.StunParseError:
            rejected += 1
        except Exception:
            crashed += 1
            if crashed <= 3:
                print(f"CRASH ({kind}) on {data.hex()}", file=sys.stderr)
                traceback.print_exc()
    return parsed, rejected, crashed, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", nargs="?", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    seeds = seed_messages(rng)

    def random_inputs():  # type: ignore[no-untyped-def]
        while True:
            n = rng.choice((rng.randrange(0, 20), rng.randrange(20, 200)))
            data = bytearray(rng.randbytes(n))
            if n >= 8 and rng.random() < 0.5:  # give random bytes a STUN-looking header
                data[0] &= 0x3F
                data[4:8] = b"\x21\x12\xa4\x42"
                data[2:4] = struct.pack("!H", (n - 20) & 0xFFFF if n >= 20 else n)
            yield bytes(data)

    def mutated_inputs():  # type: ignore[no-untyped-def]
        while True:
            yield mutate(rng.choice(seeds), rng)

    print(f"fuzz_stun: seed {seed}, {args.count} random + {args.count} mutated messages")
    totals = [0, 0, 0]
    rates = {}
    for kind, gen in (("random", random_inputs()), ("mutated", mutated_inputs())):
        parsed, rejected, crashed, secs = run(kind, gen, args.count)
        rates[kind] = args.count / secs if secs else float("inf")
        print(f"  {kind:8s} tried {args.count:>8d}  parsed {parsed:>7d}  "
              f"rejected {rejected:>7d}  crashed {crashed}")
        totals = [totals[0] + parsed, totals[1] + rejected, totals[2] + crashed]
    tried = 2 * args.count
    print(f"  total    tried {tried:>8d}  parsed {totals[0]:>7d}  rejected {totals[1]:>7d}  "
          f"crashed {totals[2]}")
    print(f"  throughput ratio mutated/random (same run): "
          f"{rates['mutated'] / rates['random']:.2f}")
    if totals[2]:
        print(f"FAIL: {totals[2]} inputs crashed the parser (seed {seed})")
        return 1
    print("OK: no input crashed the parser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
