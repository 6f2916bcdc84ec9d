"""The call-path checks on the real network seam against real servers on loopback:
coturn (stun, turn) and our reflector (udp, differential, stream)."""

from __future__ import annotations

from typing import Any

import pytest

from probe import failures, reflector
from probe.model import Endpoint, RunConfig
from probe.net import RealNetwork
from tests.helpers.checks import run_check
from tests.helpers.coturn import coturn, free_udp_port

REFLECTOR = "127.0.0.2"


async def run_real(check: str, *, host: str | None, port: int, timeout_s: float = 3.0,
                   options: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    cfg = RunConfig(timeout_s=timeout_s, reflector=REFLECTOR, stream_seconds=1.0)
    ep = Endpoint(service="svc", function="calls", check=check, host=host, port=port,
                  options=options or {}, source="test:1")
    return await run_check(RealNetwork(), ep, cfg)


@pytest.fixture
async def reflector_on_loopback():  # type: ignore[no-untyped-def]
    port = free_udp_port(REFLECTOR)
    r = await reflector.start(REFLECTOR, [443, port])
    if 443 not in r.ports:
        r.close()
        pytest.skip(f"cannot bind UDP {REFLECTOR}:443 ({r.failed.get(443)}); needs root")
    yield port
    r.close()


async def test_stun_and_turn_against_coturn() -> None:
    with coturn() as (host, port):
        keys, methods = await run_real("stun", host=host, port=port)
        assert keys["failure"] is None and methods == []
        resp = keys["stun_binding"]["response"]
        assert resp["type"] == "0x0101" and resp["mapped_address"] == "[scrubbed]"
        assert "FINGERPRINT" in resp["attributes"]
        keys, methods = await run_real("turn", host=host, port=port)
        assert keys["failure"] is None and methods == []
        assert keys["turn_allocate"]["response"]["error_code"] == 401


async def test_stun_icmp_port_unreachable_on_loopback() -> None:
    port = free_udp_port("127.0.0.77")
    keys, _ = await run_real("stun", host="127.0.0.77", port=port)
    assert keys["failure"] == failures.PORT_UNREACHABLE


async def test_reflector_checks_on_loopback(reflector_on_loopback: int) -> None:
    port = reflector_on_loopback
    for flavor in ("whatsapp", "teams", "google", "viber"):
        keys, methods = await run_real("differential", host=None, port=port,
                                       options={"flavor": flavor})
        assert keys["failure"] is None and keys["outcome"] == "ok", keys
    keys, methods = await run_real("udp", host=None, port=port)
    assert keys["outcome"] == "ok" and methods == []
    closed = free_udp_port(REFLECTOR)
    keys, methods = await run_real("udp", host=None, port=closed)
    assert keys["failure"] is None and keys["outcome"] == "nothing_listens"
    keys, methods = await run_real("stream", host=None, port=port)
    assert keys["failure"] is None and methods == []
    assert keys["call"]["received"] >= 45 and keys["baseline"]["received"] >= 45
