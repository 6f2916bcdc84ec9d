"""The tests' throwaway PostgreSQL server does not outlive a test run that is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.collector import throwaway_pg

SCRIPT = """
from probe.collector.throwaway_pg import ThrowawayPostgres
import sys, time
pg = ThrowawayPostgres()
pg.start()
print(pg.root, flush=True)
time.sleep(600)
"""


def server_pids(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", f"postgres -D {root}/data"],
                         capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_server_is_stopped_and_removed_when_its_owner_is_killed(pg_server: object) -> None:
    # (requests pg_server only to share its skip/fail-in-CI rule)
    if throwaway_pg.unavailable_reason() is not None:  # pragma: no cover
        pytest.skip("no PostgreSQL")
    owner = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                             text=True, env={**os.environ})
    try:
        assert owner.stdout is not None
        root = Path(owner.stdout.readline().strip())
        assert root.name.startswith("voip-probe-pg-") and server_pids(root)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (root.exists() or server_pids(root)):
        time.sleep(0.2)
    assert server_pids(root) == [] and not root.exists()
