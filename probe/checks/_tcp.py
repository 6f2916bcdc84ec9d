"""TCP connects as the tcp, tls and https checks make them (OONI df-005 entries)."""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, layer_methods


def connect_methods(failure: str | None) -> list[str]:
    """Methods for a failed TCP connect."""
    return layer_methods("tcp", failure)


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
