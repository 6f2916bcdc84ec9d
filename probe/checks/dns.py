"""DNS resolution check: A and AAAA queries over UDP to the chosen resolver.

The resolver is ``--resolver IP[:PORT]`` or the first system name server
(``/etc/resolv.conf``; inside a lab namespace, ``/etc/netns/NAME/resolv.conf``). Queries
are built with dnspython and sent through the network seam, so that NXDOMAIN, SERVFAIL,
REFUSED, silence, malformed replies and ICMP errors are told apart (getaddrinfo would
fold them together). Retransmission: the same query again after 1 s, 2 s, 4 s ... within
the budget; a reply with the wrong ID or question is ignored (recorded) and the check
keeps waiting. A truncated reply is retried over TCP. After the first valid reply the
check keeps listening a little longer (Hold-On): an on-path injector cannot suppress the
real answer, so a second, *different* reply to a query sent once is injection
(``dns_injected_reply``).

Tampering (:mod:`probe.checks.dns_tampering`): a lookup whose answers are bogons (outside
the host's ``expected_networks``) fails with ``dns_bogon_error``, which every check using
the host sees. The ``dns`` measurement adds an injection probe (a query to an address that
runs no DNS server) and, with ``--doh``, the control resolver's answers; answers outside
the expected networks that the control contradicts fail with ``dns_unexpected_network``.
Precedence: injection, then bogon, then the resolver's own failure.

:class:`HostResolver` shares one lookup per host between all checks of a pass; every
lookup becomes a ``dns`` measurement (function ``dns``) for each service using the host.
Records follow OONI df-002 (``queries[]`` with ``answers[]``, ``rcode``, ``failure``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.model import Endpoint

if TYPE_CHECKING:
    from probe.checks import CheckContext, TestKeys
    from probe.model import RunConfig
    from probe.net import Network

NAME = "dns"
FIRST_RTO_S = 1.0
# Listening for late duplicates after the first reply: 4x its round trip, within bounds
# (and at most a tenth of the budget left).
DUPLICATE_MIN_S = 0.3
DUPLICATE_MAX_S = 1.0
DUPLICATE_RTT_FACTOR = 4.0
DUPLICATE_BUDGET_SHARE = 0.1

_RCODE_FAILURE = {
    "NXDOMAIN": failures.DNS_NXDOMAIN,
    "SERVFAIL": failures.DNS_SERVFAIL,
    "REFUSED": failures.DNS_REFUSED,
}

# How the failure of a lookup shows blocking (DESIGN.md methods).
_METHODS = {
    failures.DNS_NXDOMAIN: "dns_nxdomain",
    failures.DNS_SERVFAIL: "dns_servfail",
    failures.GENERIC_TIMEOUT: "dns_timeout",
    failures.DNS_BOGON: "dns_bogon",
    failures.DNS_INJECTED: "dns_injection",
    # A forged (non-bogon) answer the control resolver contradicts. The vocabulary has no
    # separate method for a lying resolver; like injection, the answer was forged.
    failures.DNS_UNEXPECTED_NETWORK: "dns_injection",
}


def dns_methods(failure: str | None) -> list[str]:
    """Methods for a DNS failure string; shared with checks that resolve first."""
    method = _METHODS.get(failure or "")
    return [method] if method else []


def methods(test_keys: TestKeys) -> list[str]:
    found = dns_methods(test_keys.get("failure"))
    for extra in test_keys.get("tampering", []) or []:
        if extra in _METHODS.values() and extra not in found:
            found.append(extra)
    return found


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    from probe.checks import dns_tampering as T

    host = endpoint.target_host
    if host is None:
        raise ValueError(f"{endpoint.source}: dns endpoint without a host")
    result = await ctx.resolver.resolve(host, ctx.deadline)
    keys = dict(result.test_keys)
    if keys.get("literal"):
        return keys
    expected = ctx.resolver.expected_for(host, endpoint.expected_networks)
    target = T.probe_target(result.addresses, expected)
    probe_task = ctx.resolver.injection(host, target, ctx.deadline) if target else None
    control_task = ctx.resolver.control(host, ctx.deadline) if ctx.cfg.doh_url else None
    probe = await _within(probe_task, ctx)
    control = await _within(control_task, ctx)
    keys["expected_networks"] = list(expected)
    keys["injection_probe"] = probe if probe is not None else {
        "target": None, "injected": False,
        "skipped": "no resolved address that is not a bogon"}
    keys["control"] = control
    suspicious = T.outside_expected(result.addresses, expected)
    keys["suspicious_answers"] = suspicious
    tampering: list[str] = list(dns_methods(keys["failure"])) \
        if keys["failure"] in (failures.DNS_INJECTED, failures.DNS_BOGON) else []
    if probe is not None and probe["injected"]:
        tampering.append("dns_injection")
        if keys["failure"] is None:
            keys["failure"] = failures.DNS_INJECTED
    if suspicious and control is not None and control["failure"] is None:
        disagrees = T.control_disagrees(result.addresses, control["addresses"], expected)
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


@dataclass(slots=True)
class DnsResult:
    addresses: list[str]
    failure: str | None
    test_keys: TestKeys = field(default_factory=dict)


def parse_resolver(value: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[v6]:PORT`` or a bare IPv6 address -> (ip, port)."""
    from probe.net import split_host_port

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
        from probe.checks.dns_tampering import injection_probe

        return _once(self._probes, host,
                     lambda: injection_probe(self._net, target, host, deadline))

    def control(self, host: str, deadline: float) -> asyncio.Future[dict[str, Any]]:
        """The control resolver's (``--doh``) answers for ``host``, once per pass."""
        from probe.checks.dns_tampering import control_lookup

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
        keys: TestKeys = {
            "failure": failure,
            "hostname": host,
            "resolver": f"{ip}:{port}",
            "queries": [a, aaaa],
            "addresses": addresses,
        }
        if failures.DNS_INJECTED in (a["failure"], aaaa["failure"]):
            keys["failure"] = failures.DNS_INJECTED
        else:
            from probe.checks.dns_tampering import is_bogon

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


