"""Each scenario's rules bite on their own: its direct socket checks ("proofs") succeed
with no rule in place and give the scenario's expected failure once its rules are
applied. So a passing probe verdict can never come from a rule that never matched."""

from __future__ import annotations

import pytest

from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, proof_holds, run_proof
from probe.lab.scenarios import all_scenarios

pytestmark = pytest.mark.lab
WITH_RULES = [s for s in all_scenarios() if s.rules]


def test_every_scenario_with_rules_has_proofs() -> None:
    assert len(WITH_RULES) >= 14
    assert all(s.proofs for s in WITH_RULES)


@pytest.mark.parametrize("scenario", WITH_RULES, ids=lambda s: s.name)
def test_rules_bite(lab: Lab, scenario) -> None:  # type: ignore[no-untyped-def]
    for proof in scenario.proofs:
        result = run_proof(lab, proof)
        assert proof_holds(proof, result, rules_on=False), (
            f"{scenario.name} proof line {proof.line} fails without rules: {result}")
    apply_scenario(lab, scenario)
    for proof in scenario.proofs:
        result = run_proof(lab, proof)
        assert proof_holds(proof, result, rules_on=True), (
            f"{scenario.name} proof line {proof.line}: expected {proof.expect}, got {result}")
    assert any(packets for _, packets in lab.rule_counters()) or not any(
        u.at == "censor" and u.rule not in ("sni_reset", "app_stun_dpi")
        for u in scenario.rules), "no nftables rule of the censor matched a packet"
