"""The dns check: every failure it can produce, through the fake seam and a real DNS
server on loopback, and the control resolver's (--doh) evidence.

Public-looking addresses below appear only in the fake world's tables (nothing is sent)."""

from __future__ import annotations

from typing import Any

import pytest

from probe import failures
from probe.checks import dns as dns_check
from probe.model import Endpoint, RunConfig
from probe.net import Network, RealNetwork
from probe.resolve import parse_resolver
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import run_check
from tests.helpers.dnsserver import LoopbackDnsServer, zone_handler

# The test worlds (the fake one and loopback) live in bogon space; their hosts expect it.
TEST_WORLD = (*FAKE_NETWORKS, "127.0.0.0/8", "::1/128")


async def resolve(net: Network, host: str, cfg: RunConfig | None = None, budget: float = 2.0,
                  expected: tuple[str, ...] = TEST_WORLD) -> dict[str, Any]:
    ep = Endpoint(service="s", function="dns", check="dns", host=host,
                  expected_networks=expected)
    keys, _ = await run_check(net, ep, cfg, budget=budget)
    return keys


@pytest.mark.parametrize(("how", "failure", "method"), [
    ("dns_nxdomain", failures.DNS_NXDOMAIN, "dns_nxdomain"),
    ("dns_servfail", failures.DNS_SERVFAIL, "dns_servfail"),
    ("resolver refuses", failures.DNS_REFUSED, None),
    ("drop_endpoint", failures.GENERIC_TIMEOUT, "dns_timeout"),
])
async def test_fake_dns_failures(how: str, failure: str, method: str | None) -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    if how == "resolver refuses":  # the resolver's own doing, no censor
        net.dns_faults["a.test"] = "refused"
    elif how == "drop_endpoint":  # the censor drops the queries to the resolver
        net.censor.apply(how, addresses=[net.resolver], proto="udp")
    else:
        net.censor.apply(how, hosts=["a.test"])
    keys = await resolve(net, "a.test", budget=1.5)
    assert keys["failure"] == failure
    assert keys["addresses"] == []
    assert dns_check.methods(keys) == ([method] if method else [])


async def test_fake_dns_answer_and_retransmission_count() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1", "2001:db8::1"]})
    keys = await resolve(net, "a.test")
    assert keys["failure"] is None
    assert keys["addresses"] == ["198.18.1.1", "2001:db8::1"]
    a, aaaa = keys["queries"]
    assert (a["rcode"], a["attempts"], a["answers"][0]["ipv4"]) == ("NOERROR", 1, "198.18.1.1")
    assert aaaa["answers"][0]["ipv6"] == "2001:db8::1"


async def test_fake_garbage_reply_is_misbehaving_not_a_crash() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]}, dns_faults={"a.test": "garbage"})
    keys = await resolve(net, "a.test", budget=1.2)
    # Garbage is set aside (an injector might send it) and the check keeps waiting for a
    # valid reply; none came, so the resolver is misbehaving.
    assert keys["failure"] == failures.DNS_SERVER_MISBEHAVING
    assert keys["queries"][0]["attempts"] == 2
    assert keys["queries"][0]["ignored_replies"][0]["reason"] == failures.DNS_SERVER_MISBEHAVING


async def test_ip_literal_needs_no_lookup() -> None:
    net = FakeNetwork()
    net.censor.apply("drop_endpoint", addresses=[net.resolver], proto="udp")  # no DNS at all
    keys = await resolve(net, "198.18.3.3")
    assert keys["failure"] is None and keys["addresses"] == ["198.18.3.3"]


async def test_no_resolver_configured() -> None:
    net = FakeNetwork(resolver="")
    assert net.system_resolvers() == []
    keys = await resolve(net, "a.test")
    assert keys["failure"] == failures.DNS_NO_RESOLVER


