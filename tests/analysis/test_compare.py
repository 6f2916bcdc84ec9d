"""Before/after comparison of two runs (library level)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.analysis.compare import NetworkMismatch, compare
from probe.analysis.summaries import load_summary
from tests.helpers.results_factory import BLOCKED, INCONCLUSIVE, OK, write_run

T0, T1 = "2016-01-06 09:00:00", "2016-01-07 09:00:00"


def _load(path: Path):
    warnings: list[str] = []
    summary = load_summary(path, warnings.append)
    assert summary is not None and warnings == []
    return summary


def test_each_kind_of_change(tmp_path: Path) -> None:
    before = write_run(tmp_path, T0, {
        ("whatsapp", "messaging"): OK,
        ("whatsapp", "calls"): OK,
        ("viber", "calls"): (BLOCKED, ["udp_blocked"]),
        ("skype", "calls"): (BLOCKED, ["stun_dpi"]),
        ("duo", "calls"): ("impaired", ["relay_unreachable"], 1, 3),
        ("duo", "web"): INCONCLUSIVE,
        ("skype", "web"): OK,
    })
    after = write_run(tmp_path, T1, {
        ("whatsapp", "messaging"): OK,
        ("whatsapp", "calls"): (BLOCKED, ["stun_dpi"]),
        ("viber", "calls"): OK,
        ("skype", "calls"): (BLOCKED, ["app_stun_dpi"]),
        ("duo", "calls"): ("impaired", ["relay_unreachable"], 2, 3),
        ("duo", "web"): BLOCKED,
        ("skype", "registration"): OK,
    })
    result = compare(_load(before), _load(after)).to_json()
    assert result["changes"] == [
        {"service": "whatsapp", "function": "calls", "before": "ok", "after": "blocked",
         "kind": "newly_blocked", "methods_before": [], "methods_after": ["stun_dpi"]},
        {"service": "viber", "function": "calls", "before": "blocked", "after": "ok",
         "kind": "restored", "methods_before": ["udp_blocked"], "methods_after": []},
        {"service": "skype", "function": "calls", "before": "blocked", "after": "blocked",
         "kind": "method_changed", "methods_before": ["stun_dpi"],
         "methods_after": ["app_stun_dpi"]},
        {"service": "duo", "function": "calls", "before": "impaired", "after": "impaired",
         "kind": "fraction_changed", "methods_before": ["relay_unreachable"],
         "methods_after": ["relay_unreachable"]},
    ]  # inconclusive -> blocked and functions on one side only are not comparable
    assert set(result) == {"before", "after", "changes"}
    assert result["before"]["network"]["asn"] == "AS36903"
    assert set(result["after"]) >= {"report_id", "results_file", "network", "services"}
    assert result["after"]["services"]["whatsapp"]["functions"]["calls"]["status"] == "blocked"


def test_blocked_to_impaired_same_methods_is_a_fraction_change(tmp_path: Path) -> None:
    a = write_run(tmp_path, T0, {("whatsapp", "calls"): (BLOCKED, ["udp_blocked"], 0, 4)})
    b = write_run(tmp_path, T1, {("whatsapp", "calls"): ("impaired", ["udp_blocked"], 1, 4)})
    (change,) = compare(_load(a), _load(b)).changes
    assert change.kind == "fraction_changed"
    assert (change.reachable_before, change.reachable_after) == ((0, 4), (1, 4))


def test_same_run_twice_has_no_changes(tmp_path: Path) -> None:
    a = write_run(tmp_path, T0, {("whatsapp", "calls"): BLOCKED, ("viber", "web"): OK})
    assert compare(_load(a), _load(a)).changes == []


@pytest.mark.parametrize("kw", [{"asn": "AS6713"}, {"network_type": "fixed"}])
def test_different_networks_refused_unless_forced(tmp_path: Path, kw) -> None:
    a = write_run(tmp_path, T0, {("whatsapp", "calls"): OK})
    b = write_run(tmp_path, T1, {("whatsapp", "calls"): BLOCKED}, **kw)
    with pytest.raises(NetworkMismatch, match="different networks"):
        compare(_load(a), _load(b))
    assert [c.kind for c in compare(_load(a), _load(b), force=True).changes] == [
        "newly_blocked"]
