"""``run --deep`` without raw-socket privileges: one clear line says locate was skipped,
and the run is otherwise the same as without ``--deep`` (exit code, verdicts, results).

As root, the runs are made by the same user with every capability dropped (setpriv:
no CAP_NET_RAW, none to regain), so they read the checkout wherever it is, even under a
directory only root may enter (/root, ``mktemp -d``); as any other user they run as that
user. Everything stays on loopback: a DNS server and a TCP listener in this process, a
closed port for the blocked "calls" endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.locate.ttl import RAW_SKIPPED
from probe.results import read_results
from tests.helpers.loopback_world import closed_port, world_dns, write_targets

# What the unprivileged process says about itself: the probe's own test, raw sockets of
# each kind the locate code could open, and its user and effective capabilities.
_SELF_CHECK = """
import json, os, socket
from probe.locate.ttl import has_raw_sockets
kinds = {"icmp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
         "tcp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
         "udp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP),
         "ip": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
         "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0)}
raw = {}
for name, args in kinds.items():
    try:
        socket.socket(*args).close()
        raw[name] = "opened"
    except OSError as exc:
        raw[name] = type(exc).__name__
caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:")]
print(json.dumps({"has_raw_sockets": has_raw_sockets(), "raw": raw, "uid": os.geteuid(),
                  "cap_eff": int(caps[0], 16)}))
"""


def _unprivileged_prefix() -> list[str]:
    """Root keeps its user but loses every capability, for good (bounding set empty, no new
    privileges): switching to ``nobody`` failed wherever the checkout sits under a
    directory only root may read."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root without setpriv (util-linux): cannot drop privileges")
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
            "--no-new-privs"]


@pytest.fixture
def world() -> Iterator[tuple[Path, str, Path]]:
    """(targets file, resolver, a folder for the runs' output)."""
    listener = socket.create_server(("127.0.0.1", 0))
    open_port = listener.getsockname()[1]
    top = Path(tempfile.mkdtemp(prefix="voip-probe-nopriv-"))
    targets = write_targets(top, open_port, closed_port())
    try:
        with world_dns() as dns:
            yield targets, dns.resolver, top
    finally:
        listener.close()
        shutil.rmtree(top, ignore_errors=True)


def _run(prefix: list[str], out: Path, targets: Path, resolver: str,
         *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out.mkdir()
    env = {**os.environ, "HOME": str(out), "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([*prefix, sys.executable, "-m", "probe", "run", *extra,
                          "--targets", str(targets), "--resolver", resolver, "--timeout", "2",
                          "--json", "--network-type", "fixed", "--output", str(out)],
                         capture_output=True, text=True, timeout=120, env=env,
                         stdin=subprocess.DEVNULL, cwd=out)
    assert res.stdout, res.stderr
    return res, json.loads(res.stdout)


def _measurements(path: str) -> list[tuple[Any, ...]]:
    records = read_results(Path(path)).measurements
    return sorted((r["service"], r["function"], r["test_name"], r["input"], r["pass"],
                   r["test_keys"]["failure"]) for r in records)


def test_run_deep_without_raw_sockets_says_so_and_changes_nothing(world) -> None:
    targets, resolver, top = world
    prefix = _unprivileged_prefix()
    check = subprocess.run([*prefix, sys.executable, "-c", _SELF_CHECK],
                           capture_output=True, text=True, timeout=60, cwd=top)
    assert check.returncode == 0, check.stderr
    self_check = json.loads(check.stdout)
    # Really without privileges: the probe's test says so, and so does the kernel.
    assert self_check["has_raw_sockets"] is False
    assert set(self_check["raw"].values()) == {"PermissionError"}, self_check["raw"]
    assert self_check["cap_eff"] == 0
    assert self_check["uid"] == os.geteuid()  # the same user: files readable as for pytest

    plain, plain_summary = _run(prefix, top / "plain", targets, resolver)
    deep, deep_summary = _run(prefix, top / "deep", targets, resolver, "--deep")

    assert deep.returncode == plain.returncode == 1, deep.stderr
    lines = [line for line in deep.stderr.splitlines() if "raw sockets" in line]
    assert lines == [RAW_SKIPPED]
    assert RAW_SKIPPED == "locate needs raw sockets (root or CAP_NET_RAW); skipped"
    assert "raw sockets" not in plain.stderr
    assert "locate" not in deep_summary
    assert deep_summary["services"] == plain_summary["services"]
    assert deep_summary["services"]["chatty"]["functions"]["calls"]["status"] == "blocked"
    assert deep_summary["network"] == plain_summary["network"]
    assert _measurements(deep_summary["results_file"]) == \
        _measurements(plain_summary["results_file"])
    summary_line = read_results(Path(deep_summary["results_file"])).summary
    assert summary_line is not None and "locate" not in summary_line


def test_locate_without_raw_sockets_says_so_in_one_line(world) -> None:
    targets, resolver, top = world
    res = subprocess.run([*_unprivileged_prefix(), sys.executable, "-m", "probe", "locate",
                          "--targets", str(targets), "--resolver", resolver, "--json"],
                         capture_output=True, text=True, timeout=60, cwd=top,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert res.stderr.strip() == RAW_SKIPPED
    assert res.stdout == ""
