"""TURN check: an Allocate request without credentials to a service's relay (RFC 8656).

A TURN server answers an unauthenticated Allocate with a 401 error carrying REALM and
NONCE (RFC 8656 7.2, RFC 8489 9.2.4): that answer proves the relay is reachable and
speaks TURN, without any account. Transport, retransmission, validation and the
same-port reflector control are those of the stun check; a relay that cannot be
reached while STUN passes to the reflector on the same port is ``relay_unreachable``.
"""

from __future__ import annotations

from probe import failures, stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys
from probe.checks._stun import run_transaction, stun_methods
from probe.model import Endpoint

NAME = "turn"
VERSION = "0.1.0"
SPEC = CheckSpec(doc="TURN Allocate without credentials: a 401 with REALM and NONCE "
                     "proves the relay is reachable")

methods = stun_methods  # stun and turn measurements show their methods alike


def _evaluate_allocate(reply: stun.StunMessage) -> str | None:
    if reply.msg_class == stun.CLASS_SUCCESS:
        return None  # an open relay: reachable all the same
    err = reply.error_code
    if err is not None and err.code == 401 and reply.realm and reply.nonce is not None:
        return None
    return failures.STUN_ERROR_RESPONSE


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_transaction(endpoint, ctx, stun.allocate_request(), "turn_allocate",
                                 _evaluate_allocate)
