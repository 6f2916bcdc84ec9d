"""Calls judged against a real DPI engine, in the censorship lab: nDPI 5 inline on the censor
(``ndpi_block``, an NFQUEUE), the real probe (shipped targets, the lab's reflector), five runs
per scenario.

- ``calls-ndpi``: WhatsAppCall and ViberVoip flows dropped: those apps' calls ``blocked``
  with ``app_stun_dpi``, the call check's app call dropped while its control passes;
  Skype/Teams and Duo/Meet calls ``ok``; messaging ``ok`` everywhere;
- ``calls-ndpi-residual``: all four apps' calls dropped, then the server port for 60 s:
  every app's call check ``app_stun_dpi`` with ``residual_blocking: true`` (in the main
  pass or the confirmation), never ``udp_blocked``; Skype/Teams ``impaired`` (its relay
  fallback over TCP/TLS 443 works); every blocked app's method ``app_stun_dpi`` alone (no
  ``udp_blocked`` from a control, no ``throttled`` from a stream the block cut);
- ``calls-ndpi-passive``: a tap (the revealing packet passes): as ``calls-ndpi``.

Each run starts with the scenario applied afresh (a new nDPI process: a censor that has not
seen this client before), as a volunteer's run on a network would meet it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, compare, run_probe
from probe.lab.scenarios import SCENARIO_DIR, load_scenario

pytestmark = pytest.mark.lab
RUNS = 5
BUDGET_S = 4.0  # per check, as the scenario matrix
SERVICES = ("whatsapp", "skype", "viber", "duo")
# scenario -> the services whose calls nDPI drops, and whether residual blocking is on
CASES = {"calls-ndpi": ({"whatsapp", "viber"}, False),
         "calls-ndpi-residual": (set(SERVICES), True),
         "calls-ndpi-passive": ({"whatsapp", "viber"}, False)}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        assert lab.reflector == A.REFLECTOR, "the lab must run voip-probe reflector"
        yield lab


def call_measurements(summary: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(service, pass) -> the call check's test keys."""
    found = {}
    with open(summary["results_file"], encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("test_name") == "call":
                found[(rec["service"], rec["pass"])] = rec["test_keys"]
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_ndpi_calls_over_five_runs(lab: Lab, tmp_path: Path, name: str) -> None:
    scenario = load_scenario(SCENARIO_DIR / f"{name}.toml")
    blocked_apps, residual = CASES[name]
    for run in range(RUNS):
        apply_scenario(lab, scenario)
        outcome = run_probe(lab, tmp_path / str(run), "mobile", BUDGET_S)
        summary = outcome.summary
        assert summary is not None, outcome.stderr[-3000:]
        failed = [r for r in compare(summary, scenario) if not r.passed]
        calls = call_measurements(summary)
        detail = {k: (v.get("outcome"), v.get("reasons"), v.get("failed_operation"))
                  for k, v in calls.items()}
        assert not failed, f"run {run}: {failed}\n{detail}"
        for service in SERVICES:
            functions = summary["services"][service]["functions"]
            assert functions["messaging"]["status"] == "ok", (run, service, functions)
            main = calls[(service, "main")]
            if service not in blocked_apps:
                assert main.get("outcome") == "ok" and main["failure"] is None, (run, detail)
                assert functions["calls"]["status"] == "ok", (run, service, functions)
                continue
            # How they are blocked: the app's DPI and nothing else. A check whose traffic an
            # app probe's residual block cut (a stun/turn control, a stream on the same
            # reflector port) stands aside instead of reading udp_blocked or throttled.
            assert functions["calls"]["methods"] == ["app_stun_dpi"], (run, service, functions)
            # The call check's own evidence: in the main pass the app's call dropped while
            # the control passed (with residual blocking: until the call started), never a
            # blocked port; in the confirmation pass the censor still blocks the port (the
            # residual rule, or nDPI's STUN cache for the port where it saw the app).
            assert main.get("outcome") == "app_stun_dpi", (run, service, detail)
            assert main["control"]["setup"]["answered"] >= 1
            assert main["control"]["received"] > 0 and main["call"]["received"] == 0
            confirmation = calls[(service, "confirmation")]
            assert confirmation.get("outcome") == "app_stun_dpi", (run, service, detail)
            if residual:
                # the residual block shows in the main pass (the control cut once the call
                # started) or, when a busy probe read too little of it, in the confirmation
                # (the control dropped from its first packet)
                assert True in (main["residual_blocking"],
                                confirmation["residual_blocking"]), (run, service, detail)
            else:
                assert main["residual_blocking"] is False, (run, service, detail)
