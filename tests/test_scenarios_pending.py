"""The lab scenarios that the matrix does not run yet are exactly those whose checks are
missing: none may hide there once its check exists, and none may silently lack one."""

from __future__ import annotations

from probe.lab.scenarios import all_scenarios
from tests.lab.test_lab_matrix import PENDING, missing_requirements


def test_pending_scenarios_are_exactly_those_missing_checks() -> None:
    lacking = {s.name for s in all_scenarios() if missing_requirements(s)}
    assert lacking == PENDING
