"""A reflector one setting away: with only the collector's URL configured (config.toml, or
``watch --collector``), ``run`` and ``watch`` use the reflector the collector advertises
(``serve --reflector-ports``, ``GET /api/v1/reflector``) without ``--reflector``; without
one, the summary says in one line which evidence the run left out. Everything on loopback:
a real collector process with its reflector, the loopback world's DNS and TCP ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from probe.results import read_results
from tests.helpers.loopback_world import world_dns, write_targets


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp_path: Path, udp_port: int) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "serve", "--port", str(port), "--data-dir",
         str(tmp_path / "collector"), "--reflector-ports", str(udp_port)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v1/reflector", timeout=1).json()["reflector"]:
                return proc, url
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"collector did not come up: {(tmp_path / 'serve.log').read_text()}")


def world_with_a_reflector_check(tmp_path: Path, open_port: int, udp_port: int) -> Path:
    """The loopback world plus a calls check that needs a reflector: UDP echo on the port
    the collector's reflector listens on."""
    targets = write_targets(tmp_path, open_port, open_port)
    targets.write_text(targets.read_text() + f"""
[[services.endpoints]]
function = "calls"
check = "udp"
ports = [{udp_port}]
""")
    return targets


def udp_measurements(results_file: Path) -> list[dict[str, Any]]:
    return [m for m in read_results(results_file).measurements if m["test_name"] == "udp"]


def test_run_and_watch_use_the_reflector_the_collector_advertises(tmp_path: Path) -> None:
    udp_port = free_udp_port()
    listener = socket.create_server(("127.0.0.1", 0))
    targets = world_with_a_reflector_check(tmp_path, listener.getsockname()[1], udp_port)
    server, url = serve(tmp_path, udp_port)
    config = tmp_path / "xdg-config"
    (config / "voip-probe").mkdir(parents=True)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    try:
        with world_dns() as dns:
            common = ["--targets", str(targets), "--resolver", dns.resolver, "--timeout", "2",
                      "--network-type", "wifi"]

            # run: no reflector anywhere -> the udp check does not apply, and the summary
            # says in one line what that left out
            def probe(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "probe", *args, *common],
                                      capture_output=True, text=True, timeout=120, env=env,
                                      stdin=subprocess.DEVNULL)

            bare = probe("run", "--json", "--output", str(tmp_path / "bare"))
            assert bare.returncode == 0, bare.stderr
            summary = json.loads(bare.stdout)
            assert summary["reflector"]["host"] is None
            left_out = [n for n in summary["notes"] if n.startswith("no reflector:")]
            assert len(left_out) == 1 and "UDP port test" in left_out[0], summary["notes"]
            assert "no reflector:" in bare.stderr  # the same line under the table
            [udp] = udp_measurements(Path(summary["results_file"]))
            assert udp["test_keys"]["failure"] == "not_applicable"

            # run: only collector = URL in config.toml -> the collector's reflector is used
            (config / "voip-probe" / "config.toml").write_text(f'collector = "{url}"\n')
            ran = probe("run", "--json", "--output", str(tmp_path / "run"))
            assert ran.returncode == 0, ran.stderr
            summary = json.loads(ran.stdout)
            assert summary["reflector"] == {"host": "127.0.0.1", "source": "collector",
                                            "note": None}
            assert not [n for n in summary["notes"] if n.startswith("no reflector:")]
            assert "reflector: 127.0.0.1 (from the collector)" in ran.stderr
            for udp in udp_measurements(Path(summary["results_file"])):
                assert udp["test_keys"]["failure"] is None, udp
                assert udp["test_keys"]["outcome"] == "ok"  # the echo came back

            # watch: no config, the collector given as --collector (it also uploads)
            (config / "voip-probe" / "config.toml").unlink()
            watched = probe("watch", "--every", "1s", "--count", "1", "--output",
                            str(tmp_path / "watch"), "--collector", url)
            assert watched.returncode == 0, watched.stderr
            [results] = sorted((tmp_path / "watch").glob("*.jsonl"))
            assert read_results(results).summary["reflector"]["source"] == "collector"
            for udp in udp_measurements(results):
                assert udp["test_keys"]["outcome"] == "ok", udp
    finally:
        server.terminate()
        server.wait(10)
        listener.close()


def test_a_bad_reflector_setting_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "xdg-config" / "voip-probe"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('reflector = "not a host!"\n')
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    res = subprocess.run([sys.executable, "-m", "probe", "run", "--network-type", "wifi",
                          "--output", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 2, res.stderr
    assert "'reflector' must be a host name or an address" in res.stderr
