"""The run session: Ctrl-C and the results file (whenever it comes, the file ends with its
summary line), and the privacy rule end to end (the probe's public address is written
only with --include-ip).

The live Ctrl-C cases (Ctrl-C mid-run, in a real process) are in test_results.py and
test_watch_real.py; here the two edges of the run are hit deterministically, by sending
SIGINT to this process at exactly that point."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import probe.session as session
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.results import read_results
from probe.session import run_session
from probe.testing import FAKE_NETWORKS, FakeNetwork, stun_server


def one_endpoint_plan() -> Plan:
    ep = Endpoint(service="s", function="messaging", check="tcp", host="chat.test", port=443,
                  expected_networks=FAKE_NETWORKS)
    return Plan((Service("s", "s", (ep,)),))


def net() -> FakeNetwork:
    return FakeNetwork(names={"chat.test": ["198.18.5.5"]})


def cfg(tmp_path: Path) -> RunConfig:
    conf = tmp_path / "identity.toml"
    conf.write_text('[identity]\nstun_servers = ["stun.test:3478"]\n')
    return RunConfig(timeout_s=2.0, identity_config=str(conf))


def test_ctrl_c_as_the_run_ends_still_gets_the_summary(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = session.build_summary

    def build_after_ctrl_c(*args: Any, **kw: Any) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGINT)  # the run is over, the summary not yet written
        return real_build(*args, **kw)

    monkeypatch.setattr(session, "build_summary", build_after_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=net())
    (path,) = (tmp_path / "out").glob("*.jsonl")
    rf = read_results(path)
    assert rf.summary is not None and rf.warnings == []
    assert "interrupted" not in rf.summary  # every measurement was done
    assert len(rf.measurements) >= 1
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_ctrl_c_before_the_run_starts_gives_an_interrupted_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writer = session.ResultsWriter

    class CtrlCOnOpen(real_writer):  # type: ignore[misc, valid-type]
        def __enter__(self) -> Any:
            opened = super().__enter__()
            os.kill(os.getpid(), signal.SIGINT)  # the file exists, the run has not begun
            return opened

    monkeypatch.setattr(session, "ResultsWriter", CtrlCOnOpen)
    with pytest.raises(KeyboardInterrupt):
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=net())
    (path,) = (tmp_path / "out").glob("*.jsonl")
    rf = read_results(path)
    assert rf.summary is not None and rf.summary.get("interrupted") is True
    assert rf.measurements == []


def test_a_failure_to_write_puts_the_ctrl_c_handler_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Unwritable(session.ResultsWriter):  # type: ignore[misc, name-defined]
        def __enter__(self) -> Any:
            raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(session, "ResultsWriter", Unwritable)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(PermissionError):
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=net())
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is not left swallowed


# The address a STUN server maps us to never reaches a results file unless --include-ip.
@pytest.mark.parametrize("include_ip", [False, True])
def test_mapped_address_never_written_without_include_ip(tmp_path: Path,
                                                         include_ip: bool) -> None:
    public = ("203.0.113.77", 61000)
    server = "198.18.9.10"
    net = FakeNetwork(udp_hosts={server: stun_server(mapped=public)})
    ep = Endpoint(service="svc", function="calls", check="stun", host=server, port=3478,
                  source="test:1")
    plan = Plan((Service("svc", "Svc", (ep,)),))
    cfg = RunConfig(timeout_s=2.0, include_ip=include_ip)
    outcome = run_session(plan, cfg, tmp_path, net=net)
    text = outcome.results_file.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    stun_records = [r for r in records if r.get("test_name") == "stun"]
    assert stun_records and stun_records[0]["test_keys"]["failure"] is None
    assert (public[0] in text) is include_ip
