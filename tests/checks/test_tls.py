"""The tls check: each failure through fakes, and for real against a TLS server on
loopback with a throwaway CA (tests/helpers/tlsserver.py), which can also filter an SNI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe import failures
from probe.checks import _tls as tls_helpers
from probe.checks import tls as tls_check
from probe.model import Endpoint, RunConfig
from probe.net import Network, RealNetwork
from probe.resolve import DnsResult
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import run_check, seeded
from tests.helpers.tlsserver import LoopbackTlsServer


async def run_tls(net: Network, host: str, port: int = 443, cfg: RunConfig | None = None,
                  seed: dict[str, DnsResult] | None = None, budget: float = 2.0,
                  **options: str) -> dict[str, Any]:
    ep = Endpoint(service="s", function="web", check="tls", host=host, port=port,
                  expected_networks=FAKE_NETWORKS, options=options)
    keys, _ = await run_check(net, ep, cfg, budget=budget, seed=seed)
    return keys


# --- tls through fakes ----------------------------------------------------------------

WORLD = {"chat.test": ["198.18.1.1"]}


async def test_fake_tls_ok_and_decoy_completes() -> None:
    net = FakeNetwork(names=WORLD)
    keys = await run_tls(net, "chat.test")
    assert keys["failure"] is None and tls_check.methods(keys) == []
    roles = {h["role"]: h for h in keys["tls_handshakes"]}
    assert roles["target"]["failure"] is None and roles["target"]["sni"] == "chat.test"
    # The decoy name is not on the certificate: that still is a completed handshake.
    assert roles["decoy"]["failure"] == failures.SSL_INVALID_HOSTNAME
    assert roles["decoy"]["sni"] == tls_check.DEFAULT_DECOY_SNI


@pytest.mark.parametrize("how", ["sni_reset", "silent"])
async def test_fake_only_the_real_sni_fails_is_tls_sni(how: str) -> None:
    # The lab's sni_reset; or the name's handshake blackholed (no lab rule drops by SNI:
    # the server never answers that name).
    net = FakeNetwork(names=WORLD)
    if how == "sni_reset":
        net.censor.apply(how, hosts=["chat.test"])
    else:
        net.tls_faults["chat.test"] = how
    keys = await run_tls(net, "chat.test", budget=1.0)
    assert keys["sni_blocked"] is True and keys["failed_operation"] == "tls_handshake"
    assert keys["failure"] == (failures.CONNECTION_RESET if how == "sni_reset"
                               else failures.GENERIC_TIMEOUT)
    assert tls_check.methods(keys) == ["tls_sni"]
    # The blackholed first handshake did not starve the decoy (half the budget each).
    assert {h["role"] for h in keys["tls_handshakes"]} == {"target", "decoy"}


@pytest.mark.parametrize("decoy_first", [False, True])
@pytest.mark.parametrize("first", ["silent", "reset"])
async def test_fake_real_sni_failing_once_is_retried_and_works(
        first: str, decoy_first: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real handshake that stalls (or is reset) once, next to a decoy that completes, is
    # not SNI filtering when the name then completes: a slow moment, not a filter. Either
    # order leaves the retry room in the budget.
    monkeypatch.setattr(tls_helpers.random, "shuffle",
                        lambda order: order.reverse() if decoy_first else None)
    net = FakeNetwork(names=WORLD, tls_faults={"chat.test": [first, "ok"]})
    keys = await run_tls(net, "chat.test", budget=2.0)
    assert keys["failure"] is None and keys["sni_blocked"] is False
    assert tls_check.methods(keys) == []
    reals = [h for h in keys["tls_handshakes"] if h["role"] == "target"]
    assert [r["failure"] is None for r in reals] == [False, True]
    assert max(h["order"] for h in keys["tls_handshakes"]) == 2  # after the decoy


async def test_fake_sni_filter_fails_the_retry_too() -> None:
    net = FakeNetwork(names=WORLD)
    net.censor.apply("sni_reset", hosts=["chat.test"])
    keys = await run_tls(net, "chat.test", budget=2.0)
    reals = [h for h in keys["tls_handshakes"] if h["role"] == "target"]
    assert len(reals) == 2 and all(r["failure"] == failures.CONNECTION_RESET for r in reals)
    assert keys["sni_blocked"] is True and tls_check.methods(keys) == ["tls_sni"]


async def test_fake_no_retry_when_the_decoy_fails_too() -> None:
    net = FakeNetwork(names=WORLD, tls_faults={"chat.test": "handshake_failure",
                                               "example.com": "handshake_failure"})
    keys = await run_tls(net, "chat.test", budget=2.0)
    assert len(keys["tls_handshakes"]) == 2  # one real, one decoy: both failing is no SNI sign


async def test_fake_both_names_fail_handshake_is_tls_failure() -> None:
    net = FakeNetwork(names=WORLD, tls_faults={"chat.test": "handshake_failure",
                                               "example.com": "handshake_failure"})
    keys = await run_tls(net, "chat.test")
    assert keys["tcp_connect"][0]["status"]["success"] is True
    assert (keys["failure"], keys["failed_operation"]) == (
        failures.SSL_FAILED_HANDSHAKE, "tls_handshake")
    assert tls_check.methods(keys) == ["tls_failure"]


async def test_fake_certificate_problem_on_the_real_name_is_not_sni_filtering() -> None:
    net = FakeNetwork(names=WORLD, tls_faults={"chat.test": "unknown_authority"})
    keys = await run_tls(net, "chat.test")
    assert keys["failure"] == failures.SSL_UNKNOWN_AUTHORITY and not keys["sni_blocked"]
    assert tls_check.methods(keys) == ["tls_failure"]


@pytest.mark.parametrize(("how", "method"), [("reset", "tcp_reset"),
                                              ("refused", "tcp_refused"),
                                              ("reset_endpoint", "tcp_refused"),
                                              ("drop_endpoint", "tcp_timeout")])
async def test_fake_tcp_blocked_is_placed_at_tcp(how: str, method: str) -> None:
    net = FakeNetwork(names=WORLD)
    if how.endswith("_endpoint"):  # the censor
        net.censor.apply(how, addresses=["198.18.1.1"])
    else:  # the server
        net.tcp_faults[("198.18.1.1", 443)] = how
    keys = await run_tls(net, "chat.test", budget=0.6)
    assert keys["failed_operation"] == "connect"
    assert tls_check.methods(keys) == [method]


async def test_fake_dns_failure_is_placed_at_dns() -> None:
    net = FakeNetwork(names=WORLD)
    net.censor.apply("dns_nxdomain", hosts=["chat.test"])
    keys = await run_tls(net, "chat.test")
    assert keys["failed_operation"] == "resolve" and tls_check.methods(keys) == ["dns_nxdomain"]
    assert net.handshakes == []


async def test_sni_option_and_random_order() -> None:
    firsts = set()
    for _ in range(20):
        net = FakeNetwork(names=WORLD, cert_names={"front.test"})
        keys = await run_tls(net, "chat.test", sni="front.test", decoy_sni="other.test")
        assert keys["failure"] is None
        assert {h[2] for h in net.handshakes} == {"front.test", "other.test"}
        firsts.add(min(keys["tls_handshakes"], key=lambda h: h["order"])["role"])
    assert firsts == {"target", "decoy"}  # neither one always goes first


# --- tls against a real server on loopback --------------------------------------------


async def test_loopback_tls_verified_with_the_ca_bundle(tmp_path: Path) -> None:
    with LoopbackTlsServer(["chat.test"], tmp_path) as srv:
        cfg = RunConfig(timeout_s=3.0, ca_bundle=str(srv.ca_file))
        keys = await run_tls(RealNetwork(), "chat.test", srv.port, cfg, seeded("chat.test"))
    assert keys["failure"] is None
    roles = {h["role"]: h for h in keys["tls_handshakes"]}
    assert roles["target"]["tls_version"].startswith("TLSv1")
    assert roles["decoy"]["failure"] == failures.SSL_INVALID_HOSTNAME


async def test_loopback_sni_filter_is_tls_sni(tmp_path: Path) -> None:
    with LoopbackTlsServer(["chat.test"], tmp_path, blocked_sni=("chat.test",)) as srv:
        cfg = RunConfig(timeout_s=3.0, ca_bundle=str(srv.ca_file))
        keys = await run_tls(RealNetwork(), "chat.test", srv.port, cfg, seeded("chat.test"))
        assert srv.resets == 2  # the real name, and its retry after the decoy completed
    assert keys["failure"] == failures.CONNECTION_RESET
    assert tls_check.methods(keys) == ["tls_sni"]


async def test_loopback_unknown_ca_is_tls_failure(tmp_path: Path) -> None:
    with LoopbackTlsServer(["chat.test"], tmp_path) as srv:
        keys = await run_tls(RealNetwork(), "chat.test", srv.port, RunConfig(timeout_s=3.0),
                             seeded("chat.test"))
    assert keys["failure"] == failures.SSL_UNKNOWN_AUTHORITY
    assert tls_check.methods(keys) == ["tls_failure"]
