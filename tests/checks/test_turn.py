"""The turn check (Allocate without credentials: a 401 with REALM and NONCE) through the network
seam, in the fake world (a TURN server on our codec, the project's reflector logic) under the
lab's censor rules."""

from __future__ import annotations

from probe import failures, stun
from probe import testing as T
from probe.testing import FakeNetwork
from tests.helpers.checks import CALL_PORT, SERVER, call_world
from tests.helpers.checks import run_call_check as run_check


async def test_turn_401_with_realm_and_nonce_is_reachable() -> None:
    net = FakeNetwork(udp_hosts={SERVER: T.stun_server(realm="relay.example")})
    keys, methods = await run_check("turn", net, reflector=None)
    assert keys["failure"] is None and methods == []
    resp = keys["turn_allocate"]["response"]
    assert resp["error_code"] == 401 and resp["realm"] == "relay.example"
    assert resp["nonce_present"] is True


async def test_turn_other_error_is_an_error_response() -> None:
    def bad_request(data: bytes) -> bytes:
        msg = stun.StunMessage(stun.ALLOCATE_ERROR, stun.parse(data).transaction_id)
        msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(400, "Bad Request"))
        return msg.encode()
    keys, methods = await run_check("turn", FakeNetwork(udp_hosts={SERVER: bad_request}),
                                    reflector=None)
    assert keys["failure"] == failures.STUN_ERROR_RESPONSE and methods == []


async def test_turn_relay_unreachable() -> None:
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("drop_endpoint", addresses=[SERVER], proto="udp")
    keys, methods = await run_check("turn", net, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    assert methods == ["relay_unreachable"]


async def test_a_teams_flavoured_allocate_carries_the_ms_attributes_first() -> None:
    seen: list[stun.StunMessage] = []
    relay = T.stun_server(realm="relay.example")

    def server(data: bytes) -> bytes | None:
        seen.append(stun.parse(data))
        return relay(data)
    keys, methods = await run_check("turn", FakeNetwork(udp_hosts={SERVER: server}),
                                    reflector=None, options={"flavor": "teams"})
    assert keys["failure"] is None and methods == []
    assert list(stun.attribute_types(seen[0]))[:4] == [0x8054, 0x8070, 0x8095, 0x8055]


async def test_a_dropped_teams_flavoured_allocate_is_app_stun_dpi_not_a_cut_relay() -> None:
    """The censor drops STUN with Microsoft's attributes, everywhere: the relay gets no
    flavoured Allocate, and neither does the reflector, while plain STUN reaches it."""
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("app_stun_dpi", flavor="teams")
    keys, methods = await run_check("turn", net, timeout_s=4.0, options={"flavor": "teams"})
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    assert methods == ["app_stun_dpi"]
    # the same censor spares a plain Allocate: the relay answers it
    plain, plain_methods = await run_check("turn", net, timeout_s=2.0)
    assert plain["failure"] is None and plain_methods == []


async def test_turn_icmp_reject_from_a_router_is_udp_blocked() -> None:
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("turn", net, options={"flavor": "teams"})
    assert keys["icmp_from"] == T.CENSOR_ROUTER and methods == ["udp_blocked"]


async def test_turn_icmp_from_the_relay_itself_is_not_blocking() -> None:
    net = call_world(udp_hosts={SERVER: T.icmp_port_unreachable})
    keys, methods = await run_check("turn", net)
    assert keys["icmp_from"] == SERVER and methods == []


async def test_a_teams_allocate_that_triggers_residual_blocking_on_the_reflector() -> None:
    """The control's app-flavoured request goes after the neutral kinds on fresh flows: a
    residual block it triggers on the reflector's port leaves plain STUN's earlier answer
    standing, so the control still says app_stun_dpi, not udp_blocked."""
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("app_stun_dpi", flavor="teams", residual_s=60)
    keys, methods = await run_check("turn", net, options={"flavor": "teams"}, timeout_s=3.0)
    assert methods == ["app_stun_dpi"], keys["control"]
    flows = keys["control"]["same_port"]["flows"]
    assert sorted(f[1] for f in flows if f[0] == "b") == ["random", "stun"]
    assert len({f[2] for f in flows}) == len(flows)


def test_the_confirmation_inside_the_residual_block_keeps_app_stun_dpi() -> None:
    """A whole run: the main pass's control sees the Teams Allocate dropped while plain STUN
    passed, and the censor blocks the reflector's port from then on. The confirmation's
    control finds everything to the port dropped: still app_stun_dpi (the main pass's app
    probe set the block off, ``previous_outcome``), never udp_blocked."""
    import asyncio
    from datetime import UTC, datetime

    from probe.model import Endpoint, Plan, RunConfig, Service
    from probe.runner import RunInfo, run_plan
    from probe.verdicts import summarize
    from tests.helpers.checks import REFLECTOR

    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("app_stun_dpi", flavor="teams", residual_s=60)
    ep = Endpoint(service="teams", function="calls", check="turn", host=SERVER,
                  port=CALL_PORT, options={"flavor": "teams"}, source="test:1")
    out: list[dict] = []
    info = RunInfo(report_id="r1", start=datetime(2026, 12, 2, tzinfo=UTC))
    asyncio.run(run_plan(Plan((Service("teams", "Teams", (ep,)),)),
                         RunConfig(timeout_s=3.0, reflector=REFLECTOR), net, info,
                         out.append))
    keys = {r["pass"]: r["test_keys"] for r in out}
    assert set(keys) == {"main", "confirmation"}
    confirmation = keys["confirmation"]["control"]
    assert not any(int(s["answered"]) for s in confirmation["same_port"]["kinds"].values())
    assert confirmation["previous_outcome"] == "app_stun_dpi"
    assert summarize(out)["services"]["teams"]["functions"]["calls"]["methods"] == [
        "app_stun_dpi"]
