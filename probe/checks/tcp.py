"""TCP connect check: connect to every resolved address of a host on one port.

Like OONI's ``tcpconnect`` (df-005), but every address is tried (concurrently), so a
partial block of a service's addresses is visible. A bare connect sends no payload and
so cannot trigger payload DPI: that is what the TLS and app checks are for. WhatsApp's
``e*.whatsapp.net`` on 443/5222 speak WhatsApp's own protocol, not TLS, so they are
tested with this check. The endpoint works if any address accepted the connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.checks.dns import dns_methods
from probe.model import Endpoint

if TYPE_CHECKING:
    from probe.checks import CheckContext, TestKeys

NAME = "tcp"

_METHODS = {
    failures.CONNECTION_RESET: "tcp_reset",
    failures.GENERIC_TIMEOUT: "tcp_timeout",
    failures.CONNECTION_REFUSED: "tcp_refused",
}


def connect_methods(failure: str | None) -> list[str]:
    """Methods for a failed TCP connect; shared with checks that connect first."""
    method = _METHODS.get(failure or "")
    return [method] if method else []


def methods(test_keys: TestKeys) -> list[str]:
    failure = test_keys.get("failure")
    if failure is None:
        return []
    if test_keys.get("failed_operation") == "resolve":
        return dns_methods(failure)
    return connect_methods(failure)


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host, port = endpoint.target_host, endpoint.port
    if host is None or port is None:
        raise ValueError(f"{endpoint.source}: tcp endpoint needs a host and a port")
    resolved = await ctx.resolver.resolve(host, ctx.deadline)
    keys: TestKeys = {"failure": None, "failed_operation": None, "tcp_connect": []}
    if resolved.failure is not None or not resolved.addresses:
        keys["failure"] = resolved.failure or failures.DNS_NO_ANSWER
        keys["failed_operation"] = "resolve"
        return keys
    attempts = await asyncio.gather(*(connect(ctx, ip, port) for ip in resolved.addresses))
    keys["tcp_connect"] = attempts
    if not any(a["status"]["success"] for a in attempts):
        keys["failure"] = _first_failure(attempts)
        keys["failed_operation"] = "connect"
    return keys


async def connect(ctx: CheckContext, ip: str, port: int) -> dict[str, Any]:
    """One connect attempt, as a df-005 ``tcp_connect`` entry."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    failure: str | None = None
    try:
        stream = await ctx.net.tcp_connect(ip, port, ctx.remaining())
    except Exception as exc:  # network failures are data
        failure = failures.classify(exc)
    else:
        await stream.close()
    return {"ip": ip, "port": port, "t": round(loop.time() - t0, 4),
            "status": {"success": failure is None, "failure": failure}}


def _first_failure(attempts: list[dict[str, Any]]) -> str:
    # Prefer an IPv4 failure: on a host without IPv6, the AAAA addresses fail with
    # network_unreachable, which says nothing about blocking.
    for a in attempts:
        if ":" not in a["ip"]:
            return str(a["status"]["failure"])
    return str(attempts[0]["status"]["failure"]) if attempts else failures.UNKNOWN
