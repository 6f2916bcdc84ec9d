"""Data only: endpoints, plans, run configuration, measurements, verdicts. No I/O.

A *measurement* is one line of a results file: a plain JSON object following OONI's
base data format (df-000) where a field exists there, plus ``service``, ``function``,
``pass`` and ``schema_version``. ``test_keys`` always holds ``failure`` (``None`` on
success, otherwise an OONI df-007 failure string, see :mod:`probe.failures`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# Functions a service endpoint can serve; "control" marks neutral control targets and
# "dns" is derived by the runner from resolving every host of a service.
FUNCTIONS = ("messaging", "registration", "web", "calls", "control")
DERIVED_FUNCTIONS = ("dns",)
REPORTED_FUNCTIONS = ("dns", "messaging", "registration", "web", "calls")
STATUSES = ("ok", "impaired", "blocked", "inconclusive")
# Severity order used for "a service's status is its worst function". Inconclusive sits
# between ok and impaired: it must never hide a real finding, nor be shown as "ok".
SEVERITY = {"ok": 0, "inconclusive": 1, "impaired": 2, "blocked": 3}
METHODS = (
    "dns_nxdomain", "dns_servfail", "dns_timeout", "dns_injection", "dns_bogon",
    "tcp_reset", "tcp_timeout", "tcp_refused",
    "tls_sni", "tls_failure", "http_failure",
    "udp_blocked", "stun_dpi", "app_stun_dpi", "relay_unreachable", "throttled",
)
NETWORK_TYPES = ("mobile", "fixed", "wifi", "unknown")

# The reflector's defaults (DESIGN.md "Reflector"); here so that the command line can show
# them without importing the reflector itself (asyncio, the STUN codec).
REFLECTOR_DEFAULT_PORTS = "443,3478-3481,19302-19309,4244,5242,5243,7985,7987"
REFLECTOR_DEFAULT_RATE = 1000.0  # datagrams per second per source: a probe runs several
REFLECTOR_DEFAULT_BURST = 2000.0  # call-like streams (50 per second each) at once, and more

Pool = Literal["any", "all"]
Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One thing to check: a (host, port) or a URL, with the check that tests it."""

    service: str
    function: str
    check: str
    host: str | None = None
    port: int | None = None
    url: str | None = None
    pool: Pool = "any"
    expected_networks: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # "file:line" of the [[endpoints]] table, for messages

    @property
    def input(self) -> str:
        """The OONI-style ``input`` string that names this endpoint in results."""
        if self.url is not None:
            return self.url
        if self.port is None:
            return f"{self.check}://{self.host}"
        if self.host is None:  # call-path checks without hosts go to --reflector
            return f"{self.check}://reflector:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.check}://{host}:{self.port}"

    @property
    def target_host(self) -> str | None:
        """The host name to resolve (the URL's host for https endpoints)."""
        if self.host is not None:
            return self.host
        if self.url is not None:
            from urllib.parse import urlsplit

            return urlsplit(self.url).hostname
        return None


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    name: str
    endpoints: tuple[Endpoint, ...]
    source: str = ""

    @property
    def is_control(self) -> bool:
        return bool(self.endpoints) and all(e.function == "control" for e in self.endpoints)


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated set of services to measure."""

    services: tuple[Service, ...]

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for s in self.services for e in s.endpoints)

    def service(self, service_id: str) -> Service:
        for s in self.services:
            if s.id == service_id:
                return s
        raise KeyError(service_id)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Options of one run (``voip-probe run``) that checks may read."""

    timeout_s: float = 10.0
    resolver: str | None = None  # IP of the resolver to use; None = the system's
    doh_url: str | None = None  # control resolver (DNS over HTTPS)
    reflector: str | None = None  # cooperating echo/STUN server (host or IP)
    # Where the reflector came from ("option", "config", "collector"), and why there is
    # none when the collector was asked (probe.reflector_choice).
    reflector_source: str | None = None
    reflector_note: str | None = None
    ca_bundle: str | None = None
    concurrency: int = 256
    include_ip: bool = False
    network_type: str = "unknown"
    confirm_failures: bool = True
    # Identity (probe.identity): STUN servers (HOST[:PORT]) telling the public address
    # (empty: those of configs/identity.toml), a local IP-to-ASN table, another config.
    stun_servers: tuple[str, ...] = ()
    asn_db: str | None = None
    identity_config: str | None = None
    stream_seconds: float = 3.0
    # A random pseudonym per network in the results (probe.pseudonym), so a collector
    # can tell independent probes apart; False: none (the runs count as anonymous).
    pseudonym: bool = True


@dataclass(slots=True)
class Identity:
    """Who the probe is on the network. ``ip`` serves scrubbing and is never written
    unless ``--include-ip``."""

    asn: str = "AS0"
    cc: str = "ZZ"
    network_name: str | None = None
    ip: str | None = None
    source: str = "unknown"
    note: str | None = None  # why something could not be learnt (never holds the IP)


@dataclass(slots=True)
class FunctionVerdict:
    status: str
    reachable: int
    total: int
    methods: list[str] = field(default_factory=list)
    # For calls with a TCP/TLS relay fallback: the verdicts of the two paths, "udp" (the
    # call path the apps prefer) and "fallback" (relays over TCP/TLS 443), each as JSON.
    paths: dict[str, Record] | None = None

    def to_json(self) -> Record:
        out: Record = {"status": self.status, "reachable": self.reachable,
                       "total": self.total, "methods": list(self.methods)}
        if self.paths is not None:
            out["paths"] = {k: dict(v) for k, v in self.paths.items()}
        return out


@dataclass(slots=True)
class ServiceVerdict:
    status: str
    functions: dict[str, FunctionVerdict]

    def to_json(self) -> Record:
        return {"status": self.status,
                "functions": {k: v.to_json() for k, v in self.functions.items()}}
