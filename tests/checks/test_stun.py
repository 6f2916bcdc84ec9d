"""The stun check (RFC 8489 Binding, validation, the same-port reflector control) through the
network seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

import json

import pytest

from probe import failures, stun
from tests.helpers import callpath_fakes as F
from tests.helpers.callpath_fakes import CALL_PORT, SERVER, reflector_everywhere
from tests.helpers.callpath_fakes import run_call_check as run_check


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
