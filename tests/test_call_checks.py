"""The call-path checks (stun, turn, udp, differential, stream, quic) through the network
seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from probe import failures, stun
from probe.checks import CheckContext, get_check
from probe.checks.dns import HostResolver
from probe.model import Endpoint, RunConfig
from tests import callpath_fakes as F

SERVER = "198.18.9.10"
REFLECTOR = "198.18.9.7"
CALL_PORT = 3478


def reflector_everywhere(net: F.FakeCallNet) -> F.FakeCallNet:
    net.hosts[REFLECTOR] = F.reflector_responder
    return net


def make_ctx(net: Any, *, timeout_s: float = 2.0, reflector: str | None = REFLECTOR,
             include_ip: bool = False, stream_seconds: float = 1.0) -> CheckContext:
    cfg = RunConfig(timeout_s=timeout_s, reflector=reflector, include_ip=include_ip,
                    stream_seconds=stream_seconds)
    loop = asyncio.get_running_loop()
    return CheckContext(cfg=cfg, net=net, resolver=HostResolver(net, cfg),
                        deadline=loop.time() + timeout_s)


async def run_check(check: str, net: Any, *, host: str | None = SERVER, port: int = CALL_PORT,
                    options: dict[str, Any] | None = None, **kw: Any) -> tuple[dict, list[str]]:
    ep = Endpoint(service="svc", function="calls", check=check, host=host, port=port,
                  options=options or {}, source="test:1")
    module = get_check(check)
    keys = await module.run(ep, make_ctx(net, **kw))
    stored = json.loads(json.dumps(keys))  # what a results file holds
    assert "failure" in stored
    return stored, module.methods(stored)


# --- stun ------------------------------------------------------------------------------
async def test_stun_ok_scrubs_mapped_address() -> None:
    net = F.FakeCallNet(hosts={SERVER: F.stun_server(mapped=("203.0.113.77", 61000))})
    keys, methods = await run_check("stun", net, reflector=None)
    assert keys["failure"] is None and methods == []
    tx = keys["stun_binding"]
    assert tx["sends"] == [0.0] and tx["response"]["type"] == "0x0101"
    assert tx["response"]["mapped_address"] == "[scrubbed]"
    assert "203.0.113.77" not in json.dumps(keys)
    assert tx["response"]["behind_nat"] is True


async def test_stun_include_ip_records_mapped_address() -> None:
    net = F.FakeCallNet(hosts={SERVER: F.stun_server(mapped=("203.0.113.77", 61000))})
    keys, _ = await run_check("stun", net, reflector=None, include_ip=True)
    assert keys["stun_binding"]["response"]["mapped_address"] == "203.0.113.77:61000"


async def test_stun_timeout_retransmits_rfc8489_schedule() -> None:
    keys, methods = await run_check("stun", F.FakeCallNet(), reflector=None, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    sends = keys["stun_binding"]["sends"]
    assert len(sends) == 4  # 0, 0.5, 1.5, 3.5 inside a 4 s budget
    for got, want in zip(sends, [0.0, 0.5, 1.5, 3.5], strict=True):
        assert abs(got - want) < 0.15
    assert methods == []  # no reflector: no control, nothing to say about how


@pytest.mark.parametrize(("responder", "failure"), [
    (F.icmp_port_unreachable, failures.PORT_UNREACHABLE),
    (F.garbage, failures.STUN_MALFORMED_REPLY),
    (F.injector, failures.STUN_UNEXPECTED_REPLY),
])
async def test_stun_failures_are_distinct(responder: F.Responder, failure: str) -> None:
    keys, _ = await run_check("stun", F.FakeCallNet(hosts={SERVER: responder}), reflector=None)
    assert keys["failure"] == failure
    kinds = {r["kind"] for r in keys["stun_binding"]["received"]}
    assert kinds == {"icmp" if failure == failures.PORT_UNREACHABLE
                     else failure.split("_")[1]}


async def test_stun_reply_without_xor_mapped_address_is_malformed() -> None:
    def no_mapping(data: bytes) -> bytes:
        return stun.StunMessage(stun.BINDING_SUCCESS, stun.parse(data).transaction_id).encode()
    keys, _ = await run_check("stun", F.FakeCallNet(hosts={SERVER: no_mapping}), reflector=None)
    assert keys["failure"] == failures.STUN_MALFORMED_REPLY


async def test_stun_reply_with_bad_fingerprint_is_malformed() -> None:
    good = F.stun_server()

    def corrupt(data: bytes) -> bytes:
        reply = bytearray(good(data) or b"")
        reply[-1] ^= 0xFF
        return bytes(reply)
    keys, _ = await run_check("stun", F.FakeCallNet(hosts={SERVER: corrupt}), reflector=None)
    assert keys["failure"] == failures.STUN_MALFORMED_REPLY
    assert "FINGERPRINT" in keys["stun_binding"]["received"][0]["reason"]


async def test_stun_injected_reply_then_real_one_succeeds() -> None:
    real = F.stun_server()

    def both(data: bytes) -> bytes | None:
        return real(data)

    net = F.FakeCallNet(hosts={SERVER: both})
    orig_open = net.udp_open

    async def open_with_injection(ip: str, port: int):  # type: ignore[no-untyped-def]
        flow = await orig_open(ip, port)
        flow.inbox.put_nowait(F.injector(stun.binding_request().encode()))
        return flow
    net.udp_open = open_with_injection  # type: ignore[method-assign]
    keys, _ = await run_check("stun", net, reflector=None)
    assert keys["failure"] is None
    assert [r["kind"] for r in keys["stun_binding"]["received"]] == ["unexpected", "response"]


@pytest.mark.parametrize(("censor", "method"), [
    (F.drop_addresses(SERVER), "relay_unreachable"),
    (F.stun_dpi, "stun_dpi"),
    (F.drop_ports(CALL_PORT), "udp_blocked"),
])
async def test_stun_control_tells_how(censor: F.Censor, method: str) -> None:
    net = reflector_everywhere(F.FakeCallNet(hosts={SERVER: F.stun_server()}, censor=censor))
    keys, methods = await run_check("stun", net, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    assert methods == [method]


async def test_stun_control_not_run_on_success() -> None:
    net = reflector_everywhere(F.FakeCallNet(hosts={SERVER: F.stun_server()}))
    keys, _ = await run_check("stun", net)
    assert keys["failure"] is None and keys["control"] is None
    assert all(ip == SERVER for ip, _, _ in net.sent)


# --- turn ------------------------------------------------------------------------------
async def test_turn_401_with_realm_and_nonce_is_reachable() -> None:
    net = F.FakeCallNet(hosts={SERVER: F.stun_server(realm="relay.example")})
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
    keys, methods = await run_check("turn", F.FakeCallNet(hosts={SERVER: bad_request}),
                                    reflector=None)
    assert keys["failure"] == failures.STUN_ERROR_RESPONSE and methods == []


async def test_turn_relay_unreachable() -> None:
    net = reflector_everywhere(F.FakeCallNet(hosts={SERVER: F.stun_server()},
                                             censor=F.drop_addresses(SERVER)))
    keys, methods = await run_check("turn", net, timeout_s=4.0)
    assert keys["failure"] == failures.GENERIC_TIMEOUT
    assert methods == ["relay_unreachable"]


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


# --- differential ------------------------------------------------------------------------
FLAVORS = ["whatsapp", "teams", "google", "viber"]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_ok(flavor: str) -> None:
    net = reflector_everywhere(F.FakeCallNet())
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == []
    kinds = keys["trials"]["kinds"]
    assert set(kinds) == {"stun", "app_stun", "random"}
    assert all(k["sent"] == 3 and k["answered"] == 3 for k in kinds.values())
    sizes = {len(d) for ip, port, d in net.sent if port == CALL_PORT}
    assert sizes == {keys["payload_bytes"]}  # same length for every kind


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_app_stun_dpi(flavor: str) -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.app_stun_dpi))
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["app_stun_dpi"], keys


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_stun_dpi(flavor: str) -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.stun_dpi))
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["stun_dpi"], keys


async def test_differential_udp_blocked() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.drop_ports(CALL_PORT)))
    _keys, methods = await run_check("differential", net, host=None,
                                     options={"flavor": "viber"}, timeout_s=6.0)
    assert methods == ["udp_blocked"]


async def test_differential_plain_stun_unflavoured_ok_under_app_dpi() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.app_stun_dpi))
    keys, methods = await run_check("differential", net, host=None, timeout_s=6.0)
    assert keys["failure"] is None and methods == []


async def test_differential_reflector_down_not_applicable() -> None:
    keys, methods = await run_check("differential", F.FakeCallNet(), host=None,
                                    options={"flavor": "teams"}, timeout_s=6.0)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []


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


# --- quic --------------------------------------------------------------------------------
def version_negotiation(data: bytes) -> bytes:
    dlen = data[5]
    dcid = data[6:6 + dlen]
    slen = data[6 + dlen]
    scid = data[7 + dlen:7 + dlen + slen]
    return (bytes([0x80]) + b"\x00\x00\x00\x00" + bytes([len(scid)]) + scid
            + bytes([len(dcid)]) + dcid + (1).to_bytes(4, "big"))


async def test_quic_version_negotiation() -> None:
    net = F.FakeCallNet(hosts={SERVER: version_negotiation})
    keys, methods = await run_check("quic", net, port=443, reflector=None)
    assert methods == []
    assert keys["failure"] is None and keys["quic_ping"]["supported_versions"] == ["0x00000001"]
    assert all(len(d) == 1200 for _, _, d in net.sent)


async def test_quic_echo_is_unexpected_and_silence_is_timeout() -> None:
    keys, methods = await run_check("quic", F.FakeCallNet(hosts={SERVER: lambda d: d}),
                                    port=443, reflector=None)
    assert keys["failure"] == failures.QUIC_UNEXPECTED_REPLY and methods == []
    keys, methods = await run_check("quic", F.FakeCallNet(), port=443, reflector=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]


@pytest.mark.parametrize("repeat", range(3))
@pytest.mark.parametrize("seed", range(4))
async def test_differential_random_loss_is_not_dpi(seed: int, repeat: int) -> None:
    """20 % loss each way on the port starves some trials by chance; further rounds
    (within the budget) must not turn that into stun_dpi or app_stun_dpi."""
    net = reflector_everywhere(F.FakeCallNet(censor=F.throttle(0.2, CALL_PORT, seed=seed)))
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": "whatsapp"}, timeout_s=8.0)
    assert keys["outcome"] == "ok" and methods == [], keys["trials"]["kinds"]


async def test_udp_random_loss_is_not_blocking() -> None:
    net = reflector_everywhere(F.FakeCallNet(censor=F.throttle(0.5, CALL_PORT, seed=3)))
    keys, methods = await run_check("udp", net, host=None, timeout_s=4.0)
    assert keys["outcome"] == "ok" and methods == []
