"""The udp check (echo from the reflector on a call port, baseline 443) through the network
seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

from probe import failures
from tests.helpers import callpath_fakes as F
from tests.helpers.callpath_fakes import CALL_PORT, REFLECTOR, reflector_everywhere
from tests.helpers.callpath_fakes import run_call_check as run_check


# --- udp -------------------------------------------------------------------------------
async def test_udp_echo_ok() -> None:
    keys, methods = await run_check("udp", reflector_everywhere(F.FakeCallNet()), host=None)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == []


async def test_udp_blocked_port() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.drop_ports(CALL_PORT)))
    keys, methods = await run_check("udp", net, host=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]


async def test_udp_icmp_from_reflector_is_never_blocking() -> None:
    net = reflector_everywhere(F.FakeCallNet())
    net.responders[(REFLECTOR, CALL_PORT)] = F.icmp_port_unreachable
    keys, methods = await run_check("udp", net, host=None)
    assert keys["failure"] is None and keys["outcome"] == "nothing_listens" and methods == []


async def test_udp_reflector_down_is_not_applicable() -> None:
    keys, methods = await run_check("udp", F.FakeCallNet(), host=None)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []


async def test_udp_without_reflector_is_not_applicable() -> None:
    keys, _ = await run_check("udp", F.FakeCallNet(), host=None, reflector=None)
    assert keys["failure"] == failures.NOT_APPLICABLE


async def test_udp_random_loss_is_not_blocking() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.throttle(0.5, CALL_PORT, seed=3)))
    keys, methods = await run_check("udp", net, host=None, timeout_s=4.0)
    assert keys["outcome"] == "ok" and methods == []