def test_parse_resolver() -> None:
    assert parse_resolver("198.18.0.53") == ("198.18.0.53", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:53") == ("::1", 53)
    assert parse_resolver("::1") == ("::1", 53)
    for bad in ("dns.google", "1.2.3.4:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_resolver(bad)


# --- a real DNS server on loopback -------------------------------------------------------

ZONE = {"ok.test": ["127.0.0.1", "::1"], "v4only.test": ["127.0.0.2"]}


@pytest.fixture
def server():
    rules = {"nx.test": "nxdomain", "sf.test": "servfail", "garbage.test": "garbage",
             "silent.test": "silent", "wrongid.test": "wrong_id"}
    with LoopbackDnsServer(zone_handler(ZONE, rules)) as srv:
        yield srv


@pytest.mark.parametrize(("host", "failure"), [
    ("ok.test", None),
    ("v4only.test", None),
    ("nx.test", failures.DNS_NXDOMAIN),
    ("unknown.test", failures.DNS_NXDOMAIN),
    ("sf.test", failures.DNS_SERVFAIL),
    ("silent.test", failures.GENERIC_TIMEOUT),
    ("garbage.test", failures.DNS_SERVER_MISBEHAVING),
    ("wrongid.test", failures.DNS_WRONG_QUERY_ID),
])
async def test_loopback_server(server: LoopbackDnsServer, host: str, failure: str | None) -> None:
    cfg = RunConfig(timeout_s=1.5, resolver=server.resolver)
    keys = await resolve(RealNetwork(), host, cfg, budget=1.5)
    assert keys["failure"] == failure
    assert keys["resolver"] == server.resolver
    if failure is None:
        assert keys["addresses"] == ZONE[host]


async def test_loopback_silent_server_gets_retransmissions(server: LoopbackDnsServer) -> None:
    cfg = RunConfig(timeout_s=2.5, resolver=server.resolver)
    keys = await resolve(RealNetwork(), "silent.test", cfg, budget=2.5)
    # Sent at 0, 1 and 3 s would exceed 2.5 s: so at 0 and 1 s (RTO 1 s, doubling).
    assert keys["queries"][0]["attempts"] == 2
    assert server.queries.count(("silent.test", "A")) == 2


async def test_icmp_port_unreachable_is_connection_refused() -> None:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: the kernel answers with ICMP port unreachable
    cfg = RunConfig(timeout_s=1.0, resolver=f"127.0.0.1:{port}")
    keys = await resolve(RealNetwork(), "ok.test", cfg, budget=1.0)
    assert keys["failure"] == failures.CONNECTION_REFUSED


# --- the control resolver (--doh) --------------------------------------------------------

DOH = "https://doh.test/dns-query"


@pytest.mark.parametrize(("control", "failure", "methods"), [
    (["157.240.1.1"], failures.DNS_UNEXPECTED_NETWORK, ["dns_injection"]),  # disagrees
    (["1.2.3.4"], None, []),  # the vendor moved: the control sees the same address
])
async def test_answer_outside_expected_networks_needs_the_control(
        control: list[str], failure: str | None, methods: list[str]) -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]}, doh_names={"a.test": control})
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await resolve(net, "a.test", cfg, expected=("157.240.0.0/16",))
    assert keys["suspicious_answers"] == ["1.2.3.4"]
    assert keys["control"]["addresses"] == control
    assert keys["control"]["queries"][0]["engine"] == "doh"
    assert keys["failure"] == failure
    assert dns_check.methods(keys) == methods


async def test_suspicious_answer_without_a_control_is_only_recorded() -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]})
    keys = await resolve(net, "a.test", expected=("157.240.0.0/16",))
    assert keys["failure"] is None and keys["suspicious_answers"] == ["1.2.3.4"]
    assert keys["control"] is None and dns_check.methods(keys) == []


async def test_unreachable_control_is_recorded_not_taken_as_evidence() -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]})
    net.censor.apply("sni_reset", hosts=["doh.test"])
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await resolve(net, "a.test", cfg, expected=("157.240.0.0/16",))
    assert keys["control"]["failure"] == failures.CONNECTION_RESET
    assert keys["failure"] is None and dns_check.methods(keys) == []


async def test_control_answers_a_failed_lookup_too() -> None:
    net = FakeNetwork(names={}, doh_names={"a.test": ["157.240.1.1"]})
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await resolve(net, "a.test", cfg, expected=("157.240.0.0/16",))
    assert keys["failure"] == failures.DNS_NXDOMAIN
    assert keys["control"]["addresses"] == ["157.240.1.1"]
    assert dns_check.methods(keys) == ["dns_nxdomain"]
