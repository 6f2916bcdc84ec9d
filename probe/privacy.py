"""Privacy scrubbing: the probe's own public address never reaches a file unasked.

STUN replies, identity lookups and error messages may carry the volunteer's public IP.
Everything the probe writes passes through :func:`scrub`, which replaces each
occurrence of a secret (in any string, at any depth) with ``[scrubbed]``, as OONI's
``ScrubMeasurement`` does. ``--include-ip`` turns it off.

An address is found in every form it can be written in: as given, canonical (IPv6
compressed and exploded) and reversed as in DNS names (``4.3.2.1`` of
``4.3.2.1.origin.asn.cymru.com``, the nibbles of ``ip6.arpa``). It is matched as a whole
address: ``10.0.0.1`` is scrubbed in ``10.0.0.1:5000`` but leaves ``10.0.0.12`` alone
(another host's address is data, not a secret). Secrets that are not addresses are
replaced wherever they occur.

The secrets are every address the probe learns as its own, not only the first one found:
all that the identity lookup learnt (:attr:`probe.model.Identity.addresses`) and every
mapped address a STUN or TURN server reports during the run, which the checks hand to
:func:`learned_own_address` (a NAT may show several public addresses, IPv6 another one).
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

SCRUBBED = "[scrubbed]"

# A form of an address is whole when no digit (hex digit for IPv6) continues it, directly
# or after a dot (colon for IPv6): "1.2.3.4" is not inside "11.2.3.4" or "1.2.3.45".
_V4_WHOLE = r"(?<![0-9])(?<![0-9]\.)({})(?![0-9])(?!\.[0-9])"
# Hex forms match in either case (2001:DB8::1 is 2001:db8::1).
_HEX_DOTTED_WHOLE = r"(?<![0-9a-fA-F])(?<![0-9a-fA-F]\.)((?i:{}))(?![0-9a-fA-F])(?!\.[0-9a-fA-F])"
_V6_WHOLE = r"(?<![0-9a-fA-F])(?<![0-9a-fA-F]:)((?i:{}))(?![0-9a-fA-F])(?!:[0-9a-fA-F])"


# The probe's own addresses learnt during the current run (None outside a run).
_LEARNED: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "own_addresses", default=None)


@contextmanager
def collecting_own_addresses() -> Iterator[set[str]]:
    """The set that :func:`learned_own_address` fills within this block (a run): tasks
    started inside it share it."""
    learned: set[str] = set()
    token = _LEARNED.set(learned)
    try:
        yield learned
    finally:
        _LEARNED.reset(token)


def learned_own_address(*addresses: str | None) -> None:
    """Note addresses a server reported as the probe's own (to be scrubbed)."""
    learned = _LEARNED.get()
    if learned is not None:
        learned.update(a for a in addresses if a)


def address_forms(secret: str) -> dict[str, set[str]]:
    """The ways ``secret`` can be written, grouped by how a whole match is bounded."""
    try:
        ip = ipaddress.ip_address(secret.strip("[]"))
    except ValueError:
        return {"plain": {secret}}
    reverse = ip.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    if ip.version == 4:
        return {"v4": {secret, str(ip), reverse}}
    return {"v6": {secret.strip("[]"), ip.compressed, ip.exploded},
            "hex_dotted": {reverse}}


def scrub(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``obj`` with every secret replaced in strings and dictionary keys."""
    pattern = _pattern(tuple(sorted({s for s in secrets if s})))
    if pattern is None:
        return obj
    return _scrub(obj, pattern)


@functools.lru_cache(maxsize=16)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    groups: dict[str, set[str]] = {}
    for secret in secrets:
        for kind, forms in address_forms(secret).items():
            groups.setdefault(kind, set()).update(forms)
    if not groups:
        return None
    whole = {"v4": _V4_WHOLE, "hex_dotted": _HEX_DOTTED_WHOLE, "v6": _V6_WHOLE,
             "plain": "({})"}
    parts = []
    for kind, forms in groups.items():
        # Longest first, so that a form is never cut short by a shorter one it contains.
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        parts.append(whole[kind].format(alternatives))
    return re.compile("|".join(parts))


def _scrub(obj: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(obj, str):
        return pattern.sub(SCRUBBED, obj)
    if isinstance(obj, dict):
        return {_scrub(k, pattern): _scrub(v, pattern) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub(v, pattern) for v in obj]
    return obj
