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

from probe.checks._base import (
    CheckContext,
    CheckSpec,
    TestKeys,
    host_and_port,
    is_hostname,
    resolve_first,
)
from probe.checks._tcp import connect
from probe.checks._tls import DEFAULT_DECOY_SNI, judge, sni_pair, tls_methods
from probe.model import Endpoint

NAME = "tls"
VERSION = "0.1.0"
SPEC = CheckSpec(options={"sni": is_hostname, "decoy_sni": is_hostname},
                 doc="TLS handshakes with the real SNI and a decoy SNI (decoy_sni, "
                     "default example.com) to the same address: tls_sni when only the "
                     "real one fails")
MAX_ADDRESSES = 4


def methods(test_keys: TestKeys) -> list[str]:
    return tls_methods(test_keys)


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    host, port = host_and_port(endpoint)
    sni = str(endpoint.options.get("sni") or host)
    decoy = str(endpoint.options.get("decoy_sni") or DEFAULT_DECOY_SNI)
    keys: TestKeys = {"failure": None, "failed_operation": None, "sni": sni,
                      "decoy_sni": decoy, "tls_handshakes": [], "tcp_connect": []}
    resolved = await resolve_first(ctx, host, keys)
    if resolved is None:
        return keys
    addresses = resolved[:MAX_ADDRESSES]
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
