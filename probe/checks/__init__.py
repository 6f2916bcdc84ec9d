"""Checks: one module per check, all of the same shape (OONI's experiment shape).

A check module defines::

    NAME: str
    async def run(endpoint: Endpoint, ctx: CheckContext) -> dict   # the test_keys
    def methods(test_keys: dict) -> list[str]                      # blocking methods shown

``run`` raises only when the check cannot run at all (bad input: a bug or a bad
target); every network failure is data, recorded as ``test_keys["failure"]`` (always
present: ``None`` on success, a :mod:`probe.failures` string otherwise). ``methods``
is a pure function of stored test keys, so verdicts can be recomputed from a results
file; it may return methods for a success too (e.g. ``throttled``).

All I/O goes through ``ctx.net`` (:mod:`probe.net`). Modules are imported lazily
from :data:`CHECK_MODULES` so that the command line starts fast.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from probe.model import Endpoint, RunConfig

if TYPE_CHECKING:
    from probe.checks.dns import HostResolver
    from probe.net import Network

TestKeys = dict[str, Any]

# check name -> module. A new check registers here and in probe.targets.CHECK_SPECS.
CHECK_MODULES: dict[str, str] = {
    "dns": "probe.checks.dns",
    "tcp": "probe.checks.tcp",
    "tls": "probe.checks.tls",
    "https": "probe.checks.https",
    "stun": "probe.checks.stun",
    "turn": "probe.checks.turn",
    "udp": "probe.checks.udp",
    "differential": "probe.checks.differential",
    "stream": "probe.checks.stream",
    "quic": "probe.checks.quic",
}


class CheckModule(Protocol):
    NAME: str

    async def run(self, endpoint: Endpoint, ctx: CheckContext) -> TestKeys: ...

    def methods(self, test_keys: TestKeys) -> list[str]: ...


@dataclass(slots=True)
class CheckContext:
    """What a check may use: the run's options, the network, the shared resolver and
    its deadline (``loop.time()`` by which it must have finished)."""

    cfg: RunConfig
    net: Network
    resolver: HostResolver
    deadline: float
    extra: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


def get_check(name: str) -> CheckModule:
    try:
        module_name = CHECK_MODULES[name]
    except KeyError:
        raise KeyError(f"no check named {name!r}") from None
    module: CheckModule = importlib.import_module(module_name)
    return module


def methods_for(test_name: str, test_keys: TestKeys) -> list[str]:
    """Blocking methods a stored measurement shows (empty for unknown checks)."""
    if test_name not in CHECK_MODULES:
        return []
    return get_check(test_name).methods(test_keys)
