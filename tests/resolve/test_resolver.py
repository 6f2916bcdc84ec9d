"""The run's shared resolver: bogon answers fail the lookup for every check using the
host, unless inside its expected networks."""

from __future__ import annotations

from typing import Any

from probe import failures
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.model import Endpoint, RunConfig
from probe.net import Network
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import run_check


async def check(net: Network, host: str, expected: tuple[str, ...] = FAKE_NETWORKS,
                cfg: RunConfig | None = None, budget: float = 2.0,
                name: str = "dns") -> dict[str, Any]:
    ep = Endpoint(service="s", function="dns" if name == "dns" else "messaging", check=name,
                  host=host, port=None if name == "dns" else 443, expected_networks=expected)
    keys, _ = await run_check(net, ep, cfg, budget=budget)
    return keys


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
