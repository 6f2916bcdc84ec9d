"""TLS handshakes as the tls and https checks make them: the real and a decoy SNI to
the same address, in random order (OONI ``sni_blocking``, ts-024), and how a pair of them
is judged. The rules are those of :mod:`probe.checks.tls`."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, TestKeys, settled_methods
from probe.checks._tcp import connect_methods

DEFAULT_DECOY_SNI = "example.com"
MAX_GAP_S = 0.2  # random pause between the two handshakes (stateful filters)
MIN_RETRY_S = 0.3  # budget left below which a failed real handshake is not tried again

# Failures of the real handshake that say "the certificate", not "the name was filtered".
_CERT_FAILURES = {failures.SSL_INVALID_HOSTNAME, failures.SSL_UNKNOWN_AUTHORITY,
                  failures.SSL_INVALID_CERTIFICATE}


def tls_methods(test_keys: TestKeys) -> list[str]:
    """Methods of a tls measurement (and of an https one failed at DNS, TCP or TLS)."""
    settled = settled_methods(test_keys)
    if settled is not None:
        return settled
    if test_keys.get("failed_operation") == "connect":
        return connect_methods(test_keys["failure"])
    return ["tls_sni"] if test_keys.get("sni_blocked") else ["tls_failure"]


def only_the_name_failed(real: dict[str, Any], decoy: dict[str, Any]) -> bool:
    """The SNI signal of one address: the real handshake failed, not on its certificate,
    while the decoy's completed."""
    return real["failure"] is not None and real["failure"] not in _CERT_FAILURES \
        and decoy_completed(decoy["failure"])


def decoy_completed(failure: str | None) -> bool:
    """A decoy handshake completed: no failure, or only its name was not on the cert."""
    return failure is None or failure == failures.SSL_INVALID_HOSTNAME


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
