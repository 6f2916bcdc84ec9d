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


# Seen in the lab's throttled scenario: the differential's main pass read the throttle's
# loss as residual blocking, and its confirmation stood aside (another app's probe had cut
# the port: not_applicable). An unconfirmed failure must not make calls blocked.
def test_a_failure_whose_confirmation_did_not_apply_is_unconfirmed_and_left_out() -> None:
    recs = [*CONTROLS_OK,
            rec("wa", "calls", "differential://r:3478", "generic_timeout_error",
                test="differential", outcome="app_stun_dpi", residual_blocking=True),
            rec("wa", "calls", "udp://r:3478", None, test="udp"),
            rec("wa", "calls", "differential://r:3478", "not_applicable",
                test="differential", pas="confirmation", outcome="after_other_app")]
    s = summarize(recs)
    assert s["services"]["wa"]["functions"]["calls"] == {
        "status": "ok", "reachable": 1, "total": 1, "methods": []}
    # A confirmation that failed too still confirms it.
    confirmed = [*recs[:-1], rec("wa", "calls", "differential://r:3478",
                                "generic_timeout_error", test="differential",
                                pas="confirmation", outcome="app_stun_dpi")]
    calls = summarize(confirmed)["services"]["wa"]["functions"]["calls"]
    assert (calls["status"], calls["reachable"], calls["total"]) == ("impaired", 1, 2)


def test_no_controls_in_plan_uses_any_success() -> None:
    s = summarize([rec("wa", "messaging", "tcp://e1:443", None),
                   rec("wa", "calls", "tcp://r:3478", "connection_refused")])
    assert s["services"]["wa"]["functions"]["calls"]["status"] == "blocked"
    s = summarize([rec("wa", "calls", "tcp://r:3478", "connection_refused")])
    assert (s["network"]["status"], s["services"]["wa"]["status"]) == ("offline", "inconclusive")


def test_summary_lines_and_junk_are_ignored() -> None:
    s = summarize([{"record": "summary"}, {"test_keys": "junk"}, *CONTROLS_OK])
    assert s["services"] == {} and s["network"]["controls"] == {"reachable": 4, "total": 4}


# --- calls with the apps' TCP/TLS relay fallback (DESIGN.md, real-DPI rules) -----------

def teams_calls(udp: str | None, tcp: str | None, tls: str | None) -> list[dict[str, Any]]:
    """Skype/Teams calls: a TURN Allocate over UDP and the relay fallback over TCP and TLS,
    each failure confirmed (main and confirmation pass alike)."""
    out = []
    for pas in ("main", "confirmation"):
        out.append(rec("skype", "calls", "turn://relay:3478", udp, test="turn", pas=pas,
                       control=None))
        for test, failure in (("turn_tcp", tcp), ("turn_tls", tls)):
            keys: dict[str, Any] = {"fallback": True, "transport": test[-3:]}
            if failure == "connection_reset":
                keys["failed_operation"] = "tcp_connect"
            elif failure is not None:
                keys["failed_operation"] = "turn_allocate"  # connected, no answer
            out.append(rec("skype", "calls", f"{test}://relay:443", failure, test=test,
                           pas=pas, **keys))
    return out


UDP_BLOCKED_CONTROL = {"failure": None,
                       "same_port": {"kinds": {"stun": {"sent": 2, "answered": 0},
                                               "random": {"sent": 2, "answered": 0}}},
                       "baseline": {"kinds": {"random": {"sent": 2, "answered": 2}}}}


def calls_of(recs: list[dict[str, Any]]) -> dict[str, Any]:
    verdict: dict[str, Any] = summarize([*CONTROLS_OK, *recs])["services"]["skype"][
        "functions"]["calls"]
    return verdict


def test_udp_blocked_with_a_working_fallback_is_impaired_with_the_udp_methods() -> None:
    recs = teams_calls("generic_timeout_error", None, "generic_timeout_error")
    for r in recs:
        if r["test_name"] == "turn":
            r["test_keys"]["control"] = UDP_BLOCKED_CONTROL
    calls = calls_of(recs)
    assert calls["status"] == "impaired"
    assert calls["methods"] == ["udp_blocked"]
    assert (calls["reachable"], calls["total"]) == (1, 3)
    assert calls["paths"]["udp"]["status"] == "blocked"
    assert calls["paths"]["fallback"] == {"status": "impaired", "reachable": 1, "total": 2,
                                          "methods": ["relay_unreachable"]}


def test_udp_and_fallback_blocked_is_blocked_with_the_methods_of_both() -> None:
    recs = teams_calls("generic_timeout_error", "connection_reset", "connection_reset")
    for r in recs:
        if r["test_name"] == "turn":
            r["test_keys"]["control"] = UDP_BLOCKED_CONTROL
    calls = calls_of(recs)
    assert calls["status"] == "blocked"
    assert calls["methods"] == ["tcp_reset", "udp_blocked"]
    assert calls["paths"]["fallback"]["status"] == "blocked"
    assert overall_exit_code(summarize([*CONTROLS_OK, *recs])) == 1


def test_udp_working_gives_the_udp_status_whatever_the_fallback() -> None:
    calls = calls_of(teams_calls(None, "connection_reset", "connection_reset"))
    assert calls["status"] == "ok" and calls["methods"] == []
    assert (calls["reachable"], calls["total"]) == (1, 3)
    assert calls["paths"]["fallback"]["status"] == "blocked"
    clean = calls_of(teams_calls(None, None, None))
    assert clean["status"] == "ok"
    assert clean["paths"] == {
        "udp": {"status": "ok", "reachable": 1, "total": 1, "methods": []},
        "fallback": {"status": "ok", "reachable": 2, "total": 2, "methods": []}}


def test_without_a_fallback_path_udp_blocked_stays_blocked_and_has_no_paths() -> None:
    recs = [r for r in teams_calls("generic_timeout_error", None, None)
            if r["test_name"] == "turn"]
    calls = calls_of(recs)
    assert calls["status"] == "blocked" and "paths" not in calls


def test_an_untrustworthy_network_keeps_calls_inconclusive_with_a_fallback() -> None:
    recs = teams_calls("generic_timeout_error", None, None)
    s = summarize([*CONTROLS_DOWN[:3], CONTROLS_OK[3], *recs])
    calls = s["services"]["skype"]["functions"]["calls"]
    assert calls["status"] == "inconclusive"
