"""ICMP port unreachable from the censor, in the censorship lab: the censor rejects every UDP
call port (``calls-icmp-reject``: nft ``reject with icmp type port-unreachable``), so the
probe meets an ICMP error that a router on the path sent, not the server. Over five runs
of the real probe (shipped targets, the lab's reflector): every service's calls are judged
``udp_blocked`` (Skype/Teams ``impaired``: its relay fallback over TCP/TLS 443 works), the
call check's measurements name the rejecting hop (the censor's address as the client sees
it), and messaging is ``ok`` everywhere."""

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
BUDGET_S = 4.0
SERVICES = ("whatsapp", "skype", "viber", "duo")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        assert lab.reflector == A.REFLECTOR, "the lab must run voip-probe reflector"
        yield lab


def call_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with open(summary["results_file"], encoding="utf-8") as fh:
        return [rec for rec in map(json.loads, fh) if rec.get("test_name") == "call"]


def test_icmp_reject_is_udp_blocked_with_the_rejecting_hop(lab: Lab, tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO_DIR / "calls-icmp-reject.toml")
    apply_scenario(lab, scenario)
    for run in range(RUNS):
        outcome = run_probe(lab, tmp_path / str(run), "mobile", BUDGET_S)
        summary = outcome.summary
        assert summary is not None, outcome.stderr[-3000:]
        calls = call_records(summary)
        detail = [(r["service"], r["pass"], r["test_keys"].get("outcome"),
                   r["test_keys"].get("icmp_from")) for r in calls]
        failed = [r for r in compare(summary, scenario) if not r.passed]
        assert not failed, f"run {run}: {failed}\n{detail}"
        for service in SERVICES:
            functions = summary["services"][service]["functions"]
            assert functions["messaging"]["status"] == "ok", (run, service, functions)
            assert "udp_blocked" in functions["calls"]["methods"], (run, service, functions)
        assert {r["service"] for r in calls} == set(SERVICES)
        for rec in calls:
            keys = rec["test_keys"]
            assert keys["outcome"] == "udp_blocked", (run, detail)
            assert keys["icmp_from"] == A.CENSOR_DOWN, (run, detail)
