"""The stun check (RFC 8489 Binding, validation, the same-port reflector control) through the
network seam, in the fake world (a STUN server on our codec, the project's reflector logic)
under the lab's censor rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from probe import failures, stun
from probe import testing as T
from probe.testing import FakeNetwork
from tests.helpers.checks import CALL_PORT, REFLECTOR, SERVER, call_world, recorded_trials
from tests.helpers.checks import run_call_check as run_check


async def test_stun_ok_scrubs_mapped_address() -> None:
    net = FakeNetwork(udp_hosts={SERVER: T.stun_server(mapped=("203.0.113.77", 61000))})
    keys, methods = await run_check("stun", net, reflector=None)
    assert keys["failure"] is None and methods == []
    tx = keys["stun_binding"]
    assert tx["sends"] == [0.0] and tx["response"]["type"] == "0x0101"
    assert tx["response"]["mapped_address"] == "[scrubbed]"
    assert "203.0.113.77" not in json.dumps(keys)
    assert tx["response"]["behind_nat"] is True


async def test_stun_include_ip_records_mapped_address() -> None:
    net = FakeNetwork(udp_hosts={SERVER: T.stun_server(mapped=("203.0.113.77", 61000))})
    keys, _ = await run_check("stun", net, reflector=None, include_ip=True)
    assert keys["stun_binding"]["response"]["mapped_address"] == "203.0.113.77:61000"


async def test_stun_timeout_retransmits_rfc8489_schedule() -> None:
    keys, methods = await run_check("stun", FakeNetwork(), reflector=None, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    sends = keys["stun_binding"]["sends"]
    assert len(sends) == 4  # 0, 0.5, 1.5, 3.5 inside a 4 s budget
    for got, want in zip(sends, [0.0, 0.5, 1.5, 3.5], strict=True):
        assert abs(got - want) < 0.15
    assert methods == []  # no reflector: no control, nothing to say about how


@pytest.mark.parametrize(("responder", "failure"), [
    (T.icmp_port_unreachable, failures.PORT_UNREACHABLE),
    (T.garbage, failures.STUN_MALFORMED_REPLY),
    (T.injector, failures.STUN_UNEXPECTED_REPLY),
])
async def test_stun_failures_are_distinct(responder: T.Responder, failure: str) -> None:
    keys, _ = await run_check("stun", FakeNetwork(udp_hosts={SERVER: responder}),
                              reflector=None)
    assert keys["failure"] == failure
    kinds = {r["kind"] for r in keys["stun_binding"]["received"]}
    assert kinds == {"icmp" if failure == failures.PORT_UNREACHABLE
                     else failure.split("_")[1]}


async def test_stun_reply_without_xor_mapped_address_is_malformed() -> None:
    def no_mapping(data: bytes) -> bytes:
        return stun.StunMessage(stun.BINDING_SUCCESS, stun.parse(data).transaction_id).encode()
    keys, _ = await run_check("stun", FakeNetwork(udp_hosts={SERVER: no_mapping}),
                              reflector=None)
    assert keys["failure"] == failures.STUN_MALFORMED_REPLY


async def test_stun_reply_with_bad_fingerprint_is_malformed() -> None:
    good = T.stun_server()

    def corrupt(data: bytes) -> bytes:
        reply = bytearray(good(data) or b"")
        reply[-1] ^= 0xFF
        return bytes(reply)
    keys, _ = await run_check("stun", FakeNetwork(udp_hosts={SERVER: corrupt}), reflector=None)
    assert keys["failure"] == failures.STUN_MALFORMED_REPLY
    assert "FINGERPRINT" in keys["stun_binding"]["received"][0]["reason"]


async def test_stun_injected_reply_then_real_one_succeeds() -> None:
    real = T.stun_server()

    def injected_then_real(data: bytes) -> list[T.Reply]:
        # An injector in front of the server: its forgery arrives first.
        return [T.injector(data), real(data) or b""]

    net = FakeNetwork(udp_hosts={SERVER: injected_then_real})
    keys, _ = await run_check("stun", net, reflector=None)
    assert keys["failure"] is None
    assert [r["kind"] for r in keys["stun_binding"]["received"]] == ["unexpected", "response"]


@pytest.mark.parametrize(("rule", "selection", "method"), [
    ("drop_endpoint", {"addresses": [SERVER], "proto": "udp"}, "relay_unreachable"),
    ("stun_dpi", {}, "stun_dpi"),
    ("drop_udp_ports", {"ports": [CALL_PORT]}, "udp_blocked"),
])
async def test_stun_control_tells_how(rule: str, selection: dict[str, Any],
                                      method: str) -> None:
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply(rule, **selection)
    keys, methods = await run_check("stun", net, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    assert methods == [method]


async def test_stun_control_not_run_on_success() -> None:
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    keys, _ = await run_check("stun", net)
    assert keys["failure"] is None and keys["control"] is None
    assert net.udp_sent and all(ip == SERVER for ip, _, _ in net.udp_sent)


# --- an ICMP error judged by its sender ----------------------------------------------------

async def test_stun_icmp_from_the_server_itself_is_not_blocking() -> None:
    net = call_world(udp_hosts={SERVER: T.icmp_port_unreachable})
    keys, methods = await run_check("stun", net)
    assert keys["failure"] == failures.PORT_UNREACHABLE and keys["icmp_from"] == SERVER
    assert keys["stun_binding"]["received"][0]["from"] == SERVER
    assert methods == []  # nothing listens there: the server is down, not blocked


async def test_stun_icmp_reject_from_a_router_is_udp_blocked() -> None:
    """iptables -j REJECT (icmp-port-unreachable) on the censor: the error comes from the
    censor's address, not the server's; the reflector's same port is rejected as well."""
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("stun", net)
    assert keys["failure"] == failures.PORT_UNREACHABLE
    assert keys["icmp_from"] == T.CENSOR_ROUTER and methods == ["udp_blocked"]


