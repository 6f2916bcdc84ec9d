"""Calls and the apps' relay fallback, in the censorship lab, five runs per case: the real
probe (shipped targets, the lab's coturn relays over UDP, TCP and TLS) against real packet
filtering on the censor.

- clean: every service's calls ``ok``;
- UDP call ports dropped (``calls-udp-blocked``): Skype/Teams, whose relay also takes TURN
  over TCP and TLS on 443, is ``impaired`` with the method of the UDP block; the services
  with no named fallback are ``blocked``;
- UDP call ports and TCP 443 to the relay dropped (``calls-udp-and-relay-blocked``): every
  service's calls ``blocked``, Skype/Teams with the methods of both paths.

Three runs of each case use the lab's reflector (methods asserted exactly); two are plain
runs, as a volunteer makes them without a reflector: every service still gets a calls
verdict, and the summary says in one line what the missing reflector left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, run_probe
from probe.lab.scenarios import SCENARIO_DIR, load_scenario
from tests.helpers.lab_results import failed_calls

pytestmark = pytest.mark.lab
SERVICES = ("whatsapp", "skype", "viber", "duo")
RUNS = 5
WITH_REFLECTOR = 3  # the first three runs; the last two are plain runs
BUDGET_S = 4.0  # per check, as the scenario matrix

Verdict = tuple[str, list[str]]
# case -> service -> (verdict with the reflector, verdict of a plain run)
Expect = dict[str, tuple[Verdict, Verdict]]


def same(status: str, methods: list[str], plain_methods: list[str] | None = None,
         ) -> tuple[Verdict, Verdict]:
    return (status, methods), (status, plain_methods if plain_methods is not None else [])


CASES: list[tuple[str, str, Expect]] = [
    ("clean", "clean", {s: same("ok", []) for s in SERVICES}),
    ("udp-only", "calls-udp-blocked", {
        "skype": same("impaired", ["udp_blocked"]),
        "whatsapp": same("blocked", ["udp_blocked"]),
        "duo": same("blocked", ["udp_blocked"]),
        # A plain run has only Viber's neutral STUN server, on UDP 443 and 3478: the rule
        # spares 443, so the path partly works (the reflector's checks show the block).
        "viber": (("blocked", ["udp_blocked"]), ("impaired", [])),
    }),
    ("udp-and-relay", "calls-udp-and-relay-blocked", {
        "skype": same("blocked", ["tcp_timeout", "udp_blocked"], ["tcp_timeout"]),
        "whatsapp": same("blocked", ["udp_blocked"]),
        "duo": same("blocked", ["udp_blocked"]),
        "viber": (("blocked", ["udp_blocked"]), ("impaired", [])),
    }),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        assert lab.reflector == A.REFLECTOR, "the lab must run voip-probe reflector"
        yield lab


def calls_line(summary: dict[str, Any]) -> list[str]:
    return [n for n in summary.get("notes", []) if n.startswith("skype calls:")]


@pytest.mark.parametrize(("case", "scenario_name", "expect"), CASES,
                         ids=[c[0] for c in CASES])
def test_calls_over_five_runs(lab: Lab, tmp_path: Path, case: str, scenario_name: str,
                              expect: Expect) -> None:
    apply_scenario(lab, load_scenario(SCENARIO_DIR / f"{scenario_name}.toml"))
    for run in range(RUNS):
        reflector = run < WITH_REFLECTOR
        outcome = run_probe(lab, tmp_path / str(run), "mobile", BUDGET_S, reflector=reflector)
        summary = outcome.summary
        assert summary is not None, outcome.stderr[-3000:]
        assert summary["network"]["status"] == "online"
        got, want = {}, {}
        for service in SERVICES:
            functions = summary["services"][service]["functions"]
            assert functions["messaging"]["status"] == "ok", (service, functions["messaging"])
            got[service] = (functions["calls"]["status"], functions["calls"]["methods"])
            want[service] = expect[service][0 if reflector else 1]
        assert got == want, (f"run {run} ({'reflector' if reflector else 'plain'}): {got}\n"
                             + "\n".join(failed_calls(summary)))
        # the summary says which calls path works, in one line
        line = calls_line(summary)
        if case == "udp-only":
            assert len(line) == 1 and "relay fallback over TCP/TLS 443 works" in line[0]
        elif case == "udp-and-relay":
            assert len(line) == 1 and "calls cannot connect" in line[0], line
        else:
            assert line == []
        left_out = [n for n in summary["notes"] if n.startswith("no reflector:")]
        assert len(left_out) == (0 if reflector else 1), summary["notes"]
