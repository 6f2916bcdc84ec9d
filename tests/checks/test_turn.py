"""The turn check (Allocate without credentials: a 401 with REALM and NONCE) through the network
seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

from probe import failures, stun
from tests.helpers import callpath_fakes as F
from tests.helpers.callpath_fakes import SERVER, reflector_everywhere
from tests.helpers.callpath_fakes import run_call_check as run_check


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
