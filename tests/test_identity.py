"""Identity: public IP from STUN or DNS, ASN/CC/name from Cymru-style TXT records or a
local database, through fakes and a STUN responder on loopback; the IP is scrubbed."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probe import stun
from probe.identity import (
    DnsIpSource,
    IdentityConfig,
    IdentityConfigError,
    dns_public_ip,
    load_asn_db,
    lookup,
    origin_name,
    stun_public_ip,
)
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.net import RealNetwork
from probe.session import run_session
from probe.testing import FAKE_NETWORKS, FakeNetwork, stun_server

PUBLIC = "198.18.44.44"  # the probe's "public" address in the fake world
STUN_HOST = "stun.test"
STUN_IP = "198.18.3.3"
CYMRU = {
    "44.44.18.198.origin.asn.cymru.com": ["64500 | 198.18.44.0/24 | MA | afrinic | 2016-01-07"],
    "AS64500.asn.cymru.com": ["64500 | MA | afrinic | 2016-01-07 | LABTEL-AS Lab Telecom, MA"],
}


def world(txt: dict[str, list[str]] = CYMRU) -> FakeNetwork:
    """The STUN server maps the probe to PUBLIC; Cymru's TXT records answer from ``txt``."""
    return FakeNetwork(names={STUN_HOST: [STUN_IP]}, txt=dict(txt),
                       udp_hosts={STUN_IP: stun_server(mapped=(PUBLIC, 40000))})


def cfg(tmp_path: Path, **kw) -> RunConfig:
    conf = tmp_path / "identity.toml"
    conf.write_text('[identity]\nstun_servers = ["stun.test:3478"]\n')
    return RunConfig(timeout_s=3.0, identity_config=str(conf), **kw)


async def test_stun_and_cymru_txt(tmp_path: Path) -> None:
    found = await lookup(cfg(tmp_path), world())
    assert (found.asn, found.cc, found.network_name, found.ip) == (
        "AS64500", "MA", "LABTEL-AS Lab Telecom, MA", PUBLIC)
    assert found.source.startswith("stun stun.test:3478") and found.note is None


async def test_offline_fails_fast_to_as0_zz_with_a_note(tmp_path: Path) -> None:
    t0 = time.monotonic()
    found = await lookup(cfg(tmp_path), FakeNetwork())  # every name: NXDOMAIN
    assert (found.asn, found.cc, found.ip) == ("AS0", "ZZ", None)
    assert "stun stun.test:3478: dns_nxdomain_error" in (found.note or "")
    assert time.monotonic() - t0 < 1.5


async def test_shipped_config_names_hosts_only() -> None:
    from probe.hostnames import is_ip_literal
    from probe.identity import load_config

    conf = load_config()
    assert conf.stun_servers and conf.dns_ip
    for server in conf.stun_servers:
        assert not is_ip_literal(server.rsplit(":", 1)[0])
    for source in conf.dns_ip:
        assert not is_ip_literal(source.server)


async def test_no_asn_answer_keeps_the_ip_for_scrubbing(tmp_path: Path) -> None:
    net = world()
    net.txt.clear()
    found = await lookup(cfg(tmp_path), net)
    assert (found.asn, found.cc, found.ip) == ("AS0", "ZZ", PUBLIC)
    assert "ASN lookup failed" in (found.note or "")


async def test_asn_database_longest_prefix(tmp_path: Path) -> None:
    db = tmp_path / "asn.csv"
    db.write_text("# prefix,asn,cc,name\n198.18.0.0/15,64501,ZZ,Wide\n"
                  "198.18.44.0/24,AS64502,ma,Narrow Net\n")
    found = await lookup(cfg(tmp_path, asn_db=str(db)), world())
    assert (found.asn, found.cc, found.network_name) == ("AS64502", "MA", "Narrow Net")
    tsv = tmp_path / "asn.tsv"
    tsv.write_text("198.18.0.0/15\t64501\tZZ\tWide\n")
    assert load_asn_db(tsv).lookup(PUBLIC) == ("64501", "ZZ", "Wide")


@pytest.mark.parametrize(("text", "reason"), [
    ("not-a-prefix,1,MA,x\n", "'not-a-prefix' is not a prefix"),
    ("198.18.0.0/15,ASX,MA,x\n", "'ASX' is not an AS number"),
    ("198.18.0.0/15,1,Morocco,x\n", "'Morocco' is not a country code"),
    ("198.18.0.0/15\n", "expected prefix,asn,cc[,name]"),
])
def test_bad_asn_database_names_file_and_line(tmp_path: Path, text: str, reason: str) -> None:
    db = tmp_path / "asn.csv"
    db.write_text("# header\n" + text)
    with pytest.raises(IdentityConfigError, match=re.escape(f"{db}:2: {reason}")):
        load_asn_db(db)


