"""Running one check in a test the way the runner runs it: its own context and budget,
the pass's shared resolver (optionally seeded with lookups, told each host's expected
networks), and the keys as a results file stores them (a JSON round trip)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from probe.checks import CheckContext, get_check
from probe.model import Endpoint, RunConfig
from probe.net import Network
from probe.resolve import DnsResult, HostResolver


def context(net: Network, cfg: RunConfig, *, seed: dict[str, DnsResult] | None = None,
            expected: dict[str, tuple[str, ...]] | None = None) -> CheckContext:
    """A check context whose budget (``cfg.timeout_s``) starts now."""
    return CheckContext(cfg=cfg, net=net, resolver=HostResolver(net, cfg, seed, expected),
                        deadline=asyncio.get_running_loop().time() + cfg.timeout_s)


async def run_check(net: Network, ep: Endpoint, cfg: RunConfig | None = None, *,
                    budget: float = 2.0, seed: dict[str, DnsResult] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """The stored test keys of ``ep``'s check and the methods they show. The endpoint's
    own host expects its ``expected_networks``, as in a real run."""
    cfg = cfg or RunConfig(timeout_s=budget)
    host = ep.target_host
    expected = {host: ep.expected_networks} if host and ep.expected_networks else None
    module = get_check(ep.check)
    keys = await module.run(ep, context(net, cfg, seed=seed, expected=expected))
    stored: dict[str, Any] = json.loads(json.dumps(keys))  # what a results file holds
    assert "failure" in stored
    return stored, module.methods(stored)


def seeded(host: str, address: str = "127.0.0.1") -> dict[str, DnsResult]:
    """A resolver seed: ``host`` already resolved to ``address`` (loopback servers)."""
    return {host: DnsResult([address], None, {"failure": None, "addresses": [address]})}
