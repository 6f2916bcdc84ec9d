"""One Morocco 2016 lab replay per test session, shared by every xdist worker.

``voip-probe lab replay morocco-2016`` takes about a minute (eight real probe runs behind
real packet filtering). Several tests read its files (the timeline dates the ban, the
lab command reports its phases, the status page shows its events), so the first test
to ask runs it, under a lock in the session's shared temporary folder, and the others
wait for it and read the same files (the xdist recipe for session-wide data). The
replay's probe keeps its pseudonyms in its own ``XDG_DATA_HOME``: all its runs are one
probe (one pseudonym per network type).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_S = "4"  # the check budget of every lab test (like the matrix)


@dataclass(frozen=True)
class Replay:
    returncode: int
    stdout: str
    stderr: str
    output: Path  # where the re-dated results files are
    data_home: Path  # the replay probe's XDG_DATA_HOME (its pseudonyms)

    @property
    def report(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed


def shared_folder(factory: pytest.TempPathFactory, worker_id: str) -> Path:
    base = factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def morocco_replay(factory: pytest.TempPathFactory, worker_id: str) -> Replay:
    root = shared_folder(factory, worker_id) / "morocco-2016-replay"
    root.mkdir(exist_ok=True)
    output, data_home, done = root / "files", root / "probe-data", root / "result.json"
    with open(root / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                env = {**os.environ, "COLUMNS": "200", "XDG_DATA_HOME": str(data_home)}
                proc = subprocess.run(
                    [sys.executable, "-m", "probe", "lab", "replay", "morocco-2016",
                     "--timeout", TIMEOUT_S, "--json", "--output", str(output)],
                    capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                    env=env)
                done.write_text(json.dumps({"returncode": proc.returncode,
                                            "stdout": proc.stdout, "stderr": proc.stderr}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    result = json.loads(done.read_text())
    return Replay(result["returncode"], result["stdout"], result["stderr"], output, data_home)
