"""TURN check: an Allocate request without credentials to a service's relay (RFC 8656).

A TURN server answers an unauthenticated Allocate with a 401 error carrying REALM and
NONCE (RFC 8656 7.2, RFC 8489 9.2.4): that answer proves the relay is reachable and
speaks TURN, without any account. Transport, retransmission, validation and the
same-port reflector control are those of the stun check; a relay that cannot be
reached while STUN passes to the reflector on the same port is ``relay_unreachable``.
``flavor = "teams"`` puts Microsoft's STUN attributes in the Allocate, as a Teams client's
own shows them to a DPI engine; all are comprehension-optional (RFC 8489 14), so a
standard relay still answers 401. When it gets no answer, the reflector control tries the
same flavoured Allocate beside plain STUN: only the flavoured one dropped is
``app_stun_dpi``.
"""

from __future__ import annotations

from probe import stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, one_of
from probe.checks._payloads import stun_payload
from probe.checks._stun import evaluate_allocate, run_transaction, stun_methods
from probe.model import Endpoint

NAME = "turn"
VERSION = "0.1.0"
SPEC = CheckSpec(options={"flavor": one_of(*stun.OPTIONAL_FLAVORS)},
                 doc="TURN Allocate without credentials: a 401 with REALM and NONCE "
                     "proves the relay is reachable; flavor = \"teams\" adds Microsoft's "
                     "STUN attributes")

methods = stun_methods  # stun and turn measurements show their methods alike


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    flavor = endpoint.options.get("flavor")
    if not flavor:
        return await run_transaction(endpoint, ctx, stun.allocate_request(),
                                     "turn_allocate", evaluate_allocate)

    def flavoured() -> stun.StunMessage:
        return stun.allocate_request(extra=stun.flavour_attributes(str(flavor)))

    return await run_transaction(endpoint, ctx, flavoured(), "turn_allocate",
                                 evaluate_allocate, lambda: stun_payload(flavoured()))
