"""Verdicts are a pure function of measurements (hand-built records, no network)."""

from __future__ import annotations

from typing import Any

from probe.verdicts import overall_exit_code, summarize


def rec(service: str, function: str, inp: str, failure: str | None, *, test: str = "tcp",
        pas: str = "main", pool: str = "any", **keys: Any) -> dict[str, Any]:
    tk = {"failure": failure, **keys}
    if test == "tcp" and failure and failure.startswith("dns_"):
        tk["failed_operation"] = "resolve"
    return {"service": service, "function": function, "input": inp, "test_name": test,
            "pass": pas, "pool": pool, "test_keys": tk}


CONTROLS_OK = [rec("controls", "control", f"tcp://c{i}:443", None) for i in range(4)]
CONTROLS_DOWN = [rec("controls", "control", f"tcp://c{i}:443", "generic_timeout_error")
                 for i in range(4)]


def test_all_reachable_is_ok() -> None:
    s = summarize([*CONTROLS_OK, rec("wa", "messaging", "tcp://e1:443", None)])
    assert s["network"]["status"] == "online"
    assert s["services"]["wa"] == {"status": "ok", "functions": {"messaging": {
        "status": "ok", "reachable": 1, "total": 1, "methods": []}}}
    assert overall_exit_code(s) == 0


def test_blocked_needs_the_confirmation_to_fail_too() -> None:
    flaky = [rec("wa", "messaging", "tcp://e1:443", "connection_reset"),
             rec("wa", "messaging", "tcp://e1:443", None, pas="confirmation")]
    s = summarize([*CONTROLS_OK, *flaky])
    assert s["services"]["wa"]["status"] == "ok"
    blocked = [rec("wa", "messaging", "tcp://e1:443", "connection_reset"),
               rec("wa", "messaging", "tcp://e1:443", "connection_reset", pas="confirmation")]
    s = summarize([*CONTROLS_OK, *blocked])
    assert s["services"]["wa"]["functions"]["messaging"] == {
        "status": "blocked", "reachable": 0, "total": 1, "methods": ["tcp_reset"]}
    assert overall_exit_code(s) == 1


def test_controls_down_make_failures_inconclusive_not_blocked() -> None:
    s = summarize([*CONTROLS_DOWN, rec("wa", "messaging", "tcp://e1:443", "connection_reset")])
    assert s["network"]["status"] == "offline"
    assert s["services"]["wa"]["status"] == "inconclusive"
    assert overall_exit_code(s) == 3


def test_lossy_network_with_most_controls_failing_is_inconclusive() -> None:
    controls = [*CONTROLS_DOWN[:3], CONTROLS_OK[3]]
    s = summarize([*controls, rec("wa", "calls", "stun://x:3478", "generic_timeout_error")])
    assert s["network"]["status"] == "online"
    assert s["services"]["wa"]["functions"]["calls"]["status"] == "inconclusive"


def test_partial_any_pool_is_impaired_and_all_pool_is_blocked() -> None:
    recs = [*CONTROLS_OK,
            rec("wa", "messaging", "tcp://e1:443", None),
            rec("wa", "messaging", "tcp://e2:443", "generic_timeout_error"),
            rec("wa", "web", "tcp://w1:443", None, pool="all"),
            rec("wa", "web", "tcp://w2:443", "connection_reset", pool="all")]
    fns = summarize(recs)["services"]["wa"]["functions"]
    assert fns["messaging"] == {"status": "impaired", "reachable": 1, "total": 2,
                                "methods": ["tcp_timeout"]}
    assert fns["web"]["status"] == "blocked"


def test_calls_blocked_messaging_ok_is_the_morocco_pattern() -> None:
    recs = [*CONTROLS_OK,
            rec("wa", "dns", "dns://e1", None, test="dns"),
            rec("wa", "messaging", "tcp://e1:443", None),
            rec("wa", "calls", "tcp://relay:3478", "generic_timeout_error"),
            rec("wa", "calls", "tcp://relay:3478", "generic_timeout_error", pas="confirmation")]
    s = summarize(recs)
    fns = s["services"]["wa"]["functions"]
    assert [fns[f]["status"] for f in ("dns", "messaging", "calls")] == ["ok", "ok", "blocked"]
    assert list(fns) == ["dns", "messaging", "calls"]
    assert s["services"]["wa"]["status"] == "blocked"


def test_dns_methods_propagate_to_functions() -> None:
    recs = [*CONTROLS_OK,
            rec("wa", "dns", "dns://e1", "dns_nxdomain_error", test="dns", pool="all"),
            rec("wa", "messaging", "tcp://e1:443", "dns_nxdomain_error")]
    fns = summarize(recs)["services"]["wa"]["functions"]
    assert fns["dns"]["methods"] == ["dns_nxdomain"]
    assert fns["messaging"]["methods"] == ["dns_nxdomain"]


def test_check_errors_and_not_applicable_are_left_out() -> None:
    recs = [*CONTROLS_OK,
            rec("wa", "messaging", "tcp://e1:443", None),
            rec("wa", "messaging", "tcp://e2:443", "unknown_failure boom", check_error="boom"),
            rec("wa", "calls", "udp://r:3478", "not_applicable", test="udp")]
    s = summarize(recs)
    assert s["services"]["wa"]["functions"] == {"messaging": {
        "status": "ok", "reachable": 1, "total": 1, "methods": []}}


def test_no_controls_in_plan_uses_any_success() -> None:
    s = summarize([rec("wa", "messaging", "tcp://e1:443", None),
                   rec("wa", "calls", "tcp://r:3478", "connection_refused")])
    assert s["services"]["wa"]["functions"]["calls"]["status"] == "blocked"
    s = summarize([rec("wa", "calls", "tcp://r:3478", "connection_refused")])
    assert (s["network"]["status"], s["services"]["wa"]["status"]) == ("offline", "inconclusive")


def test_summary_lines_and_junk_are_ignored() -> None:
    s = summarize([{"record": "summary"}, {"test_keys": "junk"}, *CONTROLS_OK])
    assert s["services"] == {} and s["network"]["controls"] == {"reachable": 4, "total": 4}
