"""The https check: status recorded never judged, and each failure placed at its layer,
through fakes and against a TLS server on loopback (tests/helpers/tlsserver.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe import failures
from probe.checks import https as https_check
from probe.model import Endpoint, RunConfig
from probe.net import Network, RealNetwork
from probe.resolve import DnsResult
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.helpers.checks import run_check, seeded
from tests.helpers.tlsserver import LoopbackTlsServer


async def run_https(net: Network, url: str, cfg: RunConfig | None = None,
                    seed: dict[str, DnsResult] | None = None, budget: float = 2.0
                    ) -> dict[str, Any]:
    ep = Endpoint(service="s", function="registration", check="https", url=url,
                  expected_networks=FAKE_NETWORKS)
    keys, _ = await run_check(net, ep, cfg, budget=budget, seed=seed)
    return keys


# --- https ------------------------------------------------------------------------------


async def test_loopback_https_status_is_recorded_not_judged(tmp_path: Path) -> None:
    with LoopbackTlsServer(["v.chat.test"], tmp_path, status=403) as srv:
        cfg = RunConfig(timeout_s=3.0, ca_bundle=str(srv.ca_file))
        keys = await run_https(RealNetwork(), f"https://v.chat.test:{srv.port}/v2/register",
                               cfg, seeded("v.chat.test"))
    assert keys["failure"] is None and https_check.methods(keys) == []
    assert keys["status_code"] == 403
    assert keys["requests"][0]["ip"] == "127.0.0.1" and keys["requests"][0]["body_length"] == 6


async def test_loopback_https_sni_filter_is_tls_sni(tmp_path: Path) -> None:
    with LoopbackTlsServer(["web.chat.test"], tmp_path, blocked_sni=("web.chat.test",)) as srv:
        cfg = RunConfig(timeout_s=3.0, ca_bundle=str(srv.ca_file))
        keys = await run_https(RealNetwork(), f"https://web.chat.test:{srv.port}/", cfg,
                               seeded("web.chat.test"))
    assert keys["requests"][0]["failure"] == failures.CONNECTION_RESET
    assert keys["tcp_connect"][0]["status"]["success"] is True
    assert (keys["failed_operation"], keys["sni_blocked"]) == ("tls_handshake", True)
    assert https_check.methods(keys) == ["tls_sni"]


async def test_loopback_https_no_http_answer_is_http_failure(tmp_path: Path) -> None:
    with LoopbackTlsServer(["web.chat.test"], tmp_path, mode="close") as srv:
        cfg = RunConfig(timeout_s=3.0, ca_bundle=str(srv.ca_file))
        keys = await run_https(RealNetwork(), f"https://web.chat.test:{srv.port}/", cfg,
                               seeded("web.chat.test"))
    assert keys["failed_operation"] == "http_round_trip"
    assert keys["failure"] is not None and not keys["failure"].startswith("unknown")
    assert https_check.methods(keys) == ["http_failure"]


async def test_fake_https_status_500_still_works_and_layers_of_failure() -> None:
    net = FakeNetwork(names={"v.chat.test": ["198.18.1.1"]}, http_status={"v.chat.test": 500})
    keys = await run_https(net, "https://v.chat.test/v2/register")
    assert keys["failure"] is None and keys["status_code"] == 500
    assert net.http_requests[0][2] == "v.chat.test"  # Host header: the name, not the IP
    refused = FakeNetwork(names={"v.chat.test": ["198.18.1.1"]})
    refused.censor.apply("reset_endpoint", hosts=["v.chat.test"])
    keys = await run_https(refused, "https://v.chat.test/v2/register")
    assert keys["failed_operation"] == "connect" and https_check.methods(keys) == ["tcp_refused"]
    bogon = FakeNetwork(names={"v.chat.test": ["10.10.34.35"]})
    keys = await run_https(bogon, "https://v.chat.test/v2/register")
    assert https_check.methods(keys) == ["dns_bogon"] and bogon.http_requests == []
