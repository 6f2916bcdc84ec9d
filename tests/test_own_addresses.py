"""What a run writes never names the volunteer: every address the probe learns as its own
is scrubbed (not only the first one found), the summary names the results file without
the local folders, and notes and redirects carry no local path or subscriber data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probe.checks.https import redirect_target
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.results import read_results
from probe.session import RunOutcome, run_session
from probe.testing import FAKE_NETWORKS, FakeNetwork, stun_server

NOW = datetime(2016, 11, 4, 9, 30, tzinfo=UTC)
FIRST, SECOND = "198.18.44.44", "198.18.44.45"  # two public addresses of one probe


def _plan(*endpoints: Endpoint) -> Plan:
    return Plan((Service("s", "S", tuple(endpoints)),))


def _mirror(host: str) -> Endpoint:
    """A host whose DNS answer is the probe's own address (as a whoami name is)."""
    return Endpoint(service="s", function="messaging", check="tcp", host=host, port=443,
                    expected_networks=FAKE_NETWORKS)


def _stun_then_mirror(net: FakeNetwork, server: str, tmp_path: Path,
                      include_ip: bool) -> RunOutcome:
    """A session of a STUN check to ``server`` (whose mapped address is the probe's own)
    and the ``mirror.test`` host, no identity lookup."""
    stun_ep = Endpoint(service="s", function="calls", check="stun", host=server, port=3478,
                       source="test:1")
    cfg = RunConfig(timeout_s=2.0, include_ip=include_ip)
    return run_session(_plan(stun_ep, _mirror("mirror.test")), cfg, tmp_path / "out",
                       net=net, now=NOW)


@pytest.mark.parametrize("include_ip", [False, True])
def test_every_address_the_identity_lookup_learnt_is_scrubbed(
        tmp_path: Path, include_ip: bool) -> None:
    conf = tmp_path / "identity.toml"
    conf.write_text('[identity]\n[[identity.dns_ip]]\nname = "myip.test"\n'
                    'server = "198.18.0.53"\n')
    net = FakeNetwork(names={"myip.test": [FIRST, SECOND], "second.test": [SECOND]})
    cfg = RunConfig(timeout_s=2.0, identity_config=str(conf), include_ip=include_ip)
    outcome = run_session(_plan(_mirror("second.test")), cfg, tmp_path / "out", net=net,
                          now=NOW)
    text = outcome.results_file.read_text()
    assert (SECOND in text) is include_ip  # the second address of the answer too


@pytest.mark.parametrize("include_ip", [False, True])
def test_a_mapped_address_a_check_learns_is_scrubbed_from_later_lines(
        tmp_path: Path, include_ip: bool) -> None:
    """No identity at all (every name NXDOMAIN): the STUN check's mapped address is the
    only thing that says who the probe is, and it is scrubbed from what comes after."""
    server = "198.18.9.10"
    net = FakeNetwork(names={"mirror.test": [SECOND]}, dns_delay_s=0.5,
                      udp_hosts={server: stun_server(mapped=(SECOND, 61000))})
    outcome = _stun_then_mirror(net, server, tmp_path, include_ip)
    results = read_results(outcome.results_file)
    stun = [m for m in results.measurements if m["test_name"] == "stun"]
    assert stun and stun[0]["test_keys"]["failure"] is None
    answered = [m for m in results.measurements if m["test_name"] == "dns"]
    assert answered  # the mirror's answer, looked up after the STUN check learnt it
    assert (SECOND in outcome.results_file.read_text()) is include_ip


def test_the_results_file_is_named_without_local_folders(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "alice"
    asn_db = home / "asn.csv"
    asn_db.parent.mkdir(parents=True)
    asn_db.write_text("203.0.113.0/24,64500,MA,Other\n")  # the probe's address is not in it
    conf = tmp_path / "identity.toml"
    conf.write_text('[identity]\nstun_servers = ["stun.test:3478"]\n')
    net = FakeNetwork(names={"stun.test": ["198.18.3.3"], "chat.test": ["198.18.1.1"]},
                      udp_hosts={"198.18.3.3": stun_server(mapped=(FIRST, 40000))})
    ep = Endpoint(service="s", function="messaging", check="tcp", host="chat.test",
                  port=443, expected_networks=FAKE_NETWORKS)
    cfg = RunConfig(timeout_s=2.0, identity_config=str(conf), asn_db=str(asn_db))
    outcome = run_session(_plan(ep), cfg, home / "results", net=net, now=NOW)
    data = outcome.results_file.read_text()
    assert "alice" not in data and str(tmp_path) not in data
    summary = read_results(outcome.results_file).summary
    assert summary is not None and summary["results_file"] == outcome.results_file.name
    notes = {m["annotations"].get("identity_note") for m in
             read_results(outcome.results_file).measurements}
    assert notes == {"address not in the ASN database asn.csv"}
    # The summary printed for this machine (run --json) still says where the file is.
    assert outcome.summary["results_file"] == str(outcome.results_file)

    monkeypatch.chdir(tmp_path)  # the default: --output results, relative
    relative = run_session(_plan(ep), RunConfig(timeout_s=2.0, identity_config=str(conf)),
                           Path("results"), net=net, now=NOW)
    line = json.loads(relative.results_file.read_text().splitlines()[-1])
    assert line["results_file"] == f"results/{relative.results_file.name}"


@pytest.mark.parametrize(("location", "kept"), [
    ("https://block.isp.example/page", "https://block.isp.example/page"),
    ("http://198.18.7.7/block?ip=198.18.44.44&msisdn=212600000000",
     "http://198.18.7.7/block?[removed]"),
    ("http://user:secret@portal.example:8080/login#sub=1234",
     "http://[removed]@portal.example:8080/login#[removed]"),
    ("http://[2001:db8::1]:8080/a?b=c", "http://[2001:db8::1]:8080/a?[removed]"),
    ("http://portal.example:99999/?sub=1", "http://portal.example:99999/"),
])
def test_a_redirect_keeps_its_target_without_subscriber_data(location: str,
                                                             kept: str) -> None:
    assert redirect_target(location) == kept


@pytest.mark.parametrize("include_ip", [False, True])
def test_lines_written_before_the_address_was_learnt_are_scrubbed_too(
        tmp_path: Path, include_ip: bool) -> None:
    """The mirror's answer is written at once; the STUN server answers only the second
    request (half a second later): the file is rewritten without the address."""
    server = "198.18.9.10"
    answer = stun_server(mapped=(SECOND, 61000))
    seen: list[bytes] = []

    def late(data: bytes) -> bytes | None:
        seen.append(data)
        return answer(data) if len(seen) > 1 else None

    net = FakeNetwork(names={"mirror.test": [SECOND]}, udp_hosts={server: late})
    outcome = _stun_then_mirror(net, server, tmp_path, include_ip)
    results = read_results(outcome.results_file)
    assert results.complete and not results.warnings
    order = [m["test_name"] for m in results.measurements]
    assert order.index("dns") < order.index("stun")  # written before the STUN answer
    assert len(seen) >= 2
    assert (SECOND in outcome.results_file.read_text()) is include_ip
    assert [p.name for p in outcome.results_file.parent.iterdir()] == [
        outcome.results_file.name]  # no work file left behind
    assert outcome.records == results.measurements  # judged as written
