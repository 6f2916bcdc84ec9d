"""Every failure the TCP check can produce, through fakes and through loopback."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from probe import failures
from probe.checks import tcp as tcp_check
from probe.model import Endpoint
from probe.net import Network, RealNetwork
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import run_check


async def run_tcp(net: Network, host: str, port: int, budget: float = 1.0) -> dict[str, Any]:
    ep = Endpoint(service="s", function="messaging", check="tcp", host=host, port=port,
                  expected_networks=FAKE_NETWORKS)
    keys, _ = await run_check(net, ep, budget=budget)
    return keys


@pytest.mark.parametrize(("server", "rule", "failure", "method"), [
    ("ok", None, None, None),
    ("refused", None, failures.CONNECTION_REFUSED, "tcp_refused"),  # nothing listens
    ("reset", None, failures.CONNECTION_RESET, "tcp_reset"),
    ("unreachable", None, failures.HOST_UNREACHABLE, None),  # no route
    ("ok", "drop_endpoint", failures.GENERIC_TIMEOUT, "tcp_timeout"),
    ("ok", "reset_endpoint", failures.CONNECTION_REFUSED, "tcp_refused"),  # RST to the SYN
    ("ok", "reject_endpoint", failures.HOST_UNREACHABLE, None),  # ICMP admin-prohibited
])
async def test_fake_connect_outcomes(server: str, rule: str | None, failure: str | None,
                                     method: str | None) -> None:
    net = FakeNetwork(names={"e1.test": ["198.18.1.1"]},
                      tcp_faults={("198.18.1.1", 443): server})
    if rule:
        net.censor.apply(rule, hosts=["e1.test"])
    keys = await run_tcp(net, "e1.test", 443, budget=0.3)
    assert keys["failure"] == failure
    assert keys["tcp_connect"][0]["status"]["failure"] == failure
    assert tcp_check.methods(keys) == ([method] if method else [])


async def test_every_address_is_tried_and_one_success_is_enough() -> None:
    net = FakeNetwork(names={"e1.test": ["198.18.1.1", "198.18.1.2"]},
                      tcp_faults={("198.18.1.1", 443): "reset"})
    keys = await run_tcp(net, "e1.test", 443)
    assert keys["failure"] is None
    outcome = {a["ip"]: a["status"]["success"] for a in keys["tcp_connect"]}
    assert outcome == {"198.18.1.1": False, "198.18.1.2": True}


async def test_resolution_failure_is_reported_as_dns_method() -> None:
    net = FakeNetwork()
    net.censor.apply("dns_nxdomain", hosts=["e1.test"])
    keys = await run_tcp(net, "e1.test", 443)
    assert (keys["failure"], keys["failed_operation"]) == (failures.DNS_NXDOMAIN, "resolve")
    assert tcp_check.methods(keys) == ["dns_nxdomain"]
    assert net.connects == []


async def test_ipv6_unreachable_does_not_hide_ipv4_failure() -> None:
    net = FakeNetwork(names={"e1.test": ["2001:db8::1", "198.18.1.1"]},
                      tcp_faults={("2001:db8::1", 443): "unreachable",
                                  ("198.18.1.1", 443): "reset"})
    keys = await run_tcp(net, "e1.test", 443)
    assert keys["failure"] == failures.CONNECTION_RESET


async def test_loopback_open_and_closed_ports() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    open_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        ok = await run_tcp(RealNetwork(), "127.0.0.1", open_port)
        refused = await run_tcp(RealNetwork(), "127.0.0.1", closed_port)
    finally:
        listener.close()
    assert ok["failure"] is None
    assert refused["failure"] == failures.CONNECTION_REFUSED
    assert tcp_check.methods(refused) == ["tcp_refused"]
