"""The udp check (echo from the reflector on a call port, baseline 443) through the network
seam, in the fake world (the project's reflector logic answering) under the lab's censor
rules."""

from __future__ import annotations

from probe import failures
from probe import testing as T
from probe.testing import FakeNetwork
from tests.helpers.checks import CALL_PORT, REFLECTOR, call_world
from tests.helpers.checks import run_call_check as run_check


async def test_udp_echo_ok() -> None:
    keys, methods = await run_check("udp", call_world(), host=None)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == []


async def test_udp_blocked_port() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("udp", net, host=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]


async def test_udp_icmp_from_reflector_is_never_blocking() -> None:
    net = call_world(udp={(REFLECTOR, CALL_PORT): T.icmp_port_unreachable})
    keys, methods = await run_check("udp", net, host=None)
    assert keys["failure"] is None and keys["outcome"] == "nothing_listens" and methods == []


async def test_udp_reflector_down_is_not_applicable() -> None:
    keys, methods = await run_check("udp", FakeNetwork(), host=None)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []


async def test_udp_without_reflector_is_not_applicable() -> None:
    keys, _ = await run_check("udp", FakeNetwork(), host=None, reflector=None)
    assert keys["failure"] == failures.NOT_APPLICABLE


async def test_udp_random_loss_is_not_blocking() -> None:
    # 50 % each way on every port, the baseline's too (the lab's random_loss).
    net = call_world(seed=3)
    net.censor.apply("random_loss", percent=50)
    keys, methods = await run_check("udp", net, host=None, timeout_s=4.0)
    assert keys["outcome"] == "ok" and methods == []


async def test_udp_icmp_reject_from_a_router_is_udp_blocked() -> None:
    net = call_world()
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("udp", net, host=None)
    assert methods == ["udp_blocked"] and keys["icmp_from"] == T.CENSOR_ROUTER


async def test_udp_every_datagram_is_a_fresh_flow() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    keys, _ = await run_check("udp", net, host=None)
    ports = [f[2] for f in keys["echo"]["flows"]]
    assert len(ports) == 6 and len(set(ports)) == 6
