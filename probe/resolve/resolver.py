"""Resolving hosts for a run: one lookup per host and pass, shared by every check.

The resolver is ``--resolver IP[:PORT]`` or the first system name server
(``/etc/resolv.conf``; inside a lab namespace, ``/etc/netns/NAME/resolv.conf``). A host is
looked up once per pass (A and AAAA, :func:`probe.resolve.wire.query`); concurrent
callers share the lookup. Answers that are bogons (outside the host's expected networks,
:mod:`probe.bogons`) fail the lookup with ``dns_bogon_error``, so every check using the
host sees it; a reply injected next to the real one fails it with ``dns_injected_reply``.
The injection probe and the DoH control (:mod:`probe.resolve.tampering`) also run once
per host and pass, started by whichever check asks first.

Checks do not wait for the listening window: :meth:`HostResolver.resolve` returns the
host's answer as soon as the first valid replies to A and AAAA are in and give usable
addresses (a failing answer waits for the whole lookup), while
:meth:`HostResolver.lookup` (the ``dns`` measurement) returns the whole lookup. The only
thing the window can still change is a late, different reply (injection); the runner
asks :meth:`HostResolver.settle` after each check, so a check that went ahead on an
answer later found injected is recorded as that DNS failure, as if it had waited.

At most :data:`MAX_OUTSTANDING_QUERIES` queries to the resolver are outstanding at once
(sent, not yet answered): a scan asks ~100 at the start, and small home routers drop part
of such a burst.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.bogons import is_bogon
from probe.net import split_host_port
from probe.resolve.tampering import control_lookup, injection_probe
from probe.resolve.wire import query

if TYPE_CHECKING:
    import httpx

    from probe.model import RunConfig
    from probe.net import Network


MAX_OUTSTANDING_QUERIES = 16
# Hosts asked of the control resolver (--doh) at once (A and AAAA each: two connections).
DOH_HOSTS_AT_ONCE = 4

# The early answers the running check took (host -> answer), set by the runner per check.
_early_answers: contextvars.ContextVar[dict[str, DnsResult] | None] = \
    contextvars.ContextVar("early_answers", default=None)


@contextmanager
def early_answers() -> Iterator[dict[str, DnsResult]]:
    """Collect, in this task and the tasks it starts, the answers :meth:`resolve` gave
    before their lookup's listening window ended (for :meth:`HostResolver.settle`)."""
    taken: dict[str, DnsResult] = {}
    token = _early_answers.set(taken)
    try:
        yield taken
    finally:
        _early_answers.reset(token)


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
                 expected: Mapping[str, Sequence[str]] | None = None,
                 max_outstanding: int = MAX_OUTSTANDING_QUERIES) -> None:
        self._net = net
        self._cfg = cfg
        self._pace = asyncio.Semaphore(max(1, max_outstanding))
        self._tasks: dict[str, asyncio.Task[DnsResult]] = {}
        self._answers: dict[str, asyncio.Future[DnsResult]] = {}
        self._probes: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._controls: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._seed = dict(seed or {})
        self._doh: httpx.AsyncClient | None = None
        self._doh_pace = asyncio.Semaphore(DOH_HOSTS_AT_ONCE)
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
        if self._doh is None:
            # One client for the pass, a few hosts at a time: ~80 queries share a few
            # kept-alive connections instead of a TLS handshake each (CPU that stalls
            # every check's timers).
            self._doh = self._net.http_client(timeout_s=self._cfg.timeout_s,
                                              ca_bundle=self._cfg.ca_bundle)
        client, pace = self._doh, self._doh_pace

        async def paced() -> dict[str, Any]:
            async with pace:
                return await control_lookup(self._net, url, host, deadline,
                                            self._cfg.ca_bundle, client)

        return _once(self._controls, host, paced)

    async def aclose(self) -> None:
        """Close what the pass kept open (the control resolver's connections)."""
        if self._doh is not None:
            await self._doh.aclose()
            self._doh = None

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
        """The host's answer as soon as it is in (see the module docstring)."""
        if host in self._seed:
            return self._seed[host]
        self._start(host, deadline)
        answer = await asyncio.shield(self._answers[host])
        taken = _early_answers.get()
        if taken is not None and not self._tasks[host].done():
            taken.setdefault(host, answer)
        return answer

    async def lookup(self, host: str, deadline: float) -> DnsResult:
        """The whole lookup, listening window included (the ``dns`` measurement)."""
        if host in self._seed:
            return self._seed[host]
        self._start(host, deadline)
        return await asyncio.shield(self._tasks[host])

    async def settle(self, taken: Mapping[str, DnsResult], keys: dict[str, Any],
                     timeout_s: float) -> dict[str, Any]:
        """A check's test keys once the lookups it took early answers from are over: if
        one of them failed after all (a late, different reply: injection), the check's
        result is that DNS failure (``failed_operation = "resolve"``), with what it
        measured on the early answer kept under ``early_answer``."""
        for host, early in taken.items():
            if early.failure is not None or keys.get("failed_operation") == "resolve":
                continue
            try:
                final = await asyncio.wait_for(asyncio.shield(self._tasks[host]),
                                               max(timeout_s, 0.0))
            except TimeoutError:
                continue  # the window outlasted the check's grace: the answer stands
            if final.failure is not None:
                return {"failure": final.failure, "failed_operation": "resolve",
                        "early_answer": {"hostname": host, "addresses": early.addresses,
                                         "test_keys": keys}}
        return keys

    def _start(self, host: str, deadline: float) -> None:
        if host not in self._tasks:
            self._answers[host] = asyncio.get_running_loop().create_future()
            self._tasks[host] = asyncio.ensure_future(self._lookup(host, deadline))
            self.started.append(host)

    async def _lookup(self, host: str, deadline: float) -> DnsResult:
        answer = self._answers[host]
        try:
            result = await self._exchange(host, deadline)
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except BaseException as exc:
            if not answer.done():
                answer.set_exception(exc)
                answer.exception()  # retrieved: the lookup task reports it too
            raise
        if not answer.done():
            answer.set_result(result)
        return result

    async def _exchange(self, host: str, deadline: float) -> DnsResult:
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
        early: dict[str, dict[str, Any]] = {}
        answer = self._answers[host]

        def on_answer(record: dict[str, Any]) -> None:
            early[record["query_type"]] = record
            if len(early) == 2 and not answer.done():
                found = self._judge(host, ip, port, early["A"], early["AAAA"])
                # Only a usable answer goes out early: a failure (a forged bogon, say)
                # waits for the whole lookup, where a late reply may show injection.
                if found.failure is None:
                    answer.set_result(found)

        a, aaaa = await asyncio.gather(
            query(self._net, ip, port, host, "A", deadline, pace=self._pace,
                  on_answer=on_answer),
            query(self._net, ip, port, host, "AAAA", deadline, pace=self._pace,
                  on_answer=on_answer),
        )
        return self._judge(host, ip, port, a, aaaa)

    def _judge(self, host: str, ip: str, port: int, a: dict[str, Any],
               aaaa: dict[str, Any]) -> DnsResult:
        """The lookup's result from its A and AAAA records."""
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
