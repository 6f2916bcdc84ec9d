"""turn_tls check: a TURN Allocate without credentials to a service's relay inside TLS,
the fallback the call apps take when UDP is blocked and only TLS leaves on 443.

The handshake sends the relay's name as SNI (``sni`` to change it) and is not verified:
what is measured is whether the relay answers TURN inside the session (a 401 with REALM
and NONCE), not its certificate, which relays do not publish. Framing (RFC 8656 12.5),
exchange and outcomes: :mod:`probe.checks._turn_stream`. Its measurements carry
``"fallback": true``: the calls verdict counts them as the fallback path.
"""

from __future__ import annotations

from probe import stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, is_hostname, one_of
from probe.checks._turn_stream import run_stream, stream_methods
from probe.model import Endpoint

NAME = "turn_tls"
VERSION = "0.1.0"
SPEC = CheckSpec(options={"flavor": one_of(*stun.OPTIONAL_FLAVORS), "sni": is_hostname},
                 doc="TURN Allocate without credentials inside TLS (RFC 8656 12.5 "
                     "framing): a 401 with REALM and NONCE proves the relay's TLS "
                     "fallback; sni = NAME (default: the host); flavor = \"teams\"")

methods = stream_methods


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_stream(endpoint, ctx, "tls")
