"""benchmarks/fuzz_stun.py runs, reports its counts and exits 0 (small count here; the
full 100,000-message run is the benchmark itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_stun.py"


def test_fuzz_script_reports_counts() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "3000", "--seed", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "total    tried     6000" in proc.stdout
    assert "crashed 0" in proc.stdout
    assert "OK: no input crashed the parser" in proc.stdout
