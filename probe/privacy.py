"""Privacy scrubbing: the probe's own public address never reaches a file unasked.

STUN replies, identity lookups and error messages may carry the volunteer's public IP.
Everything the probe writes passes through :func:`scrub`, which replaces each
occurrence of a secret (in any string, at any depth) with ``[scrubbed]``, as OONI's
``ScrubMeasurement`` does. ``--include-ip`` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SCRUBBED = "[scrubbed]"


def scrub(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``obj`` with every secret replaced in strings and dictionary keys."""
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not found:
        return obj
    return _scrub(obj, found)


def _scrub(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        for s in secrets:
            if s in obj:
                obj = obj.replace(s, SCRUBBED)
        return obj
    if isinstance(obj, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub(v, secrets) for v in obj]
    return obj
