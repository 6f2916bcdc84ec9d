"""STUN check: a Binding request to a service's STUN server (RFC 8489).

Retransmits per RFC 8489 6.2.1 (RTO 500 ms, doubling) within the check's budget and
records every send and every datagram received. The reply is validated: magic cookie,
transaction ID, FINGERPRINT (when present), XOR-MAPPED-ADDRESS (present, of our address
family). No answer, an ICMP error, a malformed reply and a well-formed reply that is not
ours (injected) are different failures. The mapped address, the probe's public IP, is
recorded only with ``--include-ip``.

``neutral = true`` marks a server that is not the service's own (a third party's STUN
server on the port the service's calls use, where the service names no server): it is
measured the same way, and the runner derives no ``dns`` measurement of the service from
its name.

When no answer comes, a same-port control to the reflector (``--reflector``) tells how:
plain STUN passes there but not here (``relay_unreachable``), random bytes pass but
STUN does not (``stun_dpi``), or nothing passes on that port while the reflector's port
443 does (``udp_blocked``).
"""

from __future__ import annotations

from probe import failures, stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, is_bool
from probe.checks._stun import run_transaction, stun_methods
from probe.model import Endpoint

NAME = "stun"
VERSION = "0.1.0"
SPEC = CheckSpec(options={"neutral": is_bool},
                 doc="STUN Binding request (RFC 8489) with retransmission; a same-port "
                     "reflector control tells how a silent server is blocked; neutral = "
                     "true marks a third party's server standing for the call path (kept "
                     "out of the service's dns function)")

methods = stun_methods  # stun and turn measurements show their methods alike


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_transaction(endpoint, ctx, stun.binding_request(), "stun_binding",
                                 _evaluate_binding)


def _evaluate_binding(reply: stun.StunMessage) -> str | None:
    if reply.msg_class == stun.CLASS_ERROR:
        return failures.STUN_ERROR_RESPONSE
    return None
