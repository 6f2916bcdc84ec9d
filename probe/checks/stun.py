"""STUN check: a Binding request to a service's STUN server (RFC 8489).

Retransmits per RFC 8489 6.2.1 (RTO 500 ms, doubling) within the check's budget and
records every send and every datagram received. The reply is validated: magic cookie,
transaction ID, FINGERPRINT (when present), XOR-MAPPED-ADDRESS (present, of our address
family). No answer, an ICMP error, a malformed reply and a well-formed reply that is not
ours (injected) are different failures. The mapped address, the probe's public IP, is
recorded only with ``--include-ip``.

When no answer comes, a same-port control to the reflector (``--reflector``) tells how:
plain STUN passes there but not here (``relay_unreachable``), random bytes pass but
STUN does not (``stun_dpi``), or nothing passes on that port while the reflector's port
443 does (``udp_blocked``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from probe import failures, stun
from probe.checks import callpath
from probe.checks.dns import dns_methods
from probe.model import Endpoint

if TYPE_CHECKING:
    from probe.checks import CheckContext, TestKeys

NAME = "stun"
CONTROL_AFTER_S = 1.5  # start the reflector control when no answer came by then
_CONTROLLED = {failures.GENERIC_TIMEOUT, failures.PORT_UNREACHABLE,
               failures.HOST_UNREACHABLE, failures.NETWORK_UNREACHABLE}


def methods(test_keys: TestKeys) -> list[str]:
    failure = test_keys.get("failure")
    if failure is None:
        return []
    if test_keys.get("failed_operation") == "resolve":
        return dns_methods(failure)
    if failure in _CONTROLLED:
        return callpath.control_methods(test_keys.get("control"))
    return []


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_transaction(endpoint, ctx, stun.binding_request(), "stun_binding",
                                 _evaluate_binding)


def _evaluate_binding(reply: stun.StunMessage) -> str | None:
    if reply.msg_class == stun.CLASS_ERROR:
        return failures.STUN_ERROR_RESPONSE
    return None


async def run_transaction(endpoint: Endpoint, ctx: CheckContext, request: stun.StunMessage,
                          key: str, evaluate: Callable[[stun.StunMessage], str | None],
                          ) -> TestKeys:
    """Shared by the stun and turn checks: resolve, transact, control on failure."""
    host, port = endpoint.target_host, endpoint.port
    if host is None or port is None:
        raise ValueError(f"{endpoint.source}: {endpoint.check} endpoint needs a host and a port")
    keys: TestKeys = {"failure": None, "failed_operation": None, key: None, "control": None}
    resolved = await ctx.resolver.resolve(host, ctx.deadline)
    if resolved.failure is not None or not resolved.addresses:
        keys["failure"] = resolved.failure or failures.DNS_NO_ANSWER
        keys["failed_operation"] = "resolve"
        return keys
    v4 = [a for a in resolved.addresses if ":" not in a]
    ip = (v4 or resolved.addresses)[0]

    async def control_later() -> dict[str, Any] | None:
        await asyncio.sleep(min(CONTROL_AFTER_S, ctx.remaining() / 3))
        return await callpath.reflector_control(ctx, port, ctx.deadline)

    control = asyncio.ensure_future(control_later())
    tx = await callpath.stun_transaction(ctx, ip, port, request, ctx.deadline)
    if tx.failure is None and tx.response is not None:
        tx.failure = evaluate(tx.response)
    if tx.failure is None or tx.failure not in _CONTROLLED:
        control.cancel()
        try:
            await control
        except asyncio.CancelledError:
            pass
        else:
            keys["control"] = control.result()
    else:
        keys["control"] = await control
    keys[key] = tx.to_json(ctx.cfg.include_ip, tx.local)
    if tx.failure is not None:
        keys["failure"] = tx.failure
        keys["failed_operation"] = key
    return keys
