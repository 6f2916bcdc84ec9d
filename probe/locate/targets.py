"""Which endpoints ``locate`` probes, and the ``run --deep`` step that locates them.

After a scan, every endpoint that failed in its last pass (controls excluded), in a
function the verdicts call blocked or impaired, becomes a :class:`~probe.locate.Target`:
DNS failures are located at the resolver (test name vs control name), STUN/TURN/UDP
endpoints with STUN vs random bytes, TLS/HTTPS endpoints with the real vs a decoy SNI,
TCP endpoints with a SYN vs a traceroute datagram. UDP endpoints on a service's own server
get the reflector (``--reflector``) as the control's fallback destination on the same port
(:attr:`~probe.locate.core.Target.control_address`). Addresses come from the run's own DNS
measurements, so locate probes exactly what the scan probed. ``--endpoint`` names targets
by hand instead (``dns://NAME``, ``stun://HOST:PORT``, ``tcp://HOST:PORT``,
``tls://HOST:PORT``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from probe import failures
from probe.locate.core import (
    DEFAULT_CONTROL_NAME,
    DEFAULT_DECOY_SNI,
    TEST_NAME,
    Finding,
    Log,
    Settings,
    Target,
    finding_record,
    locate,
)
from probe.model import Endpoint, Plan, Record, RunConfig

_UDP_CHECKS = {"stun", "turn", "udp", "differential"}
_TLS_CHECKS = {"tls", "https"}
ENDPOINT_SCHEMES = {"dns": "dns", "stun": "udp", "udp": "udp", "tcp": "tcp", "tls": "tls"}


class EndpointError(ValueError):
    """A ``--endpoint`` value that cannot be used (message says why)."""


def _host_port(inp: str) -> tuple[str | None, int | None]:
    parts = urlsplit(inp)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None and parts.scheme in ("https", "tls"):
        port = 443
    return parts.hostname, port


def _kind_for(check: str, methods: list[str], failed_operation: str | None) -> str | None:
    if failed_operation == "resolve" or check == "dns" or any(m.startswith("dns_")
                                                               for m in methods):
        return "dns"
    if check in _UDP_CHECKS:
        return "udp"
    if check in _TLS_CHECKS:
        return "tls"
    if check == "tcp":
        return "tcp"
    return None


def host_addresses(records: Iterable[Record]) -> dict[str, list[str]]:
    """Host name -> IPv4 addresses, from the run's DNS measurements."""
    out: dict[str, list[str]] = {}
    for rec in records:
        tk = rec.get("test_keys") or {}
        if rec.get("test_name") == "dns" and tk.get("hostname"):
            v4 = [a for a in tk.get("addresses") or [] if ":" not in a]
            if v4:
                out.setdefault(str(tk["hostname"]).lower(), v4)
    return out


def control_name(plan: Plan | None) -> str:
    """A name for the DNS control query: a host of the plan's control targets."""
    if plan is not None:
        for svc in plan.services:
            if svc.is_control:
                for ep in svc.endpoints:
                    if ep.target_host:
                        return ep.target_host
    return DEFAULT_CONTROL_NAME


def blocked_targets(records: Sequence[Record], plan: Plan | None,
                    resolver: tuple[str, int] | None,
                    reflector: str | None = None) -> list[Target]:
    """One target per endpoint that failed in its last pass (controls excluded), for the
    functions the verdicts call blocked or impaired. Call-path checks without hosts
    (input ``udp://reflector:PORT``) are probed at ``reflector``'s address."""
    from probe.checks import methods_for
    from probe.hostnames import is_ip_literal
    from probe.verdicts import summarize

    verdicts = summarize(records)["services"]
    addresses = host_addresses(records)
    ctl = control_name(plan)
    last: dict[tuple[str, str, str, str], Record] = {}
    ok: set[tuple[str, str, str, str]] = set()
    for rec in records:
        tk = rec.get("test_keys")
        if rec.get("record") or rec.get("test_name") == TEST_NAME or not isinstance(tk, dict):
            continue
        if tk.get("check_error") or tk.get("failure") == failures.NOT_APPLICABLE:
            continue
        key = (str(rec.get("service")), str(rec.get("function")), str(rec.get("test_name")),
               str(rec.get("input")))
        if tk.get("failure") is None:
            ok.add(key)
        else:
            last[key] = rec
    targets: list[Target] = []
    for key, rec in last.items():
        service, function, check, inp = key
        if key in ok or function == "control":
            continue
        status = verdicts.get(service, {}).get("functions", {}).get(function, {}).get("status")
        if status not in ("blocked", "impaired"):
            continue
        tk = rec["test_keys"]
        methods = methods_for(check, tk)
        kind = _kind_for(check, methods, tk.get("failed_operation"))
        host, port = _host_port(inp)
        if check == "dns":
            host = str(tk.get("hostname") or host or "")
        ep = _plan_endpoint(plan, key)
        options = dict(ep.options) if ep is not None else {}
        target = Target(service, function, inp, kind or "unknown", "", port or 0, host,
                        methods[0] if methods else None, options.get("flavor"), ctl,
                        DEFAULT_DECOY_SNI)
        if kind == "dns":
            if resolver is None:
                continue
            target.address, target.port = resolver
        elif host and is_ip_literal(host):
            target.address = host
        elif host == "reflector" and ep is not None and ep.host is None:
            target.address = reflector or ""
            target.at_reflector = True
        elif host and addresses.get(host.lower()):
            target.address = addresses[host.lower()][0]
        if kind == "udp" and reflector and target.address != reflector:
            target.control_address = reflector
        if kind == "tls":
            target.host = str(options.get("sni") or host or "")
        targets.append(target)
    return targets


