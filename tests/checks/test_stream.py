"""The stream check (a call-like RTP stream beside the baseline port) through the network
seam, in the fake world (the project's reflector logic answering) under the lab's censor
rules."""

from __future__ import annotations

import asyncio

from probe import failures
from tests.helpers.checks import CALL_PORT, call_world
from tests.helpers.checks import run_call_check as run_check


async def test_stream_ok() -> None:
    keys, methods = await run_check("stream", call_world(), host=None)
    assert keys["failure"] is None and methods == [], keys["reasons"]
    assert keys["call"]["sent"] == 50 and keys["call"]["received"] == 50
    assert keys["baseline"]["loss"] == 0.0


async def test_stream_throttled() -> None:
    # The throttled scenario's policer, slower: 1 kB/s each way (a second of rate plus a
    # 2 kB burst) against 10 kB/s of stream for 2 s lets about a quarter through.
    net = call_world()
    net.censor.apply("throttle_udp_ports", ports=[CALL_PORT], kbytes_per_s=1)
    keys, methods = await run_check("stream", net, host=None, stream_seconds=2.0,
                                    timeout_s=3.0)
    assert keys["failure"] is None and methods == ["throttled"]
    assert keys["call"]["loss"] > 0.5 and keys["baseline"]["loss"] == 0.0


async def test_stream_cut_off_is_throttled() -> None:
    net = call_world()
    # The censor starts dropping the call port 0.6 s into the call.
    asyncio.get_running_loop().call_later(0.6, lambda: net.censor.apply(
        "drop_udp_ports", ports=[CALL_PORT]))
    keys, methods = await run_check("stream", net, host=None, stream_seconds=2.5,
                                    timeout_s=4.0)
    assert methods == ["throttled"] and "cut off" in " ".join(keys["reasons"])


async def test_stream_blocked_port() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("stream", net, host=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]


async def test_stream_port_rejected_by_a_router_is_udp_blocked() -> None:
    from probe.testing import CENSOR_ROUTER

    net = call_world()
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("stream", net, host=None)
    assert methods == ["udp_blocked"] and keys["icmp_from"] == CENSOR_ROUTER


async def test_stream_cut_by_another_checks_app_probe_is_not_throttling() -> None:
    """Another check's app probe to the same port is dropped 0.6 s into the stream, and the
    censor blocks the port from then on (residual blocking): the stream's echoes stop right
    then. That check reports the block; the stream, no test of throttling any more, is
    not_applicable (after_other_app) with the probe's time stored."""
    from probe.checks import _trials

    net = call_world()
    shared: dict = {}
    loop = asyncio.get_running_loop()

    def other_app_probe() -> None:
        shared.setdefault(_trials._FLOWS, {}).setdefault(CALL_PORT, []).append(
            (loop.time(), -1, _trials.APP, ["m", _trials.APP, 40000, "lost"]))
        net.censor.apply("drop_udp_ports", ports=[CALL_PORT])

    loop.call_later(0.6, other_app_probe)
    keys, methods = await run_check("stream", net, host=None, stream_seconds=2.5,
                                    timeout_s=4.0, shared=shared)
    assert keys["outcome"] == "after_other_app" and methods == [], keys["reasons"]
    assert keys["failure"] == failures.NOT_APPLICABLE
    (dropped,) = keys["other_app_dropped_s"]
    assert abs(dropped - 0.6) < 0.2
    assert abs(float(keys["call"]["last_echoed_sent_s"]) - dropped) < 0.3


async def test_stream_throttled_beside_another_apps_dropped_probe_is_still_throttled() -> None:
    """A policer starves the stream from its start; another check's app probe dropped in
    the middle explains nothing: echoes kept coming after it (last echo far from it)."""
    from probe.checks import _trials

    net = call_world()
    net.censor.apply("throttle_udp_ports", ports=[CALL_PORT], kbytes_per_s=1)
    shared: dict = {}
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, lambda: shared.setdefault(_trials._FLOWS, {}).setdefault(
        CALL_PORT, []).append((loop.time(), -1, _trials.APP, ["m", _trials.APP, 1, "lost"])))
    keys, methods = await run_check("stream", net, host=None, stream_seconds=2.0,
                                    timeout_s=3.0, shared=shared)
    assert methods == ["throttled"] and keys["other_app_dropped_s"], keys
