"""A results file made by ``voip-probe run`` itself reaches the collector intact.

The run is offline like this machine (a loopback resolver answering NXDOMAIN for every
name), so it sends nothing outside; then the same file cut mid-line (a crashed run)
is uploaded as a partial file without its torn line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.dnsserver import LoopbackDnsServer, zone_handler


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


def test_a_file_from_voip_probe_run_is_stored_and_queryable(
        tmp_path: Path, collector_process: Any) -> None:
    with LoopbackDnsServer(zone_handler({})) as dns:
        run = cli("run", "--resolver", dns.resolver, "--timeout", "2", "--json",
                  "--output", str(tmp_path / "results"), "--network-type", "mobile")
    assert run.returncode == 3, run.stderr  # offline: inconclusive
    summary = json.loads(run.stdout)
    results = Path(summary["results_file"])
    lines = results.read_bytes().splitlines(keepends=True)
    measurements = len(lines) - 1

    crashed = tmp_path / "crashed" / results.name.replace(".jsonl", "-crashed.jsonl")
    crashed.parent.mkdir()
    crashed.write_bytes(b"".join(lines[:10]) + lines[10][: len(lines[10]) // 2])

    server = collector_process()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    up = cli("upload", str(results), "--collector", server.url, "--json", env=env)
    assert up.returncode == 0, up.stderr
    [stored] = json.loads(up.stdout)["files"]
    assert stored["status"] == "stored" and stored["measurements"] == measurements
    page = httpx.get(server.url + "/api/v1/measurements",
                     params={"asn": "AS0", "limit": 1000}, timeout=60).json()
    assert len(page["measurements"]) == measurements
    rows = httpx.get(server.url + "/api/v1/summary", params={"cc": "ZZ"},
                     timeout=60).json()["summary"]
    assert {r["service"] for r in rows} >= {"whatsapp", "skype", "viber", "duo"}
    assert {r["network_type"] for r in rows} == {"mobile"}
    assert all(r["runs"] == 1 and r["statuses"]["inconclusive"] == 1 for r in rows)

    # The cut copy of the same run is a different file with the same report_id: refused.
    replay = cli("upload", str(crashed), "--collector", server.url, "--json", env=env)
    assert replay.returncode == 2
    assert json.loads(replay.stdout)["files"][0]["http_status"] == 409

    # On its own, the crashed run's file is stored without its torn line, as partial.
    other = collector_process(data_dir=tmp_path / "other-collector")
    up = cli("upload", str(crashed), "--collector", other.url, "--json", env=env)
    assert up.returncode == 0, up.stderr
    [partial] = json.loads(up.stdout)["files"]
    assert partial["status"] == "stored" and partial["measurements"] == 10
    assert "torn last line of a crashed run left out" in up.stderr
