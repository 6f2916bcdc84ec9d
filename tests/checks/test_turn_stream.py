"""The turn_tcp and turn_tls checks (TURN Allocate over a stream, RFC 8656 12.5 framing):
through the fake network's streams for every outcome, and against a real coturn on
loopback over TCP and TLS."""

from __future__ import annotations

import os
from typing import Any

import pytest

from probe import failures, stun
from probe.model import Endpoint, RunConfig
from probe.testing import FAKE_NETWORKS, FakeNetwork, StreamReply
from tests.helpers.checks import run_check, seeded
from tests.helpers.coturn import REALM, coturn

RELAY = "relay.test"
ADDRESS = "198.18.0.10"


def unauthorized(request: stun.StunMessage, realm: str = "relay.example") -> bytes:
    msg = stun.StunMessage(stun.ALLOCATE_ERROR, request.transaction_id)
    msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(401, "Unauthorized"))
    msg.add(stun.ATTR_REALM, realm.encode())
    msg.add(stun.ATTR_NONCE, os.urandom(8).hex().encode())
    return msg.encode(fingerprint=True)


def relay_net(respond: Any, fault: str = "ok") -> FakeNetwork:
    """A fake network where RELAY (at ADDRESS) answers writes with ``respond(request)``."""
    def stream_responder(ip: str, port: int, data: bytes) -> StreamReply:
        assert (ip, port) == (ADDRESS, 443)
        result: StreamReply = respond(stun.parse(data))
        return result
    return FakeNetwork(names={RELAY: [ADDRESS]}, stream_responder=stream_responder,
                       tcp_faults={(ADDRESS, 443): fault})


async def run(check: str, net: FakeNetwork, budget: float = 1.0, **options: Any,
              ) -> tuple[dict[str, Any], list[str]]:
    ep = Endpoint(service="skype", function="calls", check=check, host=RELAY, port=443,
                  options=options, source="test:1", expected_networks=FAKE_NETWORKS)
    return await run_check(net, ep, budget=budget)


@pytest.mark.parametrize("check", ["turn_tcp", "turn_tls"])
async def test_a_401_with_realm_and_nonce_proves_the_relay(check: str) -> None:
    keys, methods = await run(check, relay_net(unauthorized))
    assert keys["failure"] is None and methods == []
    assert keys["fallback"] is True and keys["transport"] == check[-3:]
    allocate = keys["turn_allocate"]
    assert allocate["response"]["error_code"] == 401
    assert allocate["response"]["realm"] == "relay.example"
    assert allocate["response"]["nonce_present"] is True
    assert allocate["request_type"] == "0x0003"
    assert (allocate["tls"] is not None) == (check == "turn_tls")


async def test_messages_split_and_channel_data_and_others_answers_are_read_past() -> None:
    """The framing: ChannelData (padded), a message answering someone else, then ours,
    arriving in one burst and read back in pieces."""
    def respond(request: stun.StunMessage) -> bytes:
        channel = b"\x40\x00\x00\x03abc\x00"  # ChannelData, 3 bytes padded to 4
        other = unauthorized(stun.allocate_request())  # another transaction's answer
        return channel + other + unauthorized(request)
    keys, methods = await run("turn_tcp", relay_net(respond))
    assert keys["failure"] is None and methods == []
    kinds = [r["kind"] for r in keys["turn_allocate"]["received"]]
    assert kinds == ["channel_data", "unexpected", "response"]


@pytest.mark.parametrize(("respond", "failure", "method"), [
    (lambda req: None, failures.GENERIC_TIMEOUT, "relay_unreachable"),  # silence
    (lambda req: b"", failures.EOF_ERROR, "relay_unreachable"),  # closed
    (lambda req: ConnectionResetError(104, "reset"), failures.CONNECTION_RESET, "tcp_reset"),
    (lambda req: b"\xc0not TURN at all", failures.STUN_MALFORMED_REPLY, None),
    (lambda req: unauthorized(stun.allocate_request()), failures.STUN_UNEXPECTED_REPLY, None),
    (lambda req: [unauthorized(req)[:30], b""], failures.EOF_ERROR, "relay_unreachable"),
])
async def test_what_comes_back_on_the_stream(respond: Any, failure: str,
                                             method: str | None) -> None:
    net = relay_net(respond)
    keys, methods = await run("turn_tcp", net, budget=0.6)
    assert keys["failure"] == failure
    assert keys["failed_operation"] == "turn_allocate"
    assert methods == ([method] if method else [])


