"""The runner through the fake seam: concurrency, confirmation pass, robustness."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from probe import failures
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.runner import RunInfo, run_plan
from probe.testing import FAKE_NETWORKS, FakeNetwork


def plan_of(*endpoints: Endpoint) -> Plan:
    by: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        by.setdefault(e.service, []).append(e)
    return Plan(tuple(Service(sid, sid, tuple(eps)) for sid, eps in by.items()))


def ep(service: str, host: str, port: int = 443, function: str = "messaging") -> Endpoint:
    return Endpoint(service=service, function=function, check="tcp", host=host, port=port,
                    expected_networks=FAKE_NETWORKS)


INFO = RunInfo(report_id="r1", start=datetime(2016, 1, 7, tzinfo=UTC), probe_asn="AS36903",
               probe_cc="MA", network_type="mobile")


def run(plan: Plan, net: FakeNetwork, **cfg: object) -> list[dict]:
    out: list[dict] = []
    config = RunConfig(**{"timeout_s": 0.3, **cfg})  # type: ignore[arg-type]
    asyncio.run(run_plan(plan, config, net, INFO, out.append))
    return out


def test_records_carry_the_base_fields_and_dns_units() -> None:
    net = FakeNetwork(names={"e1.test": ["198.18.1.1"], "c.test": ["198.18.9.9"]})
    recs = run(plan_of(ep("wa", "e1.test"), ep("controls", "c.test", function="control")), net)
    kinds = sorted((r["service"], r["test_name"], r["function"]) for r in recs)
    # A derived dns measurement for the service's host; none for control services.
    assert kinds == [("controls", "tcp", "control"), ("wa", "dns", "dns"),
                     ("wa", "tcp", "messaging")]
    r = next(r for r in recs if r["test_name"] == "tcp" and r["service"] == "wa")
    assert r["probe_asn"] == "AS36903" and r["probe_cc"] == "MA"
    assert r["annotations"]["network_type"] == "mobile"
    assert r["input"] == "tcp://e1.test:443" and r["pass"] == "main"
    assert r["test_start_time"] == "2016-01-07 00:00:00"
    assert "probe_ip" not in r


def test_only_failures_are_confirmed_and_a_flaky_endpoint_recovers() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"], "b.test": ["198.18.1.2"]},
                      tcp_faults={("198.18.1.1", 443): ["reset", "ok"],
                                  ("198.18.1.2", 443): "reset"})
    recs = run(plan_of(ep("wa", "a.test"), ep("wa", "b.test")), net)
    confirm = [(r["input"], r["test_keys"]["failure"]) for r in recs
               if r["pass"] == "confirmation"]
    assert sorted(confirm) == [("tcp://a.test:443", None),
                               ("tcp://b.test:443", "connection_reset")]


def test_one_lookup_per_host_is_shared_by_all_checks() -> None:
    net = FakeNetwork(names={"e1.test": ["198.18.1.1"]})
    plan = plan_of(*(ep("wa", "e1.test", port) for port in (443, 5222, 80)))
    recs = run(plan, net)
    assert len([r for r in recs if r["test_name"] == "dns"]) == 1
    assert sorted(net.connects) == [("198.18.1.1", 80), ("198.18.1.1", 443),
                                    ("198.18.1.1", 5222)]


def test_a_broken_check_is_recorded_and_the_run_goes_on() -> None:
    bad = Endpoint(service="wa", function="messaging", check="tcp", host="x.test", port=None)
    net = FakeNetwork(names={"x.test": ["198.18.1.1"], "e1.test": ["198.18.1.2"]})
    recs = run(plan_of(bad, ep("wa", "e1.test")), net)
    broken = next(r for r in recs if r["input"] == "tcp://x.test")
    assert broken["test_keys"]["check_error"].startswith("ValueError")
    assert any(r["input"] == "tcp://e1.test:443" and r["test_keys"]["failure"] is None
               for r in recs)
    # A check error is not a network failure: it is not re-run.
    assert [r["pass"] for r in recs if r["input"] == "tcp://x.test"] == ["main"]


def test_concurrency_limit_is_respected() -> None:
    net = FakeNetwork(names={f"h{i}.test": [f"198.18.1.{i}"] for i in range(10)})
    net.censor.apply("drop_endpoint", hosts=list(net.names))  # every connect waits
    in_flight = 0
    peak = 0
    original = net.tcp_connect

    async def counting(ip: str, port: int, timeout_s: float):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(ip, port, timeout_s)
        finally:
            in_flight -= 1

    net.tcp_connect = counting  # type: ignore[method-assign]
    run(plan_of(*(ep("wa", f"h{i}.test") for i in range(10))), net, concurrency=3,
        timeout_s=0.05, confirm_failures=False)
    assert peak == 3


def test_runner_gives_the_resolver_each_hosts_expected_networks() -> None:
    def plan(expected: tuple[str, ...]) -> Plan:
        ep = Endpoint(service="s", function="messaging", check="tcp", host="a.test", port=443,
                      expected_networks=expected)
        return Plan((Service("s", "s", (ep,)),))

    info = RunInfo(report_id="r", start=datetime(2016, 1, 7, tzinfo=UTC))
    for expected, failure in ((FAKE_NETWORKS, None), ((), failures.DNS_BOGON)):
        out: list[dict] = []
        net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
        asyncio.run(run_plan(plan(expected), RunConfig(timeout_s=1.0, confirm_failures=False),
                             net, info, out.append))
        assert {r["test_name"]: r["test_keys"]["failure"] for r in out} == {
            "dns": failure, "tcp": failure}


def test_a_neutral_endpoint_gets_no_dns_measurement_of_the_service() -> None:
    """A third party's server standing for a service's call path (``neutral = true``) is
    measured, but its name is not one of the service's: no dns unit for it."""
    from probe.runner import dns_units

    own = Endpoint(service="viber", function="messaging", check="tcp", host="chat.v.example",
                   port=443)
    neutral = Endpoint(service="viber", function="calls", check="stun",
                       host="stun.neutral.example", port=443, options={"neutral": True})
    plan = Plan(services=(Service("viber", "Viber", (own, neutral)),))
    assert [u.host for u in dns_units(plan)] == ["chat.v.example"]


