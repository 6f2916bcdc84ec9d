"""TCP connect check: connect to every resolved address of a host on one port.

Like OONI's ``tcpconnect`` (df-005), but every address is tried (concurrently), so a
partial block of a service's addresses is visible. A bare connect sends no payload and
so cannot trigger payload DPI: that is what the TLS and app checks are for. WhatsApp's
``e*.whatsapp.net`` on 443/5222 speak WhatsApp's own protocol, not TLS, so they are
tested with this check. The endpoint works if any address accepted the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import (
    CheckContext,
    CheckSpec,
    TestKeys,
    host_and_port,
    resolve_first,
    settled_methods,
)
from probe.checks._tcp import connect, connect_methods
from probe.model import Endpoint

NAME = "tcp"
VERSION = "0.1.0"
SPEC = CheckSpec(doc="TCP connect to every resolved address")


def methods(test_keys: TestKeys) -> list[str]:
    settled = settled_methods(test_keys)
    return settled if settled is not None else connect_methods(test_keys["failure"])


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host, port = host_and_port(endpoint)
    keys: TestKeys = {"failure": None, "failed_operation": None, "tcp_connect": []}
    addresses = await resolve_first(ctx, host, keys)
    if addresses is None:
        return keys
    attempts = await asyncio.gather(*(connect(ctx, ip, port) for ip in addresses))
    keys["tcp_connect"] = attempts
    if not any(a["status"]["success"] for a in attempts):
        keys["failure"] = _first_failure(attempts)
        keys["failed_operation"] = "connect"
    return keys


def _first_failure(attempts: list[dict[str, Any]]) -> str:
    # Addresses are IPv4 first: on a host without IPv6, the AAAA addresses fail with
    # network_unreachable, which says nothing about blocking.
    return str(attempts[0]["status"]["failure"]) if attempts else failures.UNKNOWN