async def test_an_error_other_than_401_is_an_error_response() -> None:
    def forbidden(request: stun.StunMessage) -> bytes:
        msg = stun.StunMessage(stun.ALLOCATE_ERROR, request.transaction_id)
        msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(403, "Forbidden"))
        return msg.encode(fingerprint=True)
    keys, methods = await run("turn_tls", relay_net(forbidden))
    assert keys["failure"] == failures.STUN_ERROR_RESPONSE and methods == []


@pytest.mark.parametrize(("check", "fault", "failure", "operation", "method"), [
    ("turn_tcp", "reset", failures.CONNECTION_RESET, "tcp_connect", "tcp_reset"),
    ("turn_tcp", "silent", failures.GENERIC_TIMEOUT, "tcp_connect", "tcp_timeout"),
    ("turn_tls", "refused", failures.CONNECTION_REFUSED, "tcp_connect", "tcp_refused"),
    ("turn_tls", "silent", failures.GENERIC_TIMEOUT, "tcp_connect", "tcp_timeout"),
])
async def test_connect_failures_show_the_tcp_methods(check: str, fault: str, failure: str,
                                                     operation: str, method: str) -> None:
    keys, methods = await run(check, relay_net(unauthorized, fault), budget=0.3)
    assert (keys["failure"], keys["failed_operation"]) == (failure, operation)
    assert methods == [method]


async def test_a_failed_tls_handshake_is_tls_failure() -> None:
    net = relay_net(unauthorized)
    net.tls_faults = {RELAY: "handshake_failure"}
    keys, methods = await run("turn_tls", net)
    assert keys["failed_operation"] == "tls_handshake" and methods == ["tls_failure"]


async def test_a_relay_that_does_not_resolve_shows_the_dns_method() -> None:
    net = relay_net(unauthorized)
    net.censor.apply("dns_nxdomain", hosts=[RELAY])
    keys, methods = await run("turn_tcp", net)
    assert keys["failed_operation"] == "resolve" and methods == ["dns_nxdomain"]


async def test_the_teams_flavour_rides_on_the_allocate() -> None:
    seen: list[stun.StunMessage] = []

    def respond(request: stun.StunMessage) -> bytes:
        seen.append(request)
        return unauthorized(request)
    keys, _ = await run("turn_tcp", relay_net(respond), flavor="teams")
    assert keys["failure"] is None
    types = list(stun.attribute_types(seen[0]))
    assert types[:4] == [0x8054, 0x8070, 0x8095, 0x8055]  # first, as a Teams client's
    assert stun.ATTR_REQUESTED_TRANSPORT in types


# --- a real TURN server: coturn over TCP and TLS on loopback ------------------------------

async def test_turn_over_tcp_and_tls_against_coturn() -> None:
    from probe.net import RealNetwork

    with coturn(tls=True) as (host, port):
        for check in ("turn_tcp", "turn_tls"):
            ep = Endpoint(service="skype", function="calls", check=check, host=RELAY,
                          port=port, options={"flavor": "teams"}, source="test:1")
            keys, methods = await run_check(RealNetwork(), ep, RunConfig(timeout_s=3.0),
                                            seed=seeded(RELAY, host))
            assert keys["failure"] is None, keys
            assert methods == []
            response = keys["turn_allocate"]["response"]
            assert (response["error_code"], response["realm"]) == (401, REALM)
            if check == "turn_tls":
                assert keys["turn_allocate"]["tls"]["version"].startswith("TLSv1")


def test_a_check_stopped_for_overrunning_its_budget_shows_no_method() -> None:
    """The runner's record for a check it had to stop says nothing about the relay."""
    from probe.checks import methods_for

    stopped = {"failure": failures.GENERIC_TIMEOUT, "failed_operation": "top_level",
               "budget_exceeded": True}
    assert methods_for("turn_tcp", stopped) == methods_for("turn_tls", stopped) == []
