"""The probe's side of the reflector's cookie (probe/checks/_reflector.py) in the fake
world, whose reflector is the real reflector logic: one cookie per run and reflector,
fetched on port 443 and the check's port at once, fetched again before it expires; every
datagram the checks send to the reflector carries its token; no cookie is
``not_applicable``, as an unreachable reflector is."""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures, reflector
from probe.checks import CheckContext, get_check
from probe.checks._reflector import BASELINE_PORT, reflector_cookie
from probe.model import Endpoint, RunConfig
from probe.resolve import HostResolver
from probe.testing import CLIENT, FAKE_REFLECTOR, FakeNetwork
from tests.helpers.checks import CALL_PORT, REFLECTOR, call_world


def hellos(net: FakeNetwork) -> list[int]:
    """The ports cookie requests went to, in order."""
    return [port for ip, port, data in net.udp_sent
            if data.startswith(reflector.HELLO_PREFIX)]


def run_context(net: FakeNetwork, shared: dict[str, Any], timeout_s: float = 4.0
                ) -> CheckContext:
    cfg = RunConfig(timeout_s=timeout_s, reflector=REFLECTOR, stream_seconds=1.0)
    return CheckContext(cfg=cfg, net=net, resolver=HostResolver(net, cfg),
                        deadline=asyncio.get_running_loop().time() + timeout_s,
                        shared=shared)


async def run_in(net: FakeNetwork, shared: dict[str, Any], check: str, port: int,
                 options: dict[str, Any] | None = None, timeout_s: float = 4.0
                 ) -> dict[str, Any]:
    ep = Endpoint(service="svc", function="calls", check=check, host=None, port=port,
                  options=options or {}, source="test:1")
    return await get_check(check).run(ep, run_context(net, shared, timeout_s))


async def test_one_cookie_per_run_and_every_datagram_carries_a_token() -> None:
    net = call_world()
    shared: dict[str, Any] = {}
    results = await asyncio.gather(
        run_in(net, shared, "udp", CALL_PORT),
        run_in(net, shared, "differential", CALL_PORT + 1, {"flavor": "whatsapp"}),
        run_in(net, shared, "stream", 19302))
    assert [r["outcome"] for r in results] == ["ok", "ok", "ok"], results
    # one cookie request on the baseline port and on each check's port, all at once
    assert sorted(hellos(net)) == [BASELINE_PORT, CALL_PORT, CALL_PORT + 1, 19302]
    sent = [d for ip, port, d in net.udp_sent if not d.startswith(reflector.HELLO_PREFIX)]
    assert len(sent) > 100 and all(FAKE_REFLECTOR.proven(d, CLIENT[0]) for d in sent)
    # a later check of the same run fetches nothing
    await run_in(net, shared, "udp", 3480)
    assert len(hellos(net)) == 4


async def test_the_cookie_comes_from_the_checks_port_when_443_is_blocked() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[BASELINE_PORT])
    shared: dict[str, Any] = {}
    keys = await run_in(net, shared, "udp", CALL_PORT)
    assert keys["outcome"] == "ok" and keys["failure"] is None, keys
    assert shared["reflector_cookies"][REFLECTOR].cookie.port == CALL_PORT


async def test_a_cookie_is_fetched_again_before_it_expires() -> None:
    net = call_world()
    shared: dict[str, Any] = {}
    ctx = run_context(net, shared)
    first, _ = await reflector_cookie(ctx, REFLECTOR, CALL_PORT)
    assert first is not None and first.slot_s == reflector.SLOT_S
    again, _ = await reflector_cookie(ctx, REFLECTOR, CALL_PORT)
    assert again is first and len(hellos(net)) == 2
    first.fetched_at -= reflector.SLOT_S * 0.81  # older than its guaranteed lifetime allows
    renewed, _ = await reflector_cookie(ctx, REFLECTOR, CALL_PORT)
    assert renewed is not None and renewed is not first and len(hellos(net)) == 4


async def test_no_cookie_is_not_applicable() -> None:
    net = FakeNetwork()  # nothing answers at the reflector's address
    shared: dict[str, Any] = {}
    for check in ("udp", "differential", "stream"):
        keys = await run_in(net, shared, check, CALL_PORT, timeout_s=1.5)
        assert keys["failure"] == failures.NOT_APPLICABLE, keys
        assert get_check(check).methods(keys) == []
        record = keys["reflector_cookie"]
        assert record["failed_operation"] == "reflector_cookie"
        assert record["ports"] == {"443": failures.GENERIC_TIMEOUT,
                                   str(CALL_PORT): failures.GENERIC_TIMEOUT}
    # asked on the baseline and the check's port, with back-off, nowhere else
    asked = hellos(net)
    assert set(asked) == {BASELINE_PORT, CALL_PORT} and 3 * 2 * 2 <= len(asked) <= 3 * 2 * 5


async def test_checks_waiting_for_the_cookie_share_its_requests() -> None:
    """Twenty checks start at once: they all wait for the same requests (one cookie
    request per port, not one per check)."""
    net = call_world()
    shared: dict[str, Any] = {}
    ctxs = [run_context(net, shared) for _ in range(20)]
    got = await asyncio.gather(*(reflector_cookie(c, REFLECTOR, CALL_PORT) for c in ctxs))
    assert all(c is got[0][0] and c is not None for c, _ in got)
    assert sorted(hellos(net)) == [BASELINE_PORT, CALL_PORT]


async def test_a_reflector_that_does_not_listen_on_the_checks_port() -> None:
    """ICMP port unreachable on the check's port: the cookie comes from the baseline."""
    from probe import testing as T

    net = call_world(udp={(REFLECTOR, CALL_PORT): T.icmp_port_unreachable})
    keys = await run_in(net, {}, "udp", CALL_PORT)
    assert keys["failure"] is None and keys["outcome"] == "nothing_listens"
