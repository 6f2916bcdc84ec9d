"""The call check (an app's STUN set-up then call media on one flow, beside a control call
without the app's fingerprint) through the network seam, in the fake world (the project's
reflector logic answering) under the lab's censor rules, and under a flow-keeping DPI
double (below) for what only a flow-tracking censor does: drop a whole flow once it shows
the app, let a tap's first packet through, and block the server port afterwards."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from probe import failures, stun
from probe.checks import call
from probe.lab.censor import APP_STUN
from probe.testing import FakeNetwork
from tests.helpers.checks import CALL_PORT, REFLECTOR, call_world
from tests.helpers.checks import run_call_check as run_check

FLAVORS = ["whatsapp", "teams", "google", "viber"]
BUDGET_S = 4.0


async def call_check(net: Any, flavor: str = "whatsapp", timeout_s: float = BUDGET_S,
                     stream_seconds: float = 2.0) -> tuple[dict[str, Any], list[str]]:
    return await run_check("call", net, host=None, options={"flavor": flavor},
                           timeout_s=timeout_s, stream_seconds=stream_seconds)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_call_ok_sends_the_apps_setup_then_its_media(flavor: str) -> None:
    net = call_world()
    keys, methods = await call_check(net, flavor)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == [], keys
    shape = call.SHAPES[flavor]
    for leg in ("call", "control"):
        assert keys[leg]["setup"]["answered"] >= 1
        # what the budget leaves of 2 s, at 50 packets per second, in real time
        assert keys[leg]["received"] == keys[leg]["sent"] > 0
        assert keys[leg]["sent"] + keys[leg]["skipped"] == int(keys[leg]["duration_s"] * 50)
    assert keys["baseline"]["received"] >= 1 and keys["baseline"]["port"] == 443
    to_port = [d for ip, port, d in net.udp_sent if (ip, port) == (REFLECTOR, CALL_PORT)
               and not d.startswith(b"VPR?")]  # not the reflector's cookie requests
    setups = [d for d in to_port if len(d) >= 8 and d[4:8] == b"\x21\x12\xa4\x42"]
    media = [d for d in to_port if d not in setups]
    # The control's plain STUN goes first, then the app's request, both of one length.
    first, second = stun.parse(setups[0]), stun.parse(setups[1])
    assert not APP_STUN[flavor if flavor in APP_STUN else "whatsapp"].matches(setups[0])
    assert first.msg_type == stun.BINDING_REQUEST
    assert APP_STUN[flavor].matches(setups[1]) and second.transaction_id
    assert len(setups[0]) == len(setups[1]) == keys["setup_bytes"]
    # Media: the app's RTP/SRTP shape at 50 packets per second.
    assert {len(d) for d in media} == {shape.packet_bytes}
    assert {d[0] for d in media} == {0x80} and {d[1] for d in media} == {shape.payload_type}
    assert keys["packet_bytes"] == shape.packet_bytes and keys["shape"] == shape.name
    seqs = sorted(struct.unpack_from("!H", d, 2)[0] for d in media)
    assert seqs[:4] == [0, 0, 1, 1]  # two flows (call and control), each from 0


async def test_app_setup_dropped_is_app_stun_dpi() -> None:
    net = call_world()
    net.censor.apply("app_stun_dpi", flavor="whatsapp")
    keys, methods = await call_check(net)
    assert methods == ["app_stun_dpi"] and keys["failure"] == failures.GENERIC_TIMEOUT
    assert keys["call"]["setup"]["answered"] == 0 and keys["call"]["setup"]["sent"] >= 3
    assert keys["control"]["setup"]["answered"] >= 1
    assert keys["residual_blocking"] is False


async def test_stun_dropped_media_passing_is_stun_dpi() -> None:
    net = call_world()
    net.censor.apply("stun_dpi", ports=[CALL_PORT])
    keys, methods = await call_check(net, "teams")
    assert methods == ["stun_dpi"], keys["reasons"]
    assert keys["call"]["received"] == keys["call"]["sent"] > 0
    assert keys["control"]["received"] == keys["control"]["sent"]


async def test_port_dropped_is_udp_blocked() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    keys, methods = await call_check(net, "google")
    assert methods == ["udp_blocked"] and keys["failure"] == failures.GENERIC_TIMEOUT
    assert keys["baseline"]["received"] > 0


async def test_port_throttled_is_throttled_and_connects() -> None:
    net = call_world()
    net.censor.apply("throttle_udp_ports", ports=[CALL_PORT], kbytes_per_s=1)
    keys, methods = await call_check(net, "viber")
    assert keys["failure"] is None and methods == ["throttled"], keys["reasons"]
    assert keys["baseline"]["loss"] == 0.0


async def test_port_cut_after_connecting_is_throttled_not_the_app() -> None:
    """The port goes dark for every flow after both calls connected: the app is not what
    is cut (the control is too), and a cut-off is judged as the stream check judges it."""
    net = call_world()
    asyncio.get_running_loop().call_later(1.2, lambda: net.censor.apply(
        "drop_udp_ports", ports=[CALL_PORT]))
    keys, methods = await call_check(net, stream_seconds=3.0, timeout_s=5.5)
    assert keys["outcome"] == "cut_off" and methods == ["throttled"], keys["reasons"]
    assert keys["failure"] is None and "app_stun_dpi" not in methods


async def test_no_reflector_or_silent_reflector_is_not_applicable() -> None:
    keys, methods = await run_check("call", call_world(), host=None, reflector=None,
                                    options={"flavor": "whatsapp"})
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []
    net = FakeNetwork()  # nothing answers anywhere
    keys, methods = await call_check(net, timeout_s=3.0, stream_seconds=1.0)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []
    assert keys["reflector_cookie"]["failure"] is not None  # no cookie: nothing answers


async def test_call_fits_its_budget() -> None:
    loop = asyncio.get_running_loop()
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    t0 = loop.time()
    await call_check(net, timeout_s=3.0, stream_seconds=10.0)  # asks for more than fits
    assert loop.time() - t0 <= 3.0 + 0.3


# --- a flow-tracking DPI double ------------------------------------------------------------

@dataclass
class FlowDpi:
    """Wraps the fake network with a censor that judges each flow (one udp_open) by its
    datagrams, as nDPI inline does: a flow that sends ``flavor``'s app STUN is dropped
    from that datagram on, both ways (``passive``: that datagram still goes through, as
    from a tap); with ``residual``, every flow to that server port is dropped from then on,
    those already open included."""

    net: FakeNetwork
    flavor: str
    passive: bool = False
    residual: bool = False
    blocked_ports: set[int] = field(default_factory=set)

    async def udp_open(self, ip: str, port: int) -> _Flow:
        return _Flow(self, await self.net.udp_open(ip, port), port)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)


class _Flow:
    def __init__(self, dpi: FlowDpi, inner: Any, port: int) -> None:
        self.dpi, self.inner, self.port = dpi, inner, port
        self.blocked = False
        self.local_address = inner.local_address

    def _dead(self) -> bool:
        return self.blocked or self.port in self.dpi.blocked_ports

    async def send(self, data: bytes) -> None:
        if self._dead():
            return
        if APP_STUN[self.dpi.flavor].matches(data):
            self.blocked = True
            if self.dpi.residual:
                self.dpi.blocked_ports.add(self.port)
            if not self.dpi.passive:
                return
        await self.inner.send(data)

    async def recv(self, timeout_s: float) -> bytes:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            data: bytes = await self.inner.recv(max(0.0, end - loop.time()))
            if not self._dead():
                return data

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("passive", [False, True], ids=["inline", "passive"])
async def test_app_flow_dropped_by_a_flow_censor_is_app_stun_dpi(passive: bool) -> None:
    dpi = FlowDpi(call_world(), "whatsapp", passive=passive)
    keys, methods = await call_check(dpi)
    assert methods == ["app_stun_dpi"], keys["reasons"]
    assert keys["call"]["received"] == 0 and keys["call"]["setup"]["answered"] == 0
    assert keys["control"]["received"] == keys["control"]["sent"]
    assert keys["residual_blocking"] is False


async def test_residual_block_after_the_app_is_app_stun_dpi_with_residual() -> None:
    dpi = FlowDpi(call_world(), "teams", residual=True)
    keys, methods = await call_check(dpi, "teams")
    assert methods == ["app_stun_dpi"] and keys["residual_blocking"] is True, keys["reasons"]
    # The control passed before the call started and nothing it sent after came back.
    assert keys["control"]["setup"]["answered"] >= 1
    assert 0 < keys["control"]["received"] < keys["control"]["sent"]
    assert (keys["control"]["opened_s"] + keys["control"]["last_echoed_sent_s"]
            <= keys["call"]["opened_s"] + call.RESIDUAL_SLACK_S)
    # Never read as a blocked port: udp_blocked needs the control to fail from the start.
    assert "udp_blocked" not in methods


async def test_confirmation_after_a_residual_block_keeps_the_main_pass_evidence() -> None:
    """In the confirmation pass the main pass's residual block still holds: both flows die
    from their first packet. With the main pass's app_stun_dpi that is the residual block,
    not a blocked port; without it, it is udp_blocked."""
    from probe.checks._base import CheckContext
    from probe.model import Endpoint, RunConfig
    from probe.resolve import HostResolver

    dpi = FlowDpi(call_world(), "whatsapp", residual=True)
    dpi.blocked_ports.add(CALL_PORT)
    ep = Endpoint(service="svc", function="calls", check="call", host=None, port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR, stream_seconds=1.0)
    for previous, expected in ((None, "udp_blocked"), ("app_stun_dpi", "app_stun_dpi")):
        loop = asyncio.get_running_loop()
        ctx = CheckContext(cfg=cfg, net=dpi, resolver=HostResolver(dpi, cfg),  # type: ignore[arg-type]
                           deadline=loop.time() + cfg.timeout_s,
                           main_pass={"outcome": previous} if previous else None)
        keys = await call.run(ep, ctx)
        assert call.methods(keys) == [expected], keys["reasons"]
        assert keys.get("residual_blocking", False) is (previous is not None)


def test_outcome_is_a_pure_function_of_the_stored_keys() -> None:
    def leg(received: int, sent: int = 100, last: float = 2.0, answered: int = 1,
            ) -> dict[str, Any]:
        return {"sent": sent, "received": received, "loss": 1 - received / sent,
                "jitter_ms": 1.0, "last_echo_s": last, "duration_s": 2.0,
                "media_start_s": 0.0, "setup": {"answered": answered, "sent": 2}}

    fine = leg(100)
    base = {"received": 20, "sent": 20, "loss": 0.0, "jitter_ms": 1.0, "last_echo_s": 2.0,
            "duration_s": 2.0, "media_start_s": 0.0}
    assert call.outcome({"call": fine, "control": fine, "baseline": base})[0] == "ok"
    assert call.outcome({"call": leg(0, answered=0), "control": fine,
                         "baseline": base})[0] == "app_stun_dpi"
    # A call whose set-up got lost but whose media passes, on a lossy path: not blocked
    # unless the control's set-up was answered (then the app's request is what is dropped).
    lossy = leg(80)
    assert call.outcome({"call": leg(80, answered=0), "control": leg(80, answered=0),
                         "baseline": base})[0] == "stun_dpi"
    assert call.outcome({"call": lossy, "control": lossy, "baseline": base})[0] == "ok"
    assert call.outcome({"call": leg(0, answered=0), "control": leg(0, answered=0),
                         "baseline": {**base, "received": 0}})[0] == "reflector_unreachable"


def test_a_busy_probe_compares_no_loss() -> None:
    """A probe whose event loop skipped many of a call's packets reads its echoes late: the
    loss of a call that started later says nothing about the path then."""
    def leg(received: int, sent: int, skipped: int, opened: float) -> dict[str, Any]:
        return {"sent": sent, "skipped": skipped, "received": received,
                "loss": 1 - received / sent, "jitter_ms": 1.0, "last_echo_s": 2.0,
                "last_echoed_sent_s": 1.3, "opened_s": opened, "duration_s": 1.2,
                "media_start_s": 0.3, "setup": {"answered": 1, "sent": 1}}

    keys = {"call": leg(7, 17, 43, 0.9), "control": leg(14, 18, 42, 0.1),
            "baseline": {**leg(16, 19, 41, 0.1), "setup": None}}
    assert call.outcome(keys)[0] == "ok"
    calm = {k: {**v, "skipped": 0} for k, v in keys.items()}
    assert call.outcome(calm)[0] == "throttled"


async def test_icmp_from_a_router_is_udp_blocked_with_the_rejecting_hop() -> None:
    from probe.testing import CENSOR_ROUTER

    net = call_world()
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await call_check(net, "whatsapp", timeout_s=3.0, stream_seconds=1.0)
    assert methods == ["udp_blocked"] and keys["icmp_from"] == CENSOR_ROUTER, keys["reasons"]
    assert keys["control"]["icmp_from"] == CENSOR_ROUTER


async def test_icmp_from_the_reflector_itself_is_nothing_listens() -> None:
    from probe.testing import icmp_port_unreachable

    net = call_world()
    net.udp[(REFLECTOR, CALL_PORT)] = icmp_port_unreachable
    keys, methods = await call_check(net, "whatsapp", timeout_s=3.0, stream_seconds=1.0)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []
    assert keys["outcome"] == "nothing_listens" and keys["call"]["icmp_from"] == REFLECTOR