def _spy_on_budgets(monkeypatch, straggler: str | None = None) -> list[tuple[str, float, float]]:
    """(input, loop time the check started, deadline it was handed) for every check; the
    ``straggler``'s first run ignores its deadline until the runner stops it."""
    import probe.runner as runner

    handed: list[tuple[str, float, float]] = []
    real = runner._run_check

    async def spy(ep, ctx, hard_limit_s):
        loop = asyncio.get_running_loop()
        handed.append((ep.input, loop.time(), ctx.deadline))
        if ep.input == straggler and sum(h[0] == straggler for h in handed) == 1:
            await asyncio.sleep(hard_limit_s)
            return {"failure": failures.GENERIC_TIMEOUT, "failed_operation": "top_level",
                    "budget_exceeded": True}
        return await real(ep, ctx, hard_limit_s)

    monkeypatch.setattr(runner, "_run_check", spy)
    return handed


def _blackholed_run(budget: float, startup: float) -> tuple[float, list[dict]]:
    hosts = ["a.test", "b.test", "c.test"]
    net = FakeNetwork(names={h: [f"198.18.1.{i + 1}"] for i, h in enumerate(hosts)})
    net.censor.apply("drop_endpoint", hosts=hosts, proto="tcp")
    out: list[dict] = []

    async def go() -> float:
        started = asyncio.get_running_loop().time() - startup  # the process began earlier
        await run_plan(plan_of(*(ep("wa", h) for h in hosts)), RunConfig(timeout_s=budget),
                       net, INFO, out.append, started=started)
        return started

    return asyncio.run(go()), out


def test_the_confirmation_pass_ends_with_the_second_budget(monkeypatch) -> None:
    """Everything blackholed, and the run began 0.2 s before the scan (start-up): each
    main check gets its whole budget, and the confirmations are cut to end two budgets
    after the run began, not two budgets after the scan did."""
    from probe.runner import FINISH_RESERVE_S

    handed = _spy_on_budgets(monkeypatch)
    budget = 4.0
    started, records = _blackholed_run(budget, startup=0.2)
    main = [h for h in handed if h[1] < started + 1.0 * budget]
    confirmation = handed[len(main):]
    assert len(main) == 6 and len(confirmation) == 3  # 3 dns + 3 tcp; the tcp fail
    for _, t0, deadline in main:
        assert deadline == pytest.approx(t0 + budget)
    for _, t0, deadline in confirmation:
        assert deadline == pytest.approx(started + 2 * budget - FINISH_RESERVE_S)
        assert deadline < t0 + budget  # cut: a whole budget would overrun
    assert sorted(r["pass"] for r in records).count("confirmation") == 3


def test_a_confirmation_keeps_three_quarters_of_a_budget_after_a_straggler(monkeypatch) -> None:
    """A main-pass check that ran to the runner's hard limit delays the confirmation pass;
    its confirmations still get three quarters of a budget to tell (the run overruns
    instead)."""
    from probe.runner import MIN_CONFIRM_SHARE

    handed = _spy_on_budgets(monkeypatch, straggler="tcp://a.test:443")
    budget = 1.0
    started, _ = _blackholed_run(budget, startup=0.3)
    confirmation = [h for h in handed if h[1] > started + 1.5 * budget]
    assert len(confirmation) == 3
    for _, t0, deadline in confirmation:
        assert deadline == pytest.approx(t0 + MIN_CONFIRM_SHARE * budget)
