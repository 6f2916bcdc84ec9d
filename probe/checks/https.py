"""HTTPS check: fetch a service's registration or web URL with httpx, through the seam.

The host is resolved by the run's shared resolver (so DNS tampering shows as DNS), then
the request goes to the resolved address with the real name in the SNI and the Host
header (httpx's ``sni_hostname`` extension), certificates verified (system roots plus
``--ca-bundle``), redirects not followed. Any HTTP response means the endpoint works:
its status code, a few headers and the body's size are recorded, never judged (OONI's
rule: status codes and page content are no proof of blocking).

When no address answered, the failure is placed at its layer by asking again, one layer
at a time, on the first address: a TCP connect (``tcp_*`` methods), then the TLS
handshakes of the tls check (:mod:`probe.checks._tls`: real and decoy SNI,
``tls_sni`` or ``tls_failure``); if both work, the HTTP exchange itself failed (``http_failure``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from probe import failures
from probe.checks._base import CheckContext, CheckSpec, TestKeys, resolve_first
from probe.checks._tcp import connect
from probe.checks._tls import DEFAULT_DECOY_SNI, judge, sni_pair, tls_methods
from probe.model import Endpoint

NAME = "https"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden", ports="forbidden", urls="required",
                 doc="GET each URL (status recorded, never judged); a failure is "
                     "placed at its layer: dns, tcp, tls (real vs decoy SNI) or http")
MAX_ADDRESSES = 2
MAX_BODY_BYTES = 64 * 1024
KEPT_HEADERS = ("server", "location", "content-type", "content-length")


def methods(test_keys: TestKeys) -> list[str]:
    """Failures at DNS, TCP or TLS read as the tls check's; anything later is HTTP's."""
    if test_keys.get("failure") is not None and \
            test_keys.get("failed_operation") not in ("resolve", "connect", "tls_handshake"):
        return ["http_failure"]
    return tls_methods(test_keys)


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    if endpoint.url is None:
        raise ValueError(f"{endpoint.source}: https endpoint without a URL")
    parts = urlsplit(endpoint.url)
    host = parts.hostname
    if host is None or parts.scheme not in ("http", "https"):
        raise ValueError(f"{endpoint.source}: {endpoint.url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    keys: TestKeys = {"failure": None, "failed_operation": None, "requests": [],
                      "status_code": None}
    resolved = await resolve_first(ctx, host, keys)
    if resolved is None:
        return keys
    addresses = resolved[:MAX_ADDRESSES]
    for index, ip in enumerate(addresses):
        share = ctx.remaining() / (len(addresses) - index + 1)  # keep some for diagnosis
        request = await fetch(ctx, endpoint.url, host, ip, port, share)
        keys["requests"].append(request)
        if request["failure"] is None:
            keys["status_code"] = request["status_code"]
            return keys
    await diagnose(ctx, keys, parts.scheme, host, addresses[0], port)
    return keys


async def fetch(ctx: CheckContext, url: str, host: str, ip: str, port: int,
                timeout_s: float) -> dict[str, Any]:
    """One GET of ``url`` sent to ``ip``; a df-001-like request record."""
    import httpx

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    target = httpx.URL(url).copy_with(host=ip)
    default_port = 443 if target.scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    entry: dict[str, Any] = {"ip": ip, "port": port, "url": url, "method": "GET",
                             "failure": None, "status_code": None}
    try:
        async with ctx.net.http_client(timeout_s=max(timeout_s, 0.01),
                                       ca_bundle=ctx.cfg.ca_bundle) as client:
            req = client.build_request("GET", target, headers={"host": host_header},
                                       extensions={"sni_hostname": host})
            response = await client.send(req, stream=True)
            try:
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size >= MAX_BODY_BYTES:
                        break
            finally:
                await response.aclose()
        entry["status_code"] = response.status_code
        entry["http_version"] = response.http_version
        entry["headers"] = {k: response.headers[k] for k in KEPT_HEADERS
                            if k in response.headers}
        if "location" in entry["headers"]:
            entry["headers"]["location"] = redirect_target(entry["headers"]["location"])
        entry["body_length"] = size
        entry["body_is_truncated"] = size >= MAX_BODY_BYTES
    except Exception as exc:  # network failures are data
        entry["failure"] = failures.classify(exc)
    entry["t"] = round(loop.time() - t0, 4)
    return entry


def redirect_target(location: str) -> str:
    """Where a redirect points, without what may name the volunteer: block pages and
    captive portals put the subscriber's address, number or account in the query
    (``?ip=...&msisdn=...``) or the user part. Scheme, host and path are kept (the
    evidence of which block page); a query, fragment or user part reads ``[removed]``."""
    try:
        parts = urlsplit(location)
        host, port = parts.hostname, parts.port
    except ValueError:  # not a URL one can take apart: keep what precedes any query
        return location.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    if not (parts.query or parts.fragment or parts.username or parts.password):
        return location
    netloc = host or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.username or parts.password:
        netloc = f"[removed]@{netloc}"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path,
                       "[removed]" if parts.query else "",
                       "[removed]" if parts.fragment else ""))


async def diagnose(ctx: CheckContext, keys: TestKeys, scheme: str, host: str, ip: str,
                   port: int) -> None:
    """Which layer failed: TCP, TLS (real vs decoy SNI) or HTTP itself."""
    http_failure = keys["requests"][0]["failure"] if keys["requests"] else failures.UNKNOWN
    attempt = await connect(ctx, ip, port)
    keys["tcp_connect"] = [attempt]
    if attempt["status"]["failure"] is not None:
        keys["failure"] = attempt["status"]["failure"]
        keys["failed_operation"] = "connect"
        return
    if scheme == "https":
        pair = await sni_pair(ctx, ip, port, host, DEFAULT_DECOY_SNI)
        keys["tls_handshakes"] = pair
        tls_keys: TestKeys = {}
        judge(tls_keys, [pair])
        if tls_keys.get("failed_operation") == "tls_handshake":
            keys["failure"] = tls_keys["failure"]
            keys["failed_operation"] = "tls_handshake"
            keys["sni_blocked"] = tls_keys["sni_blocked"]
            return
    keys["failure"] = http_failure
    keys["failed_operation"] = "http_round_trip"
