"""TLS check: a handshake with the real SNI and one with a decoy SNI, to the same address.

OONI's ``sni_blocking`` (ts-024) idea, aimed at the service's own servers: for each
resolved address (IPv4 first, at most :data:`MAX_ADDRESSES`), two handshakes in random
order, each within half of what is left of the budget so that a blackholed first one
cannot starve the second. Certificates are verified (system roots plus ``--ca-bundle``);
a completed handshake with the right name is enough, nothing is pinned.

* The real handshake completes on some address: the endpoint works.
* It fails while the decoy's completes on the same address: the real name is tried once
  more, and if it fails again, ``tls_sni`` (SNI filtering). A server that was only slow
  for a moment completes the second time and the endpoint works: one stalled handshake
  next to a completed decoy is not proof of a filter.
  The decoy name is not on the server's certificate, so its ``ssl_invalid_hostname`` means
  "handshake completed" (as in ts-024). A real-SNI failure that is a certificate problem
  (``ssl_*`` verification errors) is ``tls_failure``, never ``tls_sni``: a wrong
  certificate is not a filter on the name.
* Both fail: a plain TCP connect tells the layer: if it fails too, the TCP method
  (``tcp_reset``, ``tcp_timeout``, ``tcp_refused``); else ``tls_failure``.

Options: ``sni`` (send this name instead of the host's), ``decoy_sni`` (default
``example.com``, a reserved name nobody filters).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.checks.dns import dns_methods
from probe.checks.tcp import connect, connect_methods
from probe.model import Endpoint

if TYPE_CHECKING:
    from probe.checks import CheckContext, TestKeys

NAME = "tls"
DEFAULT_DECOY_SNI = "example.com"
MAX_ADDRESSES = 4
MAX_GAP_S = 0.2  # random pause between the two handshakes (stateful filters)
MIN_RETRY_S = 0.3  # budget left below which a failed real handshake is not tried again

# Failures of the real handshake that say "the certificate", not "the name was filtered".
_CERT_FAILURES = {failures.SSL_INVALID_HOSTNAME, failures.SSL_UNKNOWN_AUTHORITY,
                  failures.SSL_INVALID_CERTIFICATE}


def methods(test_keys: TestKeys) -> list[str]:
    failure = test_keys.get("failure")
    if failure is None:
        return []
    operation = test_keys.get("failed_operation")
    if operation == "resolve":
        return dns_methods(failure)
    if operation == "connect":
        return connect_methods(failure)
    return ["tls_sni"] if test_keys.get("sni_blocked") else ["tls_failure"]


def only_the_name_failed(real: dict[str, Any], decoy: dict[str, Any]) -> bool:
    """The SNI signal of one address: the real handshake failed, not on its certificate,
    while the decoy's completed."""
    return real["failure"] is not None and real["failure"] not in _CERT_FAILURES \
        and decoy_completed(decoy["failure"])


def decoy_completed(failure: str | None) -> bool:
    """A decoy handshake completed: no failure, or only its name was not on the cert."""
    return failure is None or failure == failures.SSL_INVALID_HOSTNAME


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host, port = endpoint.target_host, endpoint.port
    if host is None or port is None:
        raise ValueError(f"{endpoint.source}: tls endpoint needs a host and a port")
    sni = str(endpoint.options.get("sni") or host)
    decoy = str(endpoint.options.get("decoy_sni") or DEFAULT_DECOY_SNI)
    keys: TestKeys = {"failure": None, "failed_operation": None, "sni": sni,
                      "decoy_sni": decoy, "tls_handshakes": [], "tcp_connect": []}
    resolved = await ctx.resolver.resolve(host, ctx.deadline)
    if resolved.failure is not None or not resolved.addresses:
        keys["failure"] = resolved.failure or failures.DNS_NO_ANSWER
        keys["failed_operation"] = "resolve"
        return keys
    addresses = pick_addresses(resolved.addresses)
    pairs = await asyncio.gather(*(sni_pair(ctx, ip, port, sni, decoy) for ip in addresses))
    keys["tls_handshakes"] = [h for pair in pairs for h in pair]
    judge(keys, pairs)
    if keys["failure"] is not None and not keys["sni_blocked"]:
        # Both names failed everywhere: is TCP itself blocked?
        attempt = await connect(ctx, addresses[0], port)
        keys["tcp_connect"] = [attempt]
        if attempt["status"]["failure"] is not None:
            keys["failure"] = attempt["status"]["failure"]
            keys["failed_operation"] = "connect"
    return keys


def pick_addresses(addresses: list[str]) -> list[str]:
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    return (v4 + v6)[:MAX_ADDRESSES]


def judge(keys: TestKeys, pairs: list[list[dict[str, Any]]]) -> None:
    """Set ``failure``, ``failed_operation`` and ``sni_blocked`` from the handshakes."""
    keys["sni_blocked"] = False
    if any(h["role"] == "target" and h["failure"] is None for pair in pairs for h in pair):
        return
    # The last real handshake of each pair (the retry, when there was one).
    reals = [[h for h in pair if h["role"] == "target"][-1] for pair in pairs]
    keys["failed_operation"] = "tls_handshake"
    for pair, real in zip(pairs, reals, strict=True):
        decoy = next(h for h in pair if h["role"] == "decoy")
        if only_the_name_failed(real, decoy):
            keys["failure"] = real["failure"]
            keys["sni_blocked"] = True
            return
    v4 = [r for r in reals if ":" not in r["ip"]]
    keys["failure"] = (v4 or reals)[0]["failure"]


async def sni_pair(ctx: CheckContext, ip: str, port: int, sni: str,
                   decoy: str) -> list[dict[str, Any]]:
    """The real and the decoy handshake to one address, in random order.

    When only the real name failed, it is tried once more (the decoy's success shows the
    path works now): a server or path that was only slow for a moment then completes, and
    the pair says "works"; a filter on the name fails it again. Both real handshakes are
    recorded (role ``target``, ``order`` 0..2)."""
    order = [("target", sni), ("decoy", decoy)]
    random.shuffle(order)
    out = []
    for index, (role, name) in enumerate(order):
        if index:
            await asyncio.sleep(min(random.uniform(0, MAX_GAP_S), ctx.remaining() / 4))
        # Half of what is left for the first, and for a real second (room for its retry).
        share = ctx.remaining() / 2 if index == 0 or role == "target" else ctx.remaining()
        out.append(await handshake(ctx, ip, port, name, role, share, index))
    real = next(h for h in out if h["role"] == "target")
    decoy_entry = next(h for h in out if h["role"] == "decoy")
    if only_the_name_failed(real, decoy_entry) and ctx.remaining() >= MIN_RETRY_S:
        out.append(await handshake(ctx, ip, port, sni, "target", ctx.remaining(), len(out)))
    return out


async def handshake(ctx: CheckContext, ip: str, port: int, sni: str, role: str,
                    timeout_s: float, order: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    entry: dict[str, Any] = {"ip": ip, "port": port, "sni": sni, "role": role,
                             "order": order, "failure": None}
    try:
        info = await ctx.net.tls_handshake(ip, port, sni, timeout_s,
                                           ca_bundle=ctx.cfg.ca_bundle)
    except Exception as exc:  # network failures are data
        entry["failure"] = failures.classify(exc)
    else:
        entry.update({"tls_version": info.version, "cipher_suite": info.cipher,
                      "peer_subject": info.peer_subject, "alpn": info.alpn})
    entry["t"] = round(loop.time() - t0, 4)
    return entry