def _plan_endpoint(plan: Plan | None, key: tuple[str, str, str, str]) -> Endpoint | None:
    if plan is None:
        return None
    for ep in plan.endpoints:
        if (ep.service, ep.function, ep.check, ep.input) == key:
            return ep
    return None


def resolver_address(cfg: RunConfig) -> tuple[str, int] | None:
    """The resolver the scan used (``--resolver`` or the system's first)."""
    from probe.net import RealNetwork
    from probe.resolve import HostResolver

    return HostResolver(RealNetwork(), cfg).server()


def reflector_address(cfg: RunConfig) -> str | None:
    """The IPv4 address of ``--reflector`` (resolved like the scan resolves names)."""
    if not cfg.reflector:
        return None
    v4 = _resolve_v4(cfg.reflector, cfg)
    return v4[0] if v4 else None


def _resolve_v4(host: str, cfg: RunConfig, plan: Plan | None = None) -> list[str]:
    from probe.net import RealNetwork
    from probe.resolve import HostResolver
    from probe.runner import host_networks

    async def lookup() -> list[str]:
        loop = asyncio.get_running_loop()
        # The plan's expected networks: an answer there is never a bogon.
        expected = host_networks(plan.endpoints) if plan is not None else None
        found = await HostResolver(RealNetwork(), cfg, expected=expected).resolve(
            host, loop.time() + cfg.timeout_s)
        # A host outside the plan has no expected networks: locate the path to what the
        # resolver answered, bogon or not.
        answered = found.addresses or found.test_keys.get("answered_addresses", [])
        return [a for a in answered if ":" not in a]

    return asyncio.run(lookup())


def endpoint_targets(values: Sequence[str], plan: Plan | None, cfg: RunConfig) -> list[Target]:
    """Targets named by hand with ``--endpoint``; host names are resolved like the scan
    does. Service and function come from the plan when it has that host."""
    from probe.hostnames import valid_hostname

    targets: list[Target] = []
    resolver = resolver_address(cfg)
    reflector = reflector_address(cfg)
    ctl = control_name(plan)
    for value in values:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ENDPOINT_SCHEMES:
            raise EndpointError(f"--endpoint {value!r}: use dns://NAME, stun://HOST:PORT, "
                                "udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
        host, port = _host_port(value)
        if not host or not valid_hostname(host):
            raise EndpointError(f"--endpoint {value!r}: no valid host name or address")
        kind = ENDPOINT_SCHEMES[scheme]
        service, function, flavor = _plan_lookup(plan, host, port, kind)
        target = Target(service, function, value, kind, "", port or 0, host, None, flavor,
                        ctl, DEFAULT_DECOY_SNI)
        if kind == "dns":
            if resolver is None:
                raise EndpointError("no DNS resolver: give --resolver IP")
            target.address, target.port = resolver
        else:
            if port is None:
                raise EndpointError(f"--endpoint {value!r}: a port is needed")
            v4 = _resolve_v4(host, cfg, plan)  # an IP literal resolves to itself
            target.address = v4[0] if v4 else ""
            if kind == "udp" and reflector and target.address != reflector:
                target.control_address = reflector
        targets.append(target)
    return targets


def _plan_lookup(plan: Plan | None, host: str, port: int | None,
                 kind: str) -> tuple[str, str, str | None]:
    if plan is not None:
        for ep in plan.endpoints:
            if ep.target_host and ep.target_host.lower() == host.lower() \
                    and (kind == "dns" or ep.port in (None, port)):
                function = "dns" if kind == "dns" else ep.function
                return ep.service, function, ep.options.get("flavor")
    return "unknown", "dns" if kind == "dns" else "unknown", None


def deep_step(plan: Plan, cfg: RunConfig, settings: Settings | None = None,
              log: Log | None = None) -> Callable[..., dict[str, Any] | None]:
    """The ``run --deep`` step for :func:`probe.session.run_session`: locate the blocked
    endpoints, write one ``locate`` record per finding, and add the findings to the
    summary (``"locate": {"findings": [...]}``)."""

    def step(records: list[Record], emit: Callable[[Record], None],
             info: Any) -> dict[str, Any] | None:
        targets = blocked_targets(records, plan, resolver_address(cfg),
                                  reflector_address(cfg))
        if not targets:
            return {"locate": {"findings": []}}
        if log:
            log(f"locate: {len(targets)} blocked endpoints, probing hop by hop")
        findings = locate(targets, settings, log)
        base = {**info.base(), "annotations": {**info.annotations,
                                               "network_type": info.network_type}}
        for finding in findings:
            emit(finding_record(base, finding))
        return {"locate": {"findings": [f.to_json() for f in findings]}}

    return step


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    """``voip-probe locate --json`` (DESIGN.md "Locate")."""
    return {"findings": [f.to_json() for f in findings]}
