"""Running one check in a test the way the runner runs it: its own context and budget,
the pass's shared resolver (optionally seeded with lookups, told each host's expected
networks), and the keys as a results file stores them (a JSON round trip); the call-path
checks through the fake world (:mod:`probe.testing`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from probe.checks import CheckContext, get_check
from probe.model import Endpoint, RunConfig
from probe.net import Network
from probe.resolve import DnsResult, HostResolver, early_answers
from probe.testing import FAKE_NETWORKS, FakeNetwork, reflector_responder


def context(net: Network, cfg: RunConfig, *, seed: dict[str, DnsResult] | None = None,
            expected: dict[str, tuple[str, ...]] | None = None,
            shared: dict[str, Any] | None = None) -> CheckContext:
    """A check context whose budget (``cfg.timeout_s``) starts now; ``shared``: what the
    run's other checks left in ``ctx.shared`` (default: nothing)."""
    return CheckContext(cfg=cfg, net=net, resolver=HostResolver(net, cfg, seed, expected),
                        deadline=asyncio.get_running_loop().time() + cfg.timeout_s,
                        shared={} if shared is None else shared)


async def run_check(net: Network, ep: Endpoint, cfg: RunConfig | None = None, *,
                    budget: float = 2.0, seed: dict[str, DnsResult] | None = None,
                    shared: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """The stored test keys of ``ep``'s check and the methods they show. The endpoint's
    own host expects its ``expected_networks``, as in a real run."""
    cfg = cfg or RunConfig(timeout_s=budget)
    host = ep.target_host
    expected = {host: ep.expected_networks} if host and ep.expected_networks else None
    module = get_check(ep.check)
    ctx = context(net, cfg, seed=seed, expected=expected, shared=shared)
    # As the runner does: the check starts on its host's first answer and is settled
    # against the whole lookup when it ends.
    with early_answers() as taken:
        keys = await module.run(ep, ctx)
    keys = await ctx.resolver.settle(taken, keys, ctx.remaining() + 1.0)
    stored: dict[str, Any] = json.loads(json.dumps(keys))  # what a results file holds
    assert "failure" in stored
    return stored, module.methods(stored)


async def resolving_check(net: Network, host: str,
                          expected: tuple[str, ...] = FAKE_NETWORKS,
                          cfg: RunConfig | None = None, budget: float = 2.0,
                          name: str = "dns") -> dict[str, Any]:
    """The test keys of the ``dns`` check of ``host`` (or of check ``name`` to its port
    443, which resolves it first), the host expecting ``expected`` networks."""
    ep = Endpoint(service="s", function="dns" if name == "dns" else "messaging", check=name,
                  host=host, port=None if name == "dns" else 443, expected_networks=expected)
    keys, _ = await run_check(net, ep, cfg, budget=budget)
    return keys


def recorded_trials(flows: list[list[Any]]) -> dict[str, Any]:
    """A :func:`probe.checks._trials.trials` result holding ``flows`` (``[phase, kind,
    source port, result]``, as recorded in a lab run), with the per-kind counts they
    make: for judging recorded trials again."""
    kinds: dict[str, dict[str, Any]] = {}
    for _, kind, _, result in flows:
        k = kinds.setdefault(kind, {"sent": 0, "answered": 0, "rtt_s": []})
        k["sent"] += 1
        k["answered"] += result == "ok"
    return {"kinds": kinds, "flows": flows, "icmp": None}


def seeded(host: str, address: str = "127.0.0.1") -> dict[str, DnsResult]:
    """A resolver seed: ``host`` already resolved to ``address`` (loopback servers)."""
    return {host: DnsResult([address], None, {"failure": None, "addresses": [address]})}


# --- the call-path checks in the fake world ------------------------------------------------

SERVER = "198.18.9.10"    # a STUN/TURN server of the fake world
REFLECTOR = "198.18.9.7"  # the project's reflector (--reflector) in the fake world
CALL_PORT = 3478


def call_world(**world: Any) -> FakeNetwork:
    """A fake world (``world``: :class:`FakeNetwork` fields) whose reflector answers on
    every port with the project's reflector logic."""
    net = FakeNetwork(**world)
    net.udp_hosts.setdefault(REFLECTOR, reflector_responder)
    return net


async def run_call_check(check: str, net: Network, *, host: str | None = SERVER,
                         port: int = CALL_PORT, options: dict[str, Any] | None = None,
                         timeout_s: float = 2.0, reflector: str | None = REFLECTOR,
                         include_ip: bool = False, stream_seconds: float = 1.0,
                         shared: dict[str, Any] | None = None
                         ) -> tuple[dict[str, Any], list[str]]:
    """One call-path check (function ``calls``) through ``net``, by :func:`run_check`."""
    ep = Endpoint(service="svc", function="calls", check=check, host=host, port=port,
                  options=options or {}, source="test:1")
    cfg = RunConfig(timeout_s=timeout_s, reflector=reflector, include_ip=include_ip,
                    stream_seconds=stream_seconds)
    return await run_check(net, ep, cfg, shared=shared)
