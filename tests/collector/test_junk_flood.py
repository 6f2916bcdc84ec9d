"""A censor cannot suppress a report with junk: replies sprayed at the probe's DNS query
and STUN request on loopback are recorded as counts plus the first few, no results line
outgrows the collector's limit, and a real collector stores the file.

Before the cap, every junk datagram was one entry (32,095 ``ignored_replies`` from 4 s of
junk, a 2.3 MB line): the collector answered 413 and the uploader moved the file to
``rejected/`` for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from probe.results import KEEP_EVENTS, MAX_LINE_BYTES, read_results
from tests.helpers.junkflood import JunkSprayer


def _targets(folder: Path, stun_port: int) -> Path:
    path = folder / "flood.toml"
    path.write_text(f"""
[[services]]
id = "controls"
[[services.endpoints]]
function = "control"
check = "tcp"
hosts = ["ctl.test"]
ports = [443]

[[services]]
id = "chatty"
[[services.endpoints]]
function = "messaging"
check = "tcp"
hosts = ["chat.test"]
ports = [443]
[[services.endpoints]]
function = "calls"
check = "stun"
hosts = ["127.0.0.1"]
ports = [{stun_port}]
""")
    return path


def test_junk_sprayed_at_dns_and_stun_is_capped_and_the_report_is_stored(
        tmp_path: Path, collector_process: Any) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("VOIP_PROBE_COLLECTOR", None)
    out = tmp_path / "results"
    with JunkSprayer() as resolver, JunkSprayer() as stun_server:
        targets = _targets(tmp_path, stun_server.port)
        run = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--targets", str(targets),
             "--resolver", f"127.0.0.1:{resolver.port}", "--timeout", "3",
             "--network-type", "fixed", "--output", str(out), "--json"],
            env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        sprayed = resolver.sent + stun_server.sent
    assert run.returncode in (1, 3), run.stderr
    (path,) = out.glob("*.jsonl")
    assert sprayed > 10 * KEEP_EVENTS
    lines = path.read_bytes().splitlines()
    assert max(len(line) for line in lines) <= MAX_LINE_BYTES
    results = read_results(path)
    assert results.complete and not results.warnings

    queries = [q for m in results.measurements if m["test_name"] == "dns"
               for q in m["test_keys"]["queries"]]
    flooded = [q for q in queries if q.get("ignored_replies_total", 0) > KEEP_EVENTS]
    assert flooded, queries
    for q in flooded:
        assert len(q["ignored_replies"]) == KEEP_EVENTS
        assert q["failure"] == "dns_server_misbehaving"  # the junk is still evidence
    stun = [m["test_keys"]["stun_binding"] for m in results.measurements
            if m["test_name"] == "stun"]
    assert stun and all(tx["failure"] == "stun_malformed_reply" for tx in stun)
    assert any(tx.get("received_total", 0) > KEEP_EVENTS for tx in stun), stun
    assert all(len(tx["received"]) <= KEEP_EVENTS for tx in stun)
    biggest = max(len(line) for line in lines)
    print(f"junk sprayed: {sprayed} datagrams; longest line {biggest} bytes; counted "
          f"{sum(q['ignored_replies_total'] for q in flooded)} ignored DNS replies")

    server = collector_process()
    up = subprocess.run([sys.executable, "-m", "probe", "upload", str(path), "--collector",
                         server.url, "--json"], env=env, capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    assert [f["status"] for f in json.loads(up.stdout)["files"]] == ["stored"]