async def query(net: Network, server_ip: str, port: int, qname: str, rdtype: str,
                deadline: float, duplicates: bool = True) -> dict[str, Any]:
    """One question to one server, with retransmission; a df-002 query record.
    ``duplicates=False`` returns at the first valid reply (lookups that measure nothing)."""
    import dns.flags
    import dns.message
    import dns.rdatatype

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    q.flags |= dns.flags.RD
    wire = q.to_wire()
    record: dict[str, Any] = {
        "query_type": rdtype, "hostname": qname, "engine": "udp",
        "resolver_address": f"{server_ip}:{port}", "transaction_id": q.id,
        "answers": [], "addresses": [], "rcode": None, "failure": None,
        "attempts": 0, "ignored_replies": [], "late_replies": [], "t0": 0.0, "t": 0.0,
    }
    try:
        reply = await _udp_exchange(net, server_ip, port, q, wire, deadline, record,
                                    duplicates)
        if reply is not None and reply.flags & dns.flags.TC:
            record["engine"] = "tcp"
            reply = await _tcp_exchange(net, server_ip, port, q, wire, deadline, record)
    except Exception as exc:  # network failures are data
        record["failure"] = failures.classify(exc)
        record["t"] = round(loop.time() - t0, 4)
        return record
    record["t"] = round(loop.time() - t0, 4)
    if reply is None:
        # No valid reply: say why, if something did come back (garbage, wrong ID).
        ignored = record["ignored_replies"]
        record["failure"] = ignored[-1]["reason"] if ignored else failures.GENERIC_TIMEOUT
        return record
    fill_answers(record, reply, rdtype)
    _judge_duplicates(record)
    return record


def _reply_summary(reply: Any, rdtype: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"answers": [], "addresses": [], "rcode": None, "failure": None}
    fill_answers(entry, reply, rdtype)
    return {"rcode": entry["rcode"], "addresses": sorted(entry["addresses"])}


def _judge_duplicates(record: dict[str, Any]) -> None:
    """Differing replies to a query sent once: one of them was injected."""
    first = {"rcode": record["rcode"], "addresses": sorted(record["addresses"])}
    differing = [r for r in record["late_replies"]
                 if (r["rcode"], r["addresses"]) != (first["rcode"], first["addresses"])]
    if differing and record["attempts"] == 1:
        record["injected_first"] = first
        record["failure"] = failures.DNS_INJECTED


