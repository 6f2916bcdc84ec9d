"""Resolving hosts for a run: one lookup per host and pass, shared by every check.

The resolver is ``--resolver IP[:PORT]`` or the first system name server
(``/etc/resolv.conf``; inside a lab namespace, ``/etc/netns/NAME/resolv.conf``). A host is
looked up once per pass (A and AAAA, :func:`probe.resolve.wire.query`); concurrent
callers share the lookup. Answers that are bogons (outside the host's expected networks,
:mod:`probe.bogons`) fail the lookup with ``dns_bogon_error``, so every check using the
host sees it; a reply injected next to the real one fails it with ``dns_injected_reply``.
The injection probe and the DoH control (:mod:`probe.resolve.tampering`) also run once
per host and pass, started by whichever check asks first.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.bogons import is_bogon
from probe.net import split_host_port
from probe.resolve.tampering import control_lookup, injection_probe
from probe.resolve.wire import query

if TYPE_CHECKING:
    from probe.model import RunConfig
    from probe.net import Network


@dataclass(slots=True)
class DnsResult:
    addresses: list[str]
    failure: str | None
    test_keys: dict[str, Any] = field(default_factory=dict)


def parse_resolver(value: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[v6]:PORT`` or a bare IPv6 address -> (ip, port)."""
    ip, port = split_host_port(value, 53)
    ipaddress.ip_address(ip)  # raises ValueError for a host name or garbage
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return ip, port


class HostResolver:
    """Resolves each host once per pass; concurrent callers share the lookup."""

    def __init__(self, net: Network, cfg: RunConfig,
                 seed: dict[str, DnsResult] | None = None,
                 expected: Mapping[str, Sequence[str]] | None = None) -> None:
        self._net = net
        self._cfg = cfg
        self._tasks: dict[str, asyncio.Task[DnsResult]] = {}
        self._probes: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._controls: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._seed = dict(seed or {})
        # host -> networks its answers are expected in (the union over the plan)
        self._expected = {h.lower().rstrip("."): tuple(n) for h, n in (expected or {}).items()}
        self.started: list[str] = []  # hosts looked up in this pass (not seeded)

    def expected_for(self, host: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
        nets = list(self._expected.get(host.lower().rstrip("."), ()))
        return tuple(nets + [n for n in extra if n not in nets])

    def injection(self, host: str, target: str, deadline: float
                  ) -> asyncio.Future[dict[str, Any]]:
        """The injection probe for ``host`` (to ``target``), run once per pass."""
        return _once(self._probes, host,
                     lambda: injection_probe(self._net, target, host, deadline))

    def control(self, host: str, deadline: float) -> asyncio.Future[dict[str, Any]]:
        """The control resolver's (``--doh``) answers for ``host``, once per pass."""
        url = self._cfg.doh_url
        if url is None:
            raise ValueError("no control resolver configured (--doh)")
        return _once(self._controls, host,
                     lambda: control_lookup(self._net, url, host, deadline,
                                            self._cfg.ca_bundle))

    def server(self) -> tuple[str, int] | None:
        if self._cfg.resolver:
            return parse_resolver(self._cfg.resolver)
        for candidate in self._net.system_resolvers():
            try:
                return parse_resolver(candidate)
            except ValueError:
                continue
        return None

    def results(self) -> dict[str, DnsResult]:
        return {h: t.result() for h, t in self._tasks.items() if t.done() and not t.cancelled()
                and t.exception() is None}

    async def resolve(self, host: str, deadline: float) -> DnsResult:
        if host in self._seed:
            return self._seed[host]
        task = self._tasks.get(host)
        if task is None:
            task = asyncio.ensure_future(self._lookup(host, deadline))
            self._tasks[host] = task
            self.started.append(host)
        return await asyncio.shield(task)

    async def _lookup(self, host: str, deadline: float) -> DnsResult:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return DnsResult([str(literal)], None, {
                "failure": None, "hostname": host, "resolver": None, "queries": [],
                "addresses": [str(literal)], "literal": True})
        server = self.server()
        if server is None:
            return DnsResult([], failures.DNS_NO_RESOLVER, {
                "failure": failures.DNS_NO_RESOLVER, "hostname": host, "resolver": None,
                "queries": [], "addresses": []})
        ip, port = server
        a, aaaa = await asyncio.gather(
            query(self._net, ip, port, host, "A", deadline),
            query(self._net, ip, port, host, "AAAA", deadline),
        )
        addresses = [*a["addresses"], *aaaa["addresses"]]
        failure = None if addresses else _overall_failure(a["failure"], aaaa["failure"])
        keys: dict[str, Any] = {
            "failure": failure,
            "hostname": host,
            "resolver": f"{ip}:{port}",
            "queries": [a, aaaa],
            "addresses": addresses,
        }
        if failures.DNS_INJECTED in (a["failure"], aaaa["failure"]):
            keys["failure"] = failures.DNS_INJECTED
        else:
            expected = self.expected_for(host)
            bogons = [x for x in addresses if is_bogon(x, expected)]
            if bogons:
                keys["failure"] = failures.DNS_BOGON
                keys["bogon_answers"] = bogons
        if keys["failure"] is not None:
            keys["answered_addresses"] = addresses
            keys["addresses"] = []
        return DnsResult(list(keys["addresses"]), keys["failure"], keys)


def _once(tasks: dict[str, asyncio.Task[dict[str, Any]]], host: str,
          start: Callable[[], Coroutine[Any, Any, dict[str, Any]]]
          ) -> asyncio.Future[dict[str, Any]]:
    """The one task per host and pass (started on first use), shielded so that a check
    that gives up waiting does not cancel it for the others."""
    if host not in tasks:
        tasks[host] = asyncio.ensure_future(start())
    return asyncio.shield(tasks[host])


def _overall_failure(a: str | None, aaaa: str | None) -> str:
    if a is None or a == failures.DNS_NO_ANSWER:
        return aaaa or failures.DNS_NO_ANSWER
    return a