async def test_dns_based_public_ip() -> None:
    net = FakeNetwork(names={"myip.test": [PUBLIC]})
    loop = asyncio.get_running_loop()
    source = DnsIpSource(name="myip.test", server=net.resolver)
    ip, why = await dns_public_ip(net, RunConfig(), source, loop.time() + 2)
    assert (ip, why) == (PUBLIC, "")


async def test_dns_ip_is_the_fallback_when_stun_fails(tmp_path: Path) -> None:
    conf = tmp_path / "identity.toml"
    conf.write_text('[identity]\nstun_servers = ["nostun.test:3478"]\n'
                    '[[identity.dns_ip]]\nname = "myip.test"\nserver = "198.18.0.53"\n')
    net = FakeNetwork(names={"myip.test": [PUBLIC]}, txt=dict(CYMRU))
    found = await lookup(RunConfig(timeout_s=3.0, identity_config=str(conf)), net)
    assert (found.ip, found.asn) == (PUBLIC, "AS64500")
    assert found.source.startswith("dns myip.test")


def test_origin_names() -> None:
    conf = IdentityConfig()
    assert origin_name("198.18.1.2", conf) == "2.1.18.198.origin.asn.cymru.com"
    assert origin_name("2001:db8::1", conf).endswith(".8.b.d.0.1.0.0.2.origin6.asn.cymru.com")


async def test_stun_public_ip_from_a_real_responder_on_loopback() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    port = sock.getsockname()[1]

    def serve() -> None:
        data, peer = sock.recvfrom(2048)
        sock.sendto(stun.binding_success(stun.parse(data), peer).encode(fingerprint=True), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()
    ip, why = await stun_public_ip(RealNetwork(), RunConfig(), "127.0.0.1", port,
                                   loop.time() + 2)
    thread.join(2)
    sock.close()
    assert (ip, why) == ("127.0.0.1", "")


def test_session_scrubs_the_public_ip_everywhere(tmp_path: Path) -> None:
    # A host that answers with the probe's own address: it must not reach the file.
    net = world()
    net.names["mirror.test"] = [PUBLIC]
    ep = Endpoint(service="s", function="messaging", check="tcp", host="mirror.test",
                  port=443, expected_networks=FAKE_NETWORKS)
    plan = Plan((Service("s", "s", (ep,)),))
    for include, present in ((False, False), (True, True)):
        out = tmp_path / f"out-{include}"
        outcome = run_session(plan, cfg(tmp_path, include_ip=include), out, net=net,
                              now=datetime(2016, 11, 4, 9, 30, tzinfo=UTC))
        data = outcome.results_file.read_bytes()
        assert (PUBLIC.encode() in data) is present
        assert "_AS64500_" in outcome.results_file.name
        assert outcome.summary["network"]["asn"] == "AS64500"


@pytest.mark.parametrize(("origin", "asn", "cc"), [
    ("64500 | 198.18.44.0/24 | MA | afrinic | 2016-01-07", "AS64500", "MA"),
    ("64500 | 198.18.44.0/24 | 1! | afrinic | 2016-01-07", "AS64500", "ZZ"),
    ("64500 | 198.18.44.0/24", "AS64500", "ZZ"),
    ("٦٤٥٠٠ | 198.18.44.0/24 | MA", "AS0", "ZZ"),  # not ASCII digits: not an ASN
    ("../../x | 198.18.44.0/24 | MA", "AS0", "ZZ"),
    ("", "AS0", "ZZ"),
    ("99999999999999999999 | 198.18.44.0/24 | MA", "AS0", "ZZ"),
])
async def test_malformed_cymru_answers_never_reach_names(tmp_path: Path, origin: str,
                                                         asn: str, cc: str) -> None:
    txt = {**CYMRU, "44.44.18.198.origin.asn.cymru.com": [origin]}
    net = world(txt=txt)
    found = await lookup(cfg(tmp_path), net)
    assert (found.asn, found.cc) == (asn, cc)
    assert re.fullmatch(r"AS\d+", found.asn) and re.fullmatch(r"[A-Z]{2}", found.cc)