async def _udp_exchange(net: Network, ip: str, port: int, q: Any, wire: bytes,
                        deadline: float, record: dict[str, Any], duplicates: bool = True) -> Any:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rdatatype

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    flow = await net.udp_open(ip, port)
    first: Any = None
    listen_until = deadline
    try:
        rto = FIRST_RTO_S
        next_send = loop.time()
        while True:
            now = loop.time()
            if now >= listen_until:
                return first
            if first is None and now >= next_send:
                await flow.send(wire)
                record["attempts"] += 1
                next_send = now + rto
                rto *= 2
            wait = (listen_until if first is not None else min(next_send, deadline)) \
                - loop.time()
            try:
                data = await flow.recv(max(wait, 0.0))
            except TimeoutError:
                continue
            except OSError:
                if first is not None:  # an ICMP error after the answer changes nothing
                    return first
                raise
            try:
                reply = dns.message.from_wire(data)
            except dns.exception.DNSException as exc:
                record["ignored_replies"].append(
                    {"reason": failures.DNS_SERVER_MISBEHAVING,
                     "detail": f"{type(exc).__name__}", "num_bytes": len(data)})
                continue
            if not q.is_response(reply):
                record["ignored_replies"].append(
                    {"reason": failures.DNS_WRONG_QUERY_ID, "num_bytes": len(data)})
                continue
            if first is not None:
                record["late_replies"].append(
                    {**_reply_summary(reply, dns.rdatatype.to_text(q.question[0].rdtype)),
                     "t": round(loop.time() - t0, 4)})
                continue
            first = reply
            if reply.flags & dns.flags.TC or not duplicates:
                return first
            now = loop.time()
            # Never more than a tenth of what is left: every check using the host waits.
            window = min(max(DUPLICATE_MIN_S, DUPLICATE_RTT_FACTOR * (now - t0)),
                         DUPLICATE_MAX_S, DUPLICATE_BUDGET_SHARE * (deadline - now))
            listen_until = min(now + window, deadline)
    finally:
        flow.close()


async def _tcp_exchange(net: Network, ip: str, port: int, q: Any, wire: bytes,
                        deadline: float, record: dict[str, Any]) -> Any:
    import dns.message

    loop = asyncio.get_running_loop()
    stream = await net.tcp_connect(ip, port, max(deadline - loop.time(), 0.0))
    try:
        await stream.write(struct.pack("!H", len(wire)) + wire)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            chunk = await stream.read(65535, max(deadline - loop.time(), 0.0))
            if not chunk:
                raise EOFError("DNS over TCP: connection closed before the reply")
            buf += chunk
        reply = dns.message.from_wire(buf[2:2 + struct.unpack("!H", buf[:2])[0]])
        if not q.is_response(reply):
            record["ignored_replies"].append(
                {"reason": failures.DNS_WRONG_QUERY_ID, "num_bytes": len(buf)})
            return None
        return reply
    finally:
        await stream.close()


def fill_answers(record: dict[str, Any], reply: Any, rdtype: str) -> None:
    import dns.rcode
    import dns.rdatatype

    rcode = dns.rcode.to_text(reply.rcode())
    record["rcode"] = rcode
    for rrset in reply.answer:
        for rdata in rrset:
            kind = dns.rdatatype.to_text(rdata.rdtype)
            entry: dict[str, Any] = {"answer_type": kind, "ttl": rrset.ttl}
            if kind == "A":
                entry["ipv4"] = rdata.address
            elif kind == "AAAA":
                entry["ipv6"] = rdata.address
            elif kind == "CNAME":
                entry["hostname"] = str(rdata.target)
            else:
                entry["data"] = rdata.to_text()[:200]
            record["answers"].append(entry)
            if kind == rdtype and kind in ("A", "AAAA"):
                record["addresses"].append(rdata.address)
    if rcode in _RCODE_FAILURE:
        record["failure"] = _RCODE_FAILURE[rcode]
    elif rcode != "NOERROR":
        record["failure"] = failures.DNS_SERVER_MISBEHAVING
    elif not any(a["answer_type"] == rdtype for a in record["answers"]):
        record["failure"] = failures.DNS_NO_ANSWER
