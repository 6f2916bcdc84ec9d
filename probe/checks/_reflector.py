"""The reflector as the call-path checks use it: its address, and a same-port control
for checks to a service's own servers.

:func:`control_methods` says what a same-port reflector control shows about a failure
to a service's server: the port is blocked (``udp_blocked``), STUN is (``stun_dpi``),
or only that destination is (``relay_unreachable``). The reflector's port 443 is the
baseline (the port least likely to be blocked).
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import CheckContext
from probe.checks._payloads import PayloadMaker, differential_makers
from probe.checks._trials import answered, any_answered, trials
from probe.hostnames import ipv4_first

BASELINE_PORT = 443


async def reflector_address(ctx: CheckContext) -> tuple[str | None, dict[str, Any]]:
    """The reflector's IP (resolved if a name) and a record of how it was found."""
    host = ctx.cfg.reflector
    if not host:
        return None, {"failure": failures.NOT_APPLICABLE,
                      "reason": "no reflector given (--reflector)"}
    res = await ctx.resolver.resolve(host, ctx.deadline)
    if res.failure is not None or not res.addresses:
        return None, {"failure": res.failure or failures.DNS_NO_ANSWER,
                      "failed_operation": "resolve_reflector"}
    return ipv4_first(res.addresses)[0], {"failure": None}


async def reflector_control(ctx: CheckContext, port: int, deadline: float,
                            app: PayloadMaker | None = None) -> dict[str, Any] | None:
    """Plain STUN and random bytes to the reflector on ``port`` (and, given ``app``, the
    app-flavoured request the failed check sent, as kind ``app_stun``), and random bytes
    to its baseline port; None when no reflector is configured."""
    ip, info = await reflector_address(ctx)
    if ip is None:
        return None if info["failure"] == failures.NOT_APPLICABLE else info
    makers, _ = differential_makers(None)
    if app is not None:
        makers["app_stun"] = app
    same, base = await asyncio.gather(
        trials(ctx, ip, port, makers, 2, deadline),
        trials(ctx, ip, BASELINE_PORT, {"random": makers["random"]}, 2, deadline),
    )
    return {"failure": None, "same_port": same, "baseline": base}


def control_methods(control: dict[str, Any] | None) -> list[str]:
    """Methods a failure to a service's server shows, given the same-port control."""
    if not control or control.get("failure"):
        return []
    same, base = control.get("same_port"), control.get("baseline")
    if not any_answered(same) and (same or {}).get("icmp") == failures.PORT_UNREACHABLE:
        return []  # the reflector does not listen on this port: the path works, no test
    if answered(same, "stun") and answered(same, "app_stun") is False:
        return ["app_stun_dpi"]  # plain STUN passes on this port, the app's request not
    if answered(same, "stun"):
        return ["relay_unreachable"]  # STUN passes on this port: that destination is cut
    if answered(same, "random"):
        return ["stun_dpi"]  # random bytes pass on the same 5-tuple, STUN does not
    if any_answered(base):
        return ["udp_blocked"]  # nothing passes on this port, the baseline port works
    return []  # the reflector is unreachable: nothing can be said
