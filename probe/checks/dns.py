"""DNS check: the lookup of one host by the run's resolver, with tampering evidence.

The lookup itself (A and AAAA, retransmission, Hold-On duplicates, bogon answers) is
the run's shared resolver's (:mod:`probe.resolve`): every check using the host sees the
same answer. This check records it as the ``dns`` measurement of each service using the
host (function ``dns``) and adds what only this measurement asks for
(:mod:`probe.resolve.tampering`): an injection probe (a query to an address that runs no
DNS server) and, with ``--doh``, the control resolver's answers; answers outside the
expected networks that the control contradicts fail with ``dns_unexpected_network``.
Precedence: injection, then bogon, then the resolver's own failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import DNS_METHODS, CheckContext, CheckSpec, TestKeys, dns_methods
from probe.hostnames import is_ip_literal
from probe.model import Endpoint
from probe.resolve.tampering import control_disagrees, outside_expected, probe_target

NAME = "dns"
VERSION = "0.1.0"
SPEC = CheckSpec(ports="forbidden", doc="resolve the hosts (A and AAAA) and nothing else")


def methods(test_keys: TestKeys) -> list[str]:
    found = dns_methods(test_keys.get("failure"))
    for extra in test_keys.get("tampering", []) or []:
        if extra in DNS_METHODS.values() and extra not in found:
            found.append(extra)
    return found


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host = endpoint.target_host
    if host is None:
        raise ValueError(f"{endpoint.source}: dns endpoint without a host")
    # The control resolver needs no answer of ours: it asks beside the lookup.
    control_task = ctx.resolver.control(host, ctx.deadline) \
        if ctx.cfg.doh_url and not is_ip_literal(host) else None
    result = await ctx.resolver.lookup(host, ctx.deadline)
    keys = dict(result.test_keys)
    if keys.get("literal"):
        return keys
    expected = ctx.resolver.expected_for(host, endpoint.expected_networks)
    target = probe_target(result.addresses, expected)
    probe_task = ctx.resolver.injection(host, target, ctx.deadline) if target else None
    probe = await _within(probe_task, ctx)
    control = await _within(control_task, ctx)
    keys["expected_networks"] = list(expected)
    keys["injection_probe"] = probe if probe is not None else {
        "target": None, "injected": False,
        "skipped": "no resolved address that is not a bogon"}
    keys["control"] = control
    suspicious = outside_expected(result.addresses, expected)
    keys["suspicious_answers"] = suspicious
    tampering: list[str] = list(dns_methods(keys["failure"])) \
        if keys["failure"] in (failures.DNS_INJECTED, failures.DNS_BOGON) else []
    if probe is not None and probe["injected"]:
        tampering.append("dns_injection")
        if keys["failure"] is None:
            keys["failure"] = failures.DNS_INJECTED
    if suspicious and control is not None and control["failure"] is None:
        disagrees = control_disagrees(result.addresses, control["addresses"], expected)
        keys["control_disagrees"] = disagrees
        if disagrees:
            tampering.append("dns_injection")
            if keys["failure"] is None:
                keys["failure"] = failures.DNS_UNEXPECTED_NETWORK
    keys["tampering"] = sorted(set(tampering))
    return keys


async def _within(task: Any, ctx: CheckContext) -> Any:
    """The task's result if it finishes within the check's budget (httpx's timeouts are
    per operation, so a slow control resolver could outlast it), else None."""
    if task is None:
        return None
    try:
        return await asyncio.wait_for(task, max(ctx.remaining(), 0.0))
    except TimeoutError:
        return None
