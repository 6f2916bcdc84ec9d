"""The run's shared resolver: bogon answers fail the lookup for every check using the
host, unless inside its expected networks."""

from __future__ import annotations

import asyncio

import pytest

from probe import failures
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.model import RunConfig
from probe.net import RealNetwork
from probe.resolve import HostResolver
from probe.resolve.wire import DUPLICATE_MIN_S
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import resolving_check as check
from tests.helpers.dnsserver import QueueingDnsServer, zone_handler

LOOPBACK = ("127.0.0.0/8",)


async def test_bogon_answer_fails_the_lookup_for_every_check() -> None:
    net = FakeNetwork(names={"a.test": ["10.10.34.35"]})
    keys = await check(net, "a.test")
    assert keys["failure"] == failures.DNS_BOGON
    assert keys["bogon_answers"] == ["10.10.34.35"] and keys["addresses"] == []
    assert dns_check.methods(keys) == ["dns_bogon"]
    assert keys["injection_probe"]["target"] is None  # never a probe to a forged address
    tcp = await check(net, "a.test", name="tcp")
    assert (tcp["failure"], tcp["failed_operation"]) == (failures.DNS_BOGON, "resolve")
    assert tcp_check.methods(tcp) == ["dns_bogon"]
    assert net.connects == []  # nothing sent to the bogon


async def test_answer_inside_expected_networks_is_no_bogon() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    keys = await check(net, "a.test")
    assert keys["failure"] is None and dns_check.methods(keys) == []
    assert keys["tampering"] == [] and keys["suspicious_answers"] == []
    # The injection probe went to the host's own address and met "nothing listens".
    probe = keys["injection_probe"]
    assert (probe["target"], probe["injected"], probe["ended_by"]) == (
        "198.18.1.1:53", False, "icmp_error")


# --- pacing the burst and answers ahead of the listening window --------------------------

@pytest.mark.parametrize(("max_outstanding", "paced"), [(6, True), (1000, False)])
async def test_the_burst_of_lookups_is_paced(max_outstanding: int, paced: bool) -> None:
    """40 hosts (80 queries) at once against a resolver that answers each query 50 ms
    later: never more than ``max_outstanding`` of them wait for their answer at the
    server; without pacing the whole burst does (so the count can tell)."""
    hosts = [f"h{i}.test" for i in range(40)]
    zone = {h: [f"127.0.1.{i + 1}"] for i, h in enumerate(hosts)}
    with QueueingDnsServer(zone_handler(zone), delay_s=0.05) as srv:
        cfg = RunConfig(timeout_s=5.0, resolver=srv.resolver)
        resolver = HostResolver(RealNetwork(), cfg, expected={h: LOOPBACK for h in hosts},
                                max_outstanding=max_outstanding)
        deadline = asyncio.get_running_loop().time() + 5.0
        results = await asyncio.gather(*(resolver.resolve(h, deadline) for h in hosts))
        await asyncio.gather(*(resolver.lookup(h, deadline) for h in hosts))
    assert [r.addresses for r in results] == [zone[h] for h in hosts]
    assert len(srv.queries) == 80  # one A and one AAAA each, none retransmitted
    if paced:
        assert 2 <= srv.max_in_flight <= max_outstanding
    else:
        assert srv.max_in_flight > 6


async def test_checks_get_the_answer_before_the_listening_window_ends() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    resolver = HostResolver(net, RunConfig(timeout_s=5.0), expected={"a.test": FAKE_NETWORKS})
    deadline = asyncio.get_running_loop().time() + 5.0
    early = await resolver.resolve("a.test", deadline)
    assert early.addresses == ["198.18.1.1"] and early.failure is None
    assert resolver.results() == {}  # the lookup still listens for late duplicates
    final = await resolver.lookup("a.test", deadline)
    assert final.addresses == early.addresses
    assert all(q["t"] >= DUPLICATE_MIN_S for q in final.test_keys["queries"])
    assert list(resolver.results()) == ["a.test"]


async def test_a_check_that_went_ahead_on_an_injected_answer_is_that_dns_failure() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    net.censor.apply("dns_injection", hosts=["a.test"], answer="198.18.9.9")
    tcp = await check(net, "a.test", name="tcp")
    assert (tcp["failure"], tcp["failed_operation"]) == (failures.DNS_INJECTED, "resolve")
    assert tcp_check.methods(tcp) == ["dns_injection"]
    # What it measured on the forged answer is kept, not passed off as the result.
    assert tcp["early_answer"]["addresses"] == ["198.18.9.9"]
    assert tcp["early_answer"]["test_keys"]["tcp_connect"][0]["ip"] == "198.18.9.9"


async def test_a_forged_bogon_first_waits_for_the_whole_lookup() -> None:
    """The injector's bogon comes first and the real answer late: checks get the
    lookup's verdict (injection), never the bogon failure the first reply alone shows."""
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    net.censor.apply("dns_injection", hosts=["a.test"], answer="10.10.34.35")
    tcp = await check(net, "a.test", name="tcp")
    assert (tcp["failure"], tcp["failed_operation"]) == (failures.DNS_INJECTED, "resolve")
    assert tcp_check.methods(tcp) == ["dns_injection"]
    assert net.connects == []
