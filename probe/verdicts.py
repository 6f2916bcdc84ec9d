"""Measurements -> verdicts per service and function. A pure, deterministic function.

Rules (DESIGN.md "Run summary" and "Measurement rules"):

* An *endpoint* is one (service, function, check, input). It is reachable if any of its
  measurements (main or confirmation pass) succeeded; a failure counts only when the
  confirmation failed too. Measurements whose check could not run (``check_error``) or
  did not apply (``not_applicable``, e.g. no reflector given) are left out of the counts;
  so is a main-pass failure whose confirmation did not apply (it was never confirmed).
* Methods come from each check module's ``methods(test_keys)``: for a failed endpoint
  those of its last failed measurement; a reachable endpoint may still show a method
  that impairs it (``throttled``).
* Controls decide between blocked and inconclusive: the network is *trustworthy* when
  at least half of the control endpoints were reachable (with no controls in the plan:
  when anything at all was reachable). On an untrustworthy network, a function with
  failures is ``inconclusive``, never ``blocked`` or ``impaired``.
* Status of a function: all reachable -> ``ok`` (``impaired`` if a reachable endpoint
  shows a method); none reachable -> ``blocked``; some reachable -> ``impaired`` for an
  ``any`` pool (the function still works through the others), ``blocked`` for an
  ``all`` pool (each endpoint is needed).
* Calls and the apps' fallback (DESIGN.md "Measurement rules learned from real DPI"):
  measurements whose test keys say ``"fallback": true`` (TURN over TCP/TLS 443 to a relay)
  are the fallback path, the other calls endpoints the UDP path. Each path gets its own
  verdict (in ``paths``). UDP blocked and the fallback working (any of its endpoints
  reachable) is ``impaired`` with the UDP path's methods: calls connect, with worse
  quality; both blocked is ``blocked`` with the methods of both. While the UDP path works
  the function has the UDP path's status and methods: calls work as the apps prefer, and
  the fallback's own verdict stays in ``paths``.
* A service's status is its worst function (ok < inconclusive < impaired < blocked).
* Network status: ``online`` if any control or any endpoint was reachable, else
  ``offline``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from probe import failures
from probe.checks import methods_for
from probe.model import (
    METHODS,
    REPORTED_FUNCTIONS,
    SEVERITY,
    FunctionVerdict,
    Record,
    ServiceVerdict,
)

TRUSTWORTHY_CONTROL_FRACTION = 0.5
_METHOD_ORDER = {m: i for i, m in enumerate(METHODS)}
_FUNCTION_ORDER = {f: i for i, f in enumerate(REPORTED_FUNCTIONS)}


@dataclass(slots=True)
class _EndpointState:
    pool: str
    ok: bool = False
    counted: bool = False
    failure_methods: list[str] = field(default_factory=list)
    impairment_methods: list[str] = field(default_factory=list)
    failure_pass: str = ""
    fallback: bool = False


def _order_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=lambda m: (_METHOD_ORDER.get(m, len(METHODS)), m))


def _collect(records: Iterable[Record]) -> dict[tuple[str, str, str, str], _EndpointState]:
    states: dict[tuple[str, str, str, str], _EndpointState] = {}
    for rec in records:
        if rec.get("record") == "summary" or rec.get("test_name") == "locate":
            continue  # locate findings (run --deep) are not checks of an endpoint
        tk = rec.get("test_keys")
        if not isinstance(tk, dict):
            continue
        key = (str(rec.get("service")), str(rec.get("function")), str(rec.get("test_name")),
               str(rec.get("input")))
        st = states.get(key)
        if st is None:
            st = states[key] = _EndpointState(pool=str(rec.get("pool") or "any"))
        failure = tk.get("failure")
        if tk.get("fallback") is True:
            st.fallback = True
        if tk.get("check_error") or failure == failures.NOT_APPLICABLE:
            if (rec.get("pass") == "confirmation" and st.failure_pass == "main"
                    and not st.ok):
                # The retry could not tell (e.g. another app's probe had cut the port):
                # the main pass's failure is unconfirmed and does not count.
                st.counted, st.failure_methods, st.failure_pass = False, [], ""
            continue
        st.counted = True
        found = methods_for(str(rec.get("test_name")), tk)
        if failure is None:
            st.ok = True
            st.impairment_methods.extend(found)
        elif rec.get("pass") == "confirmation" or st.failure_pass != "confirmation":
            st.failure_methods = list(found)
            st.failure_pass = str(rec.get("pass") or "main")
    return states


def summarize(records: Iterable[Record]) -> dict[str, Any]:
    """The ``network`` and ``services`` parts of the run summary."""
    states = _collect(records)
    controls = [s for (svc, fn, _, _), s in states.items() if fn == "control" and s.counted]
    controls_ok = sum(1 for s in controls if s.ok)
    anything_ok = any(s.ok for s in states.values())
    if controls:
        trustworthy = controls_ok >= TRUSTWORTHY_CONTROL_FRACTION * len(controls)
    else:
        trustworthy = anything_ok
    network: dict[str, Any] = {
        "status": "online" if (controls_ok or anything_ok) else "offline",
        "controls": {"reachable": controls_ok, "total": len(controls)},
    }

    grouped: dict[str, dict[str, list[_EndpointState]]] = {}
    for (svc, fn, _, _), st in states.items():
        if fn == "control":
            continue
        grouped.setdefault(svc, {}).setdefault(fn, [])
        if st.counted:
            grouped[svc][fn].append(st)

    services: dict[str, Any] = {}
    for svc in grouped:
        verdicts: dict[str, FunctionVerdict] = {}
        for fn in sorted(grouped[svc], key=lambda f: (_FUNCTION_ORDER.get(f, 99), f)):
            eps = grouped[svc][fn]
            if not eps:
                continue
            verdicts[fn] = _function_verdict(eps, trustworthy)
        if verdicts:
            worst = max((v.status for v in verdicts.values()), key=SEVERITY.__getitem__)
            services[svc] = ServiceVerdict(worst, verdicts).to_json()
    return {"network": network, "services": services}


def _function_verdict(eps: list[_EndpointState], trustworthy: bool) -> FunctionVerdict:
    verdict = _pooled_verdict(eps, trustworthy)
    udp = [e for e in eps if not e.fallback]
    fallback = [e for e in eps if e.fallback]
    if not udp or not fallback:
        return verdict
    udp_path = _pooled_verdict(udp, trustworthy)
    fallback_path = _pooled_verdict(fallback, trustworthy)
    verdict.paths = {"udp": udp_path.to_json(), "fallback": fallback_path.to_json()}
    if verdict.status == "inconclusive":
        return verdict  # an untrustworthy network: neither path says anything
    if udp_path.status == "blocked":
        if fallback_path.reachable:
            verdict.status = "impaired"  # calls connect through the relay over TCP/TLS
            verdict.methods = udp_path.methods
        else:
            verdict.status = "blocked"
            verdict.methods = _order_methods([*udp_path.methods, *fallback_path.methods])
    else:
        verdict.status = udp_path.status
        verdict.methods = udp_path.methods
    return verdict


def _pooled_verdict(eps: list[_EndpointState], trustworthy: bool) -> FunctionVerdict:
    total = len(eps)
    reachable = sum(1 for e in eps if e.ok)
    failed = [e for e in eps if not e.ok]
    methods = _order_methods(
        [m for e in failed for m in e.failure_methods]
        + [m for e in eps if e.ok for m in e.impairment_methods]
    )
    if not failed:
        status = "impaired" if methods else "ok"
    elif not trustworthy:
        status = "inconclusive"
    elif reachable == 0 or any(e.pool == "all" for e in failed):
        status = "blocked"
    else:
        status = "impaired"
    return FunctionVerdict(status, reachable, total, methods)


def overall_exit_code(summary: dict[str, Any]) -> int:
    """0 nothing blocked; 1 blocking or impairment; 3 inconclusive (e.g. offline)."""
    statuses = [s["status"] for s in summary.get("services", {}).values()]
    if any(s in ("blocked", "impaired") for s in statuses):
        return 1
    if summary.get("network", {}).get("status") == "offline" or "inconclusive" in statuses:
        return 3
    return 0


# --- one-line notes for the run summary --------------------------------------------------

# What the reflector-based checks would have shown (DESIGN.md "Reflector").
_REFLECTOR_EVIDENCE = {
    "udp": "the UDP port test (udp_blocked)",
    "differential": "the STUN payload differential (stun_dpi, app_stun_dpi)",
    "stream": "the call-like stream (throttled)",
    "call": "the call emulation (app_stun_dpi, throttled)",
}


def reflector_left_out(records: Iterable[Record]) -> str | None:
    """One line saying which evidence a run without a reflector left out, or None when
    nothing was left out for want of one."""
    skipped: dict[str, int] = {}
    for rec in records:
        tk = rec.get("test_keys")
        if not isinstance(tk, dict) or rec.get("pass") == "confirmation":
            continue
        if tk.get("failure") == failures.NOT_APPLICABLE and rec.get("function") == "calls":
            name = str(rec.get("test_name"))
            skipped[name] = skipped.get(name, 0) + 1
    if not skipped:
        return None
    parts = [_REFLECTOR_EVIDENCE.get(name, name) for name in sorted(skipped)]
    return (f"no reflector: {sum(skipped.values())} call checks did not run ("
            f"{', '.join(parts)}), and how a silent STUN/TURN server is blocked was not "
            "told (relay_unreachable); set reflector = \"host\" in config.toml, or "
            "--reflector HOST")


def fallback_lines(services: dict[str, Any]) -> list[str]:
    """One line per service whose calls were judged on two paths (UDP and the relay
    fallback over TCP/TLS 443), saying which of them works."""
    lines = []
    for sid, svc in services.items():
        calls = svc.get("functions", {}).get("calls") or {}
        paths = calls.get("paths")
        if not paths or calls.get("status") == "inconclusive":
            continue
        udp, fallback = paths["udp"], paths["fallback"]
        how = f" ({', '.join(udp['methods'])})" if udp.get("methods") else ""
        if udp["status"] != "blocked":
            if fallback["status"] == "ok":
                continue  # both work: nothing to say
            lines.append(f"{sid} calls: UDP works; the relay fallback over TCP/TLS 443 is "
                         f"{fallback['status']}")
        elif fallback["reachable"]:
            lines.append(f"{sid} calls: UDP blocked{how}, the relay fallback over TCP/TLS "
                         "443 works: calls connect, with worse quality")
        else:
            fb_how = f" ({', '.join(fallback['methods'])})" if fallback.get("methods") else ""
            lines.append(f"{sid} calls: UDP blocked{how} and the relay fallback over TCP/TLS "
                         f"443 blocked{fb_how}: calls cannot connect")
    return lines
