"""turn_tcp check: a TURN Allocate without credentials to a service's relay over TCP,
the fallback the call apps take when UDP is blocked (Teams: its Transport Relay on TCP
443, research/calls-endpoints.md).

A 401 with REALM and NONCE read back over the stream proves the relay answers TURN on
that path. Framing (RFC 8656 12.5), exchange and outcomes: :mod:`probe.checks._turn_stream`.
Its measurements carry ``"fallback": true``: the calls verdict counts them as the fallback
path, so a blocked UDP call path with a working fallback is ``impaired``, not ``blocked``
(DESIGN.md "Measurement rules learned from real DPI").
"""

from __future__ import annotations

from probe import stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, one_of
from probe.checks._turn_stream import run_stream, stream_methods
from probe.model import Endpoint

NAME = "turn_tcp"
VERSION = "0.1.0"
SPEC = CheckSpec(options={"flavor": one_of(*stun.OPTIONAL_FLAVORS)},
                 doc="TURN Allocate without credentials over TCP (RFC 8656 12.5 framing): "
                     "a 401 with REALM and NONCE proves the relay's TCP fallback; "
                     "flavor = \"teams\" adds Microsoft's STUN attributes")

methods = stream_methods


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_stream(endpoint, ctx, "tcp")
