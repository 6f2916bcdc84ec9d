"""UDP check: does an echo come back from the reflector on a call port?

Random bytes (RTP-sized, never STUN-looking, so that only the port is tested; carrying
the reflector's cookie token, :mod:`probe.checks._reflector`) are sent to the reflector
(``--reflector``) on the endpoint's port, a few times; at the same time the reflector's
port 443 is tried as the baseline. An ICMP port-unreachable from the
reflector means the path works and nothing listens there: never blocking (DESIGN.md
"Reflector"); from any other address (a router on the path: ``icmp_from``) it means the
network refused the datagrams: ``udp_blocked``. No echo on the port while the baseline
answers: ``udp_blocked``. Every datagram is the first of its own flow. Neither
answering: the reflector cannot be reached, and nothing is concluded (``not_applicable``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from probe import failures
from probe.checks._base import CheckContext, CheckSpec, TestKeys
from probe.checks._payloads import Payload, random_bytes
from probe.checks._reflector import BASELINE_PORT, ReflectorCookie, run_neutral
from probe.checks._trials import any_answered, rejected_on_path, trials
from probe.model import Endpoint

NAME = "udp"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden",
                 doc="echo from the reflector (--reflector) on each port; baseline: its "
                     "port 443")
PAYLOAD_LEN = 172  # an RTP packet of 20 ms of G.711/Opus-sized audio
REPEATS = 6


def outcome(test_keys: TestKeys) -> str:
    """ok | nothing_listens | udp_blocked | reflector_unreachable (from stored keys)."""
    same, base = test_keys.get("echo"), test_keys.get("baseline")
    if any_answered(same):
        return "ok"
    if rejected_on_path(same):
        return "udp_blocked"
    if (same or {}).get("icmp") == failures.PORT_UNREACHABLE:
        return "nothing_listens"
    if any_answered(base):
        return "udp_blocked"
    return "reflector_unreachable"


def methods(test_keys: TestKeys) -> list[str]:
    if test_keys.get("failure") in (None, failures.NOT_APPLICABLE):
        return []
    return ["udp_blocked"] if outcome(test_keys) == "udp_blocked" else []


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    return await run_neutral(endpoint, ctx, _measure)


async def _measure(ctx: CheckContext, port: int, ip: str, cookie: ReflectorCookie,
                   ) -> TestKeys:
    random_payload = cookie.stamped(
        {"random": lambda: Payload(random_bytes(PAYLOAD_LEN), None)})
    # Up to REPEATS datagrams (more if the budget allows), stopping at the first echo.
    jobs: list[Any] = [trials(ctx, ip, port, random_payload, REPEATS, ctx.deadline,
                              until_all_answered=True)]
    if port != BASELINE_PORT:
        jobs.append(trials(ctx, ip, BASELINE_PORT, random_payload, 4, ctx.deadline,
                           until_all_answered=True))
    results = await asyncio.gather(*jobs)
    keys: TestKeys = {"failure": None, "failed_operation": None, "reflector_port": port,
                      "echo": results[0], "baseline": results[-1]}
    result = outcome(keys)
    keys["outcome"] = result
    if rejected_on_path(results[0]):
        keys["icmp_from"] = results[0]["icmp_from"]
    if result == "udp_blocked":
        keys["failure"] = failures.GENERIC_TIMEOUT
        keys["failed_operation"] = "udp_echo"
    elif result == "reflector_unreachable":
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = "no echo from the reflector on this port nor on its port 443"
    return keys