async def test_stun_control_icmp_reject_from_a_router_is_udp_blocked() -> None:
    """The control alone tells it too: the server is silent (dropped) while the reflector's
    same port is rejected by a router."""
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("drop_endpoint", addresses=[SERVER], proto="udp")
    net.censor.apply("reject_udp_ports", addresses=[REFLECTOR], ports=[CALL_PORT])
    keys, methods = await run_check("stun", net, timeout_s=3.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and "icmp_from" not in keys
    assert keys["control"]["same_port"]["icmp_from"] == T.CENSOR_ROUTER
    assert methods == ["udp_blocked"]


def test_a_control_cut_by_another_apps_residual_block_tells_nothing() -> None:
    """WhatsApp's differential and a plain stun check share the reflector's port: the
    censor drops WhatsApp's STUN, then everything to the port (residual blocking). The stun
    check's server is cut, and its control, sent after WhatsApp's dropped probe, gets no
    answer: that is WhatsApp's residual block (``after_other_app``), not udp_blocked."""
    import asyncio
    from datetime import UTC, datetime

    from probe.model import Endpoint, Plan, RunConfig, Service
    from probe.runner import RunInfo, run_plan
    from probe.verdicts import summarize

    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("app_stun_dpi", flavor="whatsapp", residual_s=60)
    net.censor.apply("drop_endpoint", addresses=[SERVER], proto="udp")
    wa = Endpoint(service="wa", function="calls", check="differential", port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    plain = Endpoint(service="other", function="calls", check="stun", host=SERVER,
                     port=CALL_PORT, source="test:2")
    out: list[dict] = []
    info = RunInfo(report_id="r1", start=datetime(2026, 12, 2, tzinfo=UTC))
    plan = Plan((Service("wa", "WA", (wa,)), Service("other", "Other", (plain,))))
    asyncio.run(run_plan(plan, RunConfig(timeout_s=3.0, reflector=REFLECTOR), net, info,
                         out.append))
    stun_keys = [r["test_keys"] for r in out if r["service"] == "other"]
    assert stun_keys and all(k["failure"] == failures.GENERIC_TIMEOUT for k in stun_keys)
    assert all(k["control"].get("after_other_app") for k in stun_keys), stun_keys
    services = summarize(out)["services"]
    assert services["wa"]["functions"]["calls"]["methods"] == ["app_stun_dpi"]
    assert "udp_blocked" not in services["other"]["functions"]["calls"]["methods"]


async def test_a_control_whose_port_is_blocked_for_all_is_still_udp_blocked() -> None:
    """The other side: no neutral traffic ever passed on the port (a blocked port drops
    every app's probes too), so the control's silence is the port's, udp_blocked."""
    net = call_world(udp_hosts={SERVER: T.stun_server()})
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("stun", net, timeout_s=3.0)
    assert methods == ["udp_blocked"] and not keys["control"].get("after_other_app")


def _control(flows: list[list]) -> dict[str, Any]:
    return {"failure": None, "same_port": recorded_trials(flows),
            "baseline": {"kinds": {"random": {"sent": 2, "answered": 2, "rtt_s": []}}}}


def test_a_control_on_a_starved_port_does_not_single_out_the_app() -> None:
    """The control's app request lost on a port that loses plain traffic as much (a
    policer): not app_stun_dpi, nothing can be said; the app's request lost where plain
    traffic passes around it, or right up to it and never after (residual), still is."""
    from probe.checks._reflector import control_methods

    starved = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"], ["m", "app_stun", 3, "lost"],
               ["m", "stun", 4, "lost"], ["m", "random", 5, "lost"],
               ["m", "app_stun", 6, "lost"], ["m", "stun", 7, "ok"],
               ["m", "random", 8, "lost"], ["a", "stun", 9, "lost"],
               ["a", "random", 10, "lost"]]
    assert control_methods(_control(starved)) == []
    beside = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"], ["m", "app_stun", 3, "lost"],
              ["m", "stun", 4, "ok"], ["m", "random", 5, "ok"], ["m", "app_stun", 6, "lost"],
              ["m", "stun", 7, "ok"], ["m", "random", 8, "ok"], ["a", "stun", 9, "ok"],
              ["a", "random", 10, "ok"]]
    assert control_methods(_control(beside)) == ["app_stun_dpi"]
    residual = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"],
                ["m", "app_stun", 3, "lost"], ["m", "stun", 4, "lost"],
                ["m", "random", 5, "lost"], ["m", "app_stun", 6, "lost"],
                ["a", "stun", 7, "lost"], ["a", "random", 8, "lost"]]
    assert control_methods(_control(residual)) == ["app_stun_dpi"]
