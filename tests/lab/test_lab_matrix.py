"""The scenario matrix: every scenario runs through the real probe (``voip-probe run``
inside the lab's client namespace) and every expected verdict must be reached.

A scenario runs when the probe has what its verdicts need: each entry of its
``requires`` is a check name registered in ``probe.checks.CHECK_MODULES`` or an
importable module (e.g. ``probe.reflector``). A scenario whose checks do not exist yet is
not run here (a lab test must never skip under CI) but named in :data:`PENDING`, which
``tests/test_scenarios_pending.py`` checks, so it cannot be forgotten: once its check
lands, remove it from PENDING and it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
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


def missing_requirements(scenario: Scenario) -> list[str]:
    missing = []
    if importlib.util.find_spec("probe.cli.run") is None:
        missing.append("probe.cli.run")
    try:
        registered = set(importlib.import_module("probe.checks").CHECK_MODULES)
    except (ImportError, AttributeError):
        registered = set()
    for item in scenario.requires:
        if "." in item:
            if importlib.util.find_spec(item) is None:
                missing.append(item)
        elif item not in registered:
            missing.append(f"check {item!r}")
    return missing


# Scenarios whose checks do not exist yet (none today: issue 5 brought the last ones).
PENDING: set[str] = set()
RUNNABLE = [s for s in SCENARIOS if s.name not in PENDING]


@pytest.mark.parametrize("scenario", RUNNABLE, ids=lambda s: s.name)
def test_scenario_verdicts(lab: Lab, scenario: Scenario, tmp_path: Path) -> None:
    missing = missing_requirements(scenario)
    assert not missing, f"the probe lacks {', '.join(missing)}"
    timeout = None if scenario.name in LOSSY else CHECK_TIMEOUT_S
    outcome = play(lab, scenario, tmp_path, timeout_s=timeout)
    assert outcome.run.summary is not None, outcome.run.stderr[-3000:]
    failed = [r for r in outcome.rows if not r.passed]
    assert outcome.rows and not failed, "\n".join(
        f"{r.service}/{r.function}: expected {r.expected} {list(r.expected_methods)}, "
        f"got {r.actual} {list(r.actual_methods)}" for r in failed)
    # The DNS-tampering and SNI methods appear only in the scenarios that expect them
    # (issue 5): a scenario that drops UDP or resets TCP must not read as DNS or SNI censorship.
    expected = {m for item in scenario.expect for m in item.methods}
    stray = {(svc, fn, m) for svc, sv in outcome.run.summary["services"].items()
             for fn, fv in sv["functions"].items() for m in fv["methods"]
             if m in SIGNAL_METHODS and m not in expected}
    assert not stray, f"methods this scenario does not cause: {sorted(stray)}"


@pytest.mark.parametrize("run_index", range(10))
def test_lossy_clean_ten_runs_never_blocked(lab: Lab, tmp_path: Path, run_index: int) -> None:
    """Ten runs under 10% loss, each its own test (they spread over pytest-xdist workers)."""
    scenario = next(s for s in SCENARIOS if s.name == "lossy-clean")
    missing = missing_requirements(scenario)
    assert not missing, f"the probe lacks {', '.join(missing)}"
    apply_scenario(lab, scenario)
    run = run_probe(lab, tmp_path / str(run_index))
    assert run.summary is not None, run.stderr[-3000:]
    assert run.summary["network"]["status"] == "online"
    blocked = [(service, function, fv)
               for service, verdict in run.summary["services"].items()
               for function, fv in verdict["functions"].items() if fv["status"] == "blocked"]
    assert any(packets for _, packets in lab.rule_counters())  # the loss rule did drop
    assert blocked == []
