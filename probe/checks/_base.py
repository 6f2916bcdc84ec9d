"""What every check shares: its context, its declared contract, and the first steps most
checks take (resolve the host, pick an address), so no check imports another.

A check module (see :mod:`probe.checks`) declares::

    NAME: str                      # the check's name in target files and test_name
    VERSION: str                   # written as test_version in every measurement
    SPEC: CheckSpec                # the target keys it needs and accepts
    async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys
    def methods(test_keys: TestKeys) -> list[str]

``run`` raises only when the check cannot run at all (bad input: a bug or a bad
target); every network failure is data, recorded as ``test_keys["failure"]`` (always
present: ``None`` on success, a :mod:`probe.failures` string otherwise). ``methods``
is a pure function of stored test keys, so verdicts can be recomputed from a results
file; it may return methods for a success too (e.g. ``throttled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from probe import failures
from probe.hostnames import ipv4_first, valid_hostname
from probe.model import Endpoint, RunConfig

if TYPE_CHECKING:
    from probe.net import Network, UdpFlow
    from probe.resolve import HostResolver

TestKeys = dict[str, Any]

# --- the contract -------------------------------------------------------------------

Validator = Callable[[Any], str | None]  # returns an error message or None


def is_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def is_hostname(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    return None if valid_hostname(v) else f"{v!r} is not a valid host name"


def one_of(*choices: str) -> Validator:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"

    return check


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What an ``[[endpoints]]`` table of one check must and may contain."""

    hosts: str = "required"  # required | optional | forbidden
    ports: str = "required"
    urls: str = "forbidden"
    options: dict[str, Validator] = field(default_factory=dict)
    doc: str = ""


class CheckModule(Protocol):
    NAME: str
    VERSION: str
    SPEC: CheckSpec

    async def run(self, endpoint: Endpoint, ctx: CheckContext) -> TestKeys: ...

    def methods(self, test_keys: TestKeys) -> list[str]: ...


@dataclass(slots=True)
class CheckContext:
    """What a check may use: the run's options, the network, the shared resolver, its
    deadline (``loop.time()`` by which it must have finished), ``shared``: state every
    check of one run shares (the reflector's cookie, :mod:`probe.checks._reflector`) and,
    in the confirmation pass, the endpoint's main-pass test keys."""

    cfg: RunConfig
    net: Network
    resolver: HostResolver
    deadline: float
    extra: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    # In the confirmation pass: the test keys this endpoint got in the main pass, whose
    # own probes may have triggered what this pass meets (residual blocking).
    main_pass: TestKeys | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


# --- shared first steps -------------------------------------------------------------

# How a failure shows blocking (DESIGN.md methods), by the layer that failed.
LAYER_METHODS: dict[str, dict[str, str]] = {
    "dns": {
        failures.DNS_NXDOMAIN: "dns_nxdomain",
        failures.DNS_SERVFAIL: "dns_servfail",
        failures.GENERIC_TIMEOUT: "dns_timeout",
        failures.DNS_BOGON: "dns_bogon",
        failures.DNS_INJECTED: "dns_injection",
        # A forged (non-bogon) answer the control resolver contradicts. The vocabulary has
        # no separate method for a lying resolver; like injection, the answer was forged.
        failures.DNS_UNEXPECTED_NETWORK: "dns_injection",
    },
    "tcp": {
        failures.CONNECTION_RESET: "tcp_reset",
        failures.GENERIC_TIMEOUT: "tcp_timeout",
        failures.CONNECTION_REFUSED: "tcp_refused",
    },
}
DNS_METHODS = LAYER_METHODS["dns"]


def layer_methods(layer: str, failure: str | None) -> list[str]:
    """The method a failure string shows at ``layer`` (dns, tcp), if any."""
    method = LAYER_METHODS[layer].get(failure or "")
    return [method] if method else []


def dns_methods(failure: str | None) -> list[str]:
    """Methods for a DNS failure string (the dns check, and checks that resolve first)."""
    return layer_methods("dns", failure)


def settled_methods(test_keys: TestKeys) -> list[str] | None:
    """The methods every check that resolves its host shares: none for a success, the DNS
    methods for a failure to resolve; None when the check's own rules must decide."""
    if test_keys.get("failure") is None:
        return []
    if test_keys.get("failed_operation") == "resolve":
        return dns_methods(test_keys.get("failure"))
    return None


async def resolve_first(ctx: CheckContext, host: str, keys: TestKeys) -> list[str] | None:
    """The host's addresses, IPv4 first; or None, with the lookup's failure recorded in
    ``keys`` (``failed_operation = "resolve"``)."""
    resolved = await ctx.resolver.resolve(host, ctx.deadline)
    if resolved.failure is not None or not resolved.addresses:
        keys["failure"] = resolved.failure or failures.DNS_NO_ANSWER
        keys["failed_operation"] = "resolve"
        return None
    return ipv4_first(resolved.addresses)


def host_and_port(endpoint: Endpoint) -> tuple[str, int]:
    """The endpoint's host and port, or ValueError naming the target (bad input)."""
    host, port = endpoint.target_host, endpoint.port
    if host is None or port is None:
        raise ValueError(f"{endpoint.source}: {endpoint.check} endpoint needs a host and a port")
    return host, port


def port_of(endpoint: Endpoint) -> int:
    """The endpoint's port, or ValueError naming the target (bad input)."""
    if endpoint.port is None:
        raise ValueError(f"{endpoint.source}: {endpoint.check} endpoint needs a port")
    return endpoint.port


async def open_udp(ctx: CheckContext, ip: str, port: int) -> tuple[UdpFlow | None, str | None]:
    """A fresh UDP flow to ``ip``:``port``, or (None, the failure string) when it cannot be
    opened: network failures are data, never exceptions."""
    try:
        return await ctx.net.udp_open(ip, port), None
    except Exception as exc:
        return None, udp_failure(exc)


def udp_failure(exc: BaseException) -> str:
    """An exception from a UDP flow as a failure string (ICMP port unreachable is
    reported by the kernel as ECONNREFUSED on a connected UDP socket)."""
    if isinstance(exc, ConnectionRefusedError):
        return failures.PORT_UNREACHABLE
    return failures.classify(exc)
