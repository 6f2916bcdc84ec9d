"""The run session: Ctrl-C and the results file (whenever it comes, the file ends with its
summary line), and the privacy rule end to end (the probe's public address is written
only with --include-ip).

The live Ctrl-C cases (Ctrl-C mid-run, in a real process) are in test_results.py and
test_watch_real.py; here the two edges of the run are hit deterministically, by sending
SIGINT to this process at exactly that point."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import probe.session as session
from probe.model import Endpoint, Identity, Plan, RunConfig, Service
from probe.results import read_results
from probe.runner import Progress
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


def test_ctrl_c_as_the_file_opens_gives_an_interrupted_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writer = session.ResultsWriter

    class CtrlCOnOpen(real_writer):  # type: ignore[misc, valid-type]
        def __enter__(self) -> Any:
            opened = super().__enter__()
            os.kill(os.getpid(), signal.SIGINT)  # the file exists, nothing measured yet
            return opened

    monkeypatch.setattr(session, "ResultsWriter", CtrlCOnOpen)
    # The file opens once the identity is in; the endpoint is blackholed, so no
    # measurement can have completed by then.
    dead = net()
    dead.censor.apply("drop_endpoint", hosts=["chat.test"], proto="tcp")
    with pytest.raises(KeyboardInterrupt):
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=dead)
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


# Ctrl-C before the identity is in: the scan stops, the lookup is let finish (the address
# to scrub must be known before anything is written), and the file gets what was measured
# and an interrupted summary.
def test_ctrl_c_before_the_identity_is_known_waits_for_it_and_writes_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def known_a_little_later(cfg: RunConfig, net: Any) -> Identity:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.3)
        return Identity(asn="AS64500", cc="MA", ip="203.0.113.9", source="test")

    monkeypatch.setattr(session, "resolve_identity", known_a_little_later)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=net())
    (path,) = (tmp_path / "out").glob("*.jsonl")
    assert stop.value.args == (str(path),)
    assert "_AS64500_" in path.name
    rf = read_results(path)
    assert rf.summary is not None and rf.summary["interrupted"] is True
    assert rf.summary["probe_asn"] == "AS64500"
    assert "203.0.113.9" not in path.read_text()
    assert signal.getsignal(signal.SIGINT) is before


# A second Ctrl-C while the lookup is still out gives up: nothing can be scrubbed, so
# nothing is written.
def test_a_second_ctrl_c_before_the_identity_is_known_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_known(cfg: RunConfig, net: Any) -> Identity:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)
        raise AssertionError("the run was not interrupted")

    monkeypatch.setattr(session, "resolve_identity", never_known)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:
        session.run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "out", net=net())
    assert stop.value.args == ()  # no file to name
    assert not list(tmp_path.rglob("*.jsonl"))
    assert signal.getsignal(signal.SIGINT) is before


# The identity lookup runs beside the scan: here it answers only once a check is done (it
# would wait forever if the scan waited for it), and the STUN check that finished first
# is still written with the identity's fields and without the address it saw.
@pytest.mark.parametrize("include_ip", [False, True])
def test_identity_runs_beside_the_scan_and_still_scrubs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, include_ip: bool) -> None:
    public = ("203.0.113.77", 61000)
    server = "198.18.9.10"
    fake = FakeNetwork(udp_hosts={server: stun_server(mapped=public)})
    ep = Endpoint(service="svc", function="calls", check="stun", host=server, port=3478,
                  source="test:1")
    plan = Plan((Service("svc", "Svc", (ep,)),))
    check_done = threading.Event()
    order: list[str] = []

    def progress(ev: Progress) -> None:
        if ev.kind == "check_done":
            order.append("check_done")
            check_done.set()

    async def slow_identity(cfg: RunConfig, net: Any) -> Identity:
        for _ in range(300):  # a scan that waited for the identity would never get here
            if check_done.is_set():
                break
            await asyncio.sleep(0.01)
        order.append("identity")
        return Identity(asn="AS64500", cc="MA", network_name="Lab Telecom", ip=public[0],
                        source="test")

    monkeypatch.setattr(session, "resolve_identity", slow_identity)
    outcome = run_session(plan, RunConfig(timeout_s=2.0, include_ip=include_ip), tmp_path,
                          net=fake, progress=progress)
    assert order[:2] == ["check_done", "identity"]
    assert "_AS64500_" in outcome.results_file.name
    rf = read_results(outcome.results_file)
    assert rf.summary is not None and rf.summary["probe_asn"] == "AS64500"
    (stun_record,) = [r for r in rf.measurements if r["test_name"] == "stun"]
    assert stun_record["test_keys"]["failure"] is None
    assert (stun_record["probe_asn"], stun_record["probe_cc"]) == ("AS64500", "MA")
    assert stun_record["report_id"] == rf.summary["report_id"]
    assert stun_record["annotations"]["identity_source"] == "test"
    assert stun_record["annotations"]["network_type"] == "unknown"
    text = outcome.results_file.read_text()
    assert (public[0] in text) is include_ip
    assert ("probe_ip" in stun_record) is include_ip
