"""The stream check (a call-like RTP stream beside the baseline port) through the network
seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

import asyncio

from probe import failures
from tests.helpers import callpath_fakes as F
from tests.helpers.callpath_fakes import CALL_PORT, reflector_everywhere
from tests.helpers.callpath_fakes import run_call_check as run_check


# --- stream ------------------------------------------------------------------------------
async def test_stream_ok() -> None:
    keys, methods = await run_check("stream", reflector_everywhere(F.FakeCallNet()), host=None)
    assert keys["failure"] is None and methods == [], keys["reasons"]
    assert keys["call"]["sent"] == 50 and keys["call"]["received"] == 50
    assert keys["baseline"]["loss"] == 0.0


async def test_stream_throttled() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.throttle(0.5, CALL_PORT)))
    keys, methods = await run_check("stream", net, host=None)
    assert keys["failure"] is None and methods == ["throttled"]
    assert keys["call"]["loss"] > 0.5 and keys["baseline"]["loss"] == 0.0


async def test_stream_cut_off_is_throttled() -> None:
    net = reflector_everywhere(F.FakeCallNet())
    loop = asyncio.get_running_loop()
    start = loop.time()
    net.censor = lambda ip, port, data: port == CALL_PORT and loop.time() - start > 0.6
    keys, methods = await run_check("stream", net, host=None, stream_seconds=2.5,
                                    timeout_s=4.0)
    assert methods == ["throttled"] and "cut off" in " ".join(keys["reasons"])


async def test_stream_blocked_port() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.drop_ports(CALL_PORT)))
    keys, methods = await run_check("stream", net, host=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]
