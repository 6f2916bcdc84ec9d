"""TURN check: an Allocate request without credentials to a service's relay (RFC 8656).

A TURN server answers an unauthenticated Allocate with a 401 error carrying REALM and
NONCE (RFC 8656 7.2, RFC 8489 9.2.4): that answer proves the relay is reachable and
speaks TURN, without any account. Transport, retransmission, validation and the
same-port reflector control are those of the stun check; a relay that cannot be
reached while STUN passes to the reflector on the same port is ``relay_unreachable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe import failures, stun
from probe.checks import stun as stun_check
from probe.model import Endpoint

if TYPE_CHECKING:
    from probe.checks import CheckContext, TestKeys

NAME = "turn"


def methods(test_keys: TestKeys) -> list[str]:
    return stun_check.methods(test_keys)


def _evaluate_allocate(reply: stun.StunMessage) -> str | None:
    if reply.msg_class == stun.CLASS_SUCCESS:
        return None  # an open relay: reachable all the same
    err = reply.error_code
    if err is not None and err.code == 401 and reply.realm and reply.nonce is not None:
        return None
    return failures.STUN_ERROR_RESPONSE


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await stun_check.run_transaction(endpoint, ctx, stun.allocate_request(),
                                            "turn_allocate", _evaluate_allocate)
