"""The command line end to end, against servers on loopback only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.results import read_results
from tests.helpers.dnsserver import LoopbackDnsServer, zone_handler
from tests.helpers.loopback_world import closed_port, world_dns, write_targets


def voip_probe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_the_commands() -> None:
    res = voip_probe("--help")
    assert res.returncode == 0
    for cmd in ("run", "targets"):
        assert cmd in res.stdout
    run_help = voip_probe("run", "--help").stdout
    for opt in ("--targets", "--services", "--resolver", "--doh", "--reflector", "--ca-bundle",
                "--timeout", "--output", "--network-type", "--json", "--include-ip"):
        assert opt in run_help


def test_offline_network_is_inconclusive_exit_3_with_a_valid_file(tmp_path: Path) -> None:
    """Like this machine: the resolver answers NXDOMAIN for every outside name."""
    with LoopbackDnsServer(zone_handler({})) as dns:
        res = voip_probe("run", "--resolver", dns.resolver, "--timeout", "3", "--json",
                         "--output", str(tmp_path), "--network-type", "mobile")
    assert res.returncode == 3, res.stderr
    summary = json.loads(res.stdout)
    assert summary["network"]["status"] == "offline"
    assert set(summary["services"]) == {"whatsapp", "skype", "viber", "duo"}
    assert {s["status"] for s in summary["services"].values()} == {"inconclusive"}
    # every service has a calls verdict without a reflector (inconclusive offline)
    for service in ("whatsapp", "skype", "viber", "duo"):
        assert summary["services"][service]["functions"]["calls"]["status"] == "inconclusive"
    assert any(n.startswith("no reflector:") for n in summary["notes"])
    assert "offline" in res.stderr
    rf = read_results(Path(summary["results_file"]))
    assert rf.warnings == [] and rf.summary is not None
    assert rf.summary["report_id"] == summary["report_id"]
    assert Path(summary["results_file"]).name.split("_")[1:3] == ["AS0", "mobile"]
    for m in rf.measurements:
        # Checks through the reflector do not apply without --reflector; all else is DNS.
        reflector_check = m["test_name"] in ("udp", "differential", "stream", "call")
        expected = "not_applicable" if reflector_check else "dns_nxdomain_error"
        assert m["test_keys"]["failure"] == expected, m
        for key in ("measurement_start_time", "test_runtime", "probe_asn", "probe_cc",
                    "report_id", "software_name", "software_version", "input", "annotations",
                    "test_name", "test_keys", "service", "function", "schema_version"):
            assert key in m


@pytest.fixture
def loopback_world(tmp_path: Path):
    """Controls and a messaging host that work, and a 'calls' host whose port is closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    targets = write_targets(tmp_path, listener.getsockname()[1], closed_port())
    with world_dns() as dns:
        yield targets, dns
    listener.close()


def test_blocked_calls_working_messaging_exit_1(loopback_world, tmp_path: Path) -> None:
    targets, dns = loopback_world
    res = voip_probe("run", "--targets", str(targets), "--resolver", dns.resolver,
                     "--timeout", "3", "--json", "--output", str(tmp_path / "out"),
                     "--network-type", "fixed")
    assert res.returncode == 1, res.stderr
    chatty = json.loads(res.stdout)["services"]["chatty"]
    assert chatty["functions"]["messaging"]["status"] == "ok"
    assert chatty["functions"]["calls"] == {"status": "blocked", "reachable": 0, "total": 1,
                                            "methods": ["tcp_refused"]}
    assert "chatty" in res.stderr and "blocked" in res.stderr  # the human table


@pytest.mark.parametrize(("args", "needle"), [
    (["--resolver", "dns.google"], "--resolver must be an IP address"),
    (["--network-type", "satellite"], "--network-type must be one of"),
    (["--timeout", "0"], "--timeout must be between"),
    (["--services", "icq"], "unknown service(s) icq"),
    (["--targets", "/nonexistent.toml"], "no such target file"),
    (["--doh", "http://x"], "--doh must be an https:// URL"),
])
def test_usage_errors_exit_2_with_one_clear_line(args: list[str], needle: str,
                                                 tmp_path: Path) -> None:
    res = voip_probe("run", "--output", str(tmp_path), *args)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_targets_validate_and_list(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[service]\nid = "x"\n[[endpoints]]\nfunction = "calls"\ncheck = "tcp"\n'
                   'hosts = ["a.example"]\nports = [0]\n')
    res = voip_probe("targets", "validate", str(bad))
    assert res.returncode == 2
    assert f"{bad}:7: port 0 is out of range" in res.stderr
    from probe.targets import shipped_target_files

    good = voip_probe("targets", "validate", *map(str, shipped_target_files()))
    assert good.returncode == 0, good.stderr
    listed = json.loads(voip_probe("targets", "list", "--json").stdout)
    wanted = {"service": "whatsapp", "function": "messaging", "check": "tcp",
              "input": "tcp://e1.whatsapp.net:5222", "pool": "any"}
    assert any(wanted.items() <= e.items() for e in listed)


def test_network_type_prompt_asks_again_after_a_typo(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from probe.cli import scan as run_cli

    answers = iter(["4g", " Mobile "])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(run_cli.typer, "prompt", lambda *_a, **_k: next(answers))
    assert run_cli.ask_network_type() == "mobile"
    assert "'4g' is not one of" in capsys.readouterr().err  # the typo was refused, then asked again


def test_network_type_is_unknown_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.cli import scan as run_cli

    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert run_cli.ask_network_type() == "unknown"


def test_ctrl_c_at_the_network_type_prompt_is_an_interruption(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from probe.cli import scan as run_cli

    def abort(*_a: object, **_k: object) -> str:
        raise typer.Abort()  # what the prompt raises on Ctrl-C or Ctrl-D

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(run_cli.typer, "prompt", abort)
    with pytest.raises(KeyboardInterrupt):  # exit 130 "interrupted", not "internal error"
        run_cli.ask_network_type()


def test_network_type_prompt_on_a_real_terminal(tmp_path: Path) -> None:
    """On a pseudo-terminal: the prompt appears, a typo is asked again, and Ctrl-D ends
    the command as an interruption (exit 130) before anything is measured or written."""
    import os
    import select

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "probe", "run", "--output", str(tmp_path)],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(needle: bytes, timeout_s: float = 20.0) -> None:
        nonlocal seen
        end = time.monotonic() + timeout_s
        while needle not in seen and time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert needle in seen, seen.decode(errors="replace")

    try:
        read_until(b"Which network are you on?")
        os.write(master, b"4g\n")
        read_until(b"'4g' is not one of")
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=20) == 130, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert "internal error" not in seen.decode(errors="replace")
    assert not list(tmp_path.glob("*.jsonl"))
