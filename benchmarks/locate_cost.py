"""What ``--deep`` costs: ``voip-probe run`` beside ``voip-probe run --deep`` in the lab.

Usage (root, the lab's tools installed): python benchmarks/locate_cost.py [--rounds 2]

Brings up the censorship lab (tests/lab/mini_targets.toml and locate_targets.toml, censor at
hop 2), applies two rules at once (STUN DPI and RST injection on e1.whatsapp.net:443), then
runs the same scan with and without ``--deep`` alternately in the client namespace. Prints
the wall time of each and the deep/plain ratio measured in this one run, the number of
endpoints located and the seconds per located endpoint. Exits 1 if a deep run did not
place every finding at the lab's censor hop. All traffic stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probe.lab import addresses as A  # noqa: E402
from probe.lab.lab import Lab, require_root  # noqa: E402

TARGETS = [ROOT / "tests" / "lab" / "mini_targets.toml",
           ROOT / "tests" / "lab" / "locate_targets.toml"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    reason = require_root()
    if reason:
        print(f"locate_cost: {reason}", file=sys.stderr)
        return 2
    times: dict[str, list[float]] = {"plain": [], "deep": []}
    located: list[int] = []
    bad = 0
    with Lab(targets=TARGETS) as lab, tempfile.TemporaryDirectory() as out:
        lab.apply("stun_dpi")
        lab.apply("rst_injection", addresses=[lab.address_of("e1.whatsapp.net")], ports=[443])
        targets = next(p for p in lab.target_files if p.name == "locate_targets.toml")
        for _ in range(args.rounds):
            for mode in ("plain", "deep"):
                extra = ["--deep"] if mode == "deep" else []
                t0 = time.monotonic()
                res = lab.client_run([sys.executable, "-m", "probe", "run", *extra,
                                      "--targets", str(targets), "--resolver", A.RESOLVER,
                                      "--timeout", "3", "--json", "--network-type", "fixed",
                                      "--output", out], check=False, timeout_s=600)
                times[mode].append(time.monotonic() - t0)
                summary = json.loads(res.stdout)
                if mode == "deep":
                    findings = summary.get("locate", {}).get("findings", [])
                    located.append(len(findings))
                    bad += sum(1 for f in findings if f["hop"] != lab.censor_hop)
    plain, deep = statistics.mean(times["plain"]), statistics.mean(times["deep"])
    per = (deep - plain) / max(statistics.mean(located), 1)
    print(f"run         {plain:6.1f} s   (mean of {args.rounds})")
    print(f"run --deep  {deep:6.1f} s   ({statistics.mean(located):.0f} endpoints located)")
    print(f"ratio deep/plain: {deep / plain:.2f}; {per:.1f} s per located endpoint")
    if bad:
        print(f"locate_cost: {bad} findings not at hop {A.CENSOR_HOP}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
