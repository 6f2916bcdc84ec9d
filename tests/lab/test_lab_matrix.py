"""The scenario matrix: every scenario runs through the real probe (``voip-probe run``
inside the lab's client namespace) and every expected verdict must be reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, run_probe
from probe.lab.replay import play
from probe.lab.scenarios import Scenario, all_scenarios

pytestmark = pytest.mark.lab
SCENARIOS = all_scenarios()
CHECK_TIMEOUT_S = 4.0  # shorter than the probe's default budget, to keep CI fast
# Under loss, a short budget leaves room for only one or two SYN retransmissions (1 s, 3 s)
# after a lost DNS query: lossy runs use the probe's own default budget, as volunteers do.
LOSSY = {"lossy-clean"}
# Methods only DNS tampering or SNI filtering can cause.
SIGNAL_METHODS = {"dns_nxdomain", "dns_servfail", "dns_injection", "dns_bogon", "tls_sni"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_verdicts(lab: Lab, scenario: Scenario, tmp_path: Path) -> None:
    timeout = None if scenario.name in LOSSY else CHECK_TIMEOUT_S
    outcome = play(lab, scenario, tmp_path, timeout_s=timeout)
    assert outcome.run.summary is not None, outcome.run.stderr[-3000:]
    failed = [r for r in outcome.rows if not r.passed]
    assert outcome.rows and not failed, "\n".join(
        f"{r.service}/{r.function}: expected {r.expected} {list(r.expected_methods)}, "
        f"got {r.actual} {list(r.actual_methods)}" for r in failed)
    # The DNS-tampering and SNI methods appear only in the scenarios that expect them: a
    # scenario that drops UDP or resets TCP must not read as DNS or SNI censorship.
    expected = {m for item in scenario.expect for m in item.methods}
    stray = {(svc, fn, m) for svc, sv in outcome.run.summary["services"].items()
             for fn, fv in sv["functions"].items() for m in fv["methods"]
             if m in SIGNAL_METHODS and m not in expected}
    assert not stray, f"methods this scenario does not cause: {sorted(stray)}"


@pytest.mark.parametrize("run_index", range(10))
def test_lossy_clean_ten_runs_never_blocked(lab: Lab, tmp_path: Path, run_index: int) -> None:
    """Ten runs under 10% loss, each its own test (they spread over pytest-xdist workers)."""
    scenario = next(s for s in SCENARIOS if s.name == "lossy-clean")
    apply_scenario(lab, scenario)
    run = run_probe(lab, tmp_path / str(run_index))
    assert run.summary is not None, run.stderr[-3000:]
    assert run.summary["network"]["status"] == "online"
    blocked = [(service, function, fv)
               for service, verdict in run.summary["services"].items()
               for function, fv in verdict["functions"].items() if fv["status"] == "blocked"]
    assert any(packets for _, packets in lab.rule_counters())  # the loss rule did drop
    assert blocked == []
