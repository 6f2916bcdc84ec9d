"""The differential check (plain STUN, app STUN, random bytes, each the first packet of its
own flow, neutral kinds before and after the app's) through the network seam, in the fake
world (the project's reflector logic answering) under the lab's censor rules."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import pytest

from probe import failures, reflector
from probe import testing as T
from probe.checks import differential
from probe.lab.censor import APP_STUN
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.runner import RunInfo, run_plan
from probe.testing import CLIENT, FAKE_REFLECTOR, FakeNetwork
from probe.verdicts import summarize
from tests.helpers.checks import CALL_PORT, REFLECTOR, call_world, context, recorded_trials
from tests.helpers.checks import run_call_check as run_check

INFO = RunInfo(report_id="r1", start=datetime(2026, 12, 2, tzinfo=UTC))

FLAVORS = ["whatsapp", "teams", "google", "viber"]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_ok(flavor: str) -> None:
    net = call_world()
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == []
    kinds = keys["trials"]["kinds"]
    assert set(kinds) == {"stun", "app_stun", "random"}
    # neutral kinds: once before, three times mixed, once after; the app's: three times
    assert {k: (v["sent"], v["answered"]) for k, v in kinds.items()} == {
        "stun": (5, 5), "random": (5, 5), "app_stun": (3, 3)}
    compared = [d for ip, port, d in net.udp_sent
                if port == CALL_PORT and not d.startswith(reflector.HELLO_PREFIX)]
    assert {len(d) for d in compared} == {keys["payload_bytes"]}  # same length, every kind
    # each carries a token of the cookie the fake reflector gave the probe's address
    assert len(compared) == 13 and all(FAKE_REFLECTOR.proven(d, CLIENT[0]) for d in compared)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_app_stun_dpi(flavor: str) -> None:
    net = call_world()
    net.censor.apply("app_stun_dpi", flavor=flavor)
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["app_stun_dpi"], keys


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_stun_dpi(flavor: str) -> None:
    net = call_world()
    net.censor.apply("stun_dpi")
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["stun_dpi"], keys


async def test_differential_udp_blocked() -> None:
    net = call_world()
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    _keys, methods = await run_check("differential", net, host=None,
                                     options={"flavor": "viber"}, timeout_s=6.0)
    assert methods == ["udp_blocked"]


async def test_differential_plain_stun_unflavoured_ok_under_app_dpi() -> None:
    net = call_world()
    for flavor in APP_STUN:  # every app's STUN dropped, as in the calls-app-stun-dpi scenario
        net.censor.apply("app_stun_dpi", flavor=flavor)
    keys, methods = await run_check("differential", net, host=None, timeout_s=6.0)
    assert keys["failure"] is None and methods == []


async def test_differential_reflector_down_not_applicable() -> None:
    keys, methods = await run_check("differential", FakeNetwork(), host=None,
                                    options={"flavor": "teams"}, timeout_s=6.0)
    assert keys["failure"] == failures.NOT_APPLICABLE and methods == []


@pytest.mark.parametrize("repeat", range(3))
@pytest.mark.parametrize("seed", range(4))
async def test_differential_random_loss_is_not_dpi(seed: int, repeat: int) -> None:
    """20 % loss each way (on every port, the baseline's too, as the lab's random_loss)
    starves some trials by chance; further rounds (within the budget) must not turn that
    into stun_dpi or app_stun_dpi."""
    net = call_world(seed=seed)
    net.censor.apply("random_loss", percent=20)
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": "whatsapp"}, timeout_s=8.0)
    assert keys["outcome"] == "ok" and methods == [], keys["trials"]["kinds"]


# --- every probe the first packet of its own flow; residual blocking -----------------------

def _phases(flows: list[list]) -> str:
    """The phases of the flows in the order sent, run-length encoded (``b m a``)."""
    out: list[str] = []
    for phase, *_ in flows:
        if not out or out[-1] != phase:
            out.append(phase)
    return " ".join(out)


async def test_differential_every_trial_is_a_fresh_flow_neutral_before_and_after() -> None:
    net = call_world()
    keys, _ = await run_check("differential", net, host=None,
                              options={"flavor": "whatsapp"}, timeout_s=6.0)
    flows = keys["trials"]["flows"]
    ports = [sport for _, _, sport, _ in flows]
    assert len(flows) == 13 and len(set(ports)) == 13 and None not in ports
    sent_to_port = [d for _, port, d in net.udp_sent
                    if port == CALL_PORT and not d.startswith(reflector.HELLO_PREFIX)]
    assert len(sent_to_port) == 13  # one datagram per flow: each is its flow's first packet
    assert _phases(flows) == "b m a"
    first_app = next(i for i, f in enumerate(flows) if f[1] == "app_stun")
    assert sorted(f[1] for f in flows[:2]) == ["random", "stun"] and first_app >= 2
    assert sorted(f[1] for f in flows[-2:]) == ["random", "stun"]
    assert all(f[3] == "ok" for f in flows)


async def test_differential_kinds_go_in_random_order() -> None:
    orders = set()
    for _ in range(5):
        keys, _ = await run_check("differential", call_world(), host=None,
                                  options={"flavor": "teams"}, timeout_s=6.0)
        orders.add(tuple(f[1] for f in keys["trials"]["flows"] if f[0] == "m"))
    assert len(orders) > 1  # 9!/(3!^3) = 1680 orders: five alike would be no shuffle


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_residual_blocking_is_app_stun_dpi(flavor: str) -> None:
    """A censor that, once it drops the app's STUN, drops everything from the client to
    that reflector port (the lab's nDPI censor with residual_s): the neutral kinds passed
    before the app probe and fail after it, which is the app probe's doing, not a blocked
    port."""
    net = call_world()
    net.censor.apply("app_stun_dpi", flavor=flavor, residual_s=60)
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["app_stun_dpi"] and keys["outcome"] == "app_stun_dpi", keys
    assert keys["residual_blocking"] is True
    assert keys["residual_kinds"] == ["random", "stun"]
    flows = keys["trials"]["flows"]
    assert [f[3] for f in flows if f[0] == "b"] == ["ok", "ok"]
    first_app = next(i for i, f in enumerate(flows) if f[1] == "app_stun")
    assert all(f[3] == "lost" for f in flows[first_app:])


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_app_stun_dpi_without_residual_says_so(flavor: str) -> None:
    net = call_world()
    net.censor.apply("app_stun_dpi", flavor=flavor)
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert methods == ["app_stun_dpi"]
    assert keys["residual_blocking"] is False and keys["residual_kinds"] == []


async def test_confirmation_inside_the_residual_block_keeps_app_stun_dpi() -> None:
    """The confirmation pass runs while the main pass's residual block holds: alone, its
    trials look like a blocked port (nothing passes there, the baseline does); with the
    main pass's keys it stays app_stun_dpi and keeps both passes' evidence."""
    net = call_world()
    net.censor.apply("app_stun_dpi", flavor="whatsapp", residual_s=60)
    ep = Endpoint(service="svc", function="calls", check="differential", port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR)
    main = await differential.run(ep, context(net, cfg))
    assert main["outcome"] == "app_stun_dpi" and main["residual_blocking"] is True
    alone = await differential.run(ep, context(net, cfg))
    assert alone["outcome"] == "udp_blocked"  # what a pass without the main pass's keys sees
    ctx = context(net, cfg)
    ctx.main_pass = json.loads(json.dumps(main))
    confirm = await differential.run(ep, ctx)
    assert confirm["outcome"] == "app_stun_dpi" and differential.methods(confirm) == [
        "app_stun_dpi"]
    assert confirm["residual_blocking"] is True
    assert confirm["main_pass"]["trials"]["flows"] == ctx.main_pass["trials"]["flows"]
    assert not any(f[3] == "ok" for f in confirm["trials"]["flows"])


async def test_confirmation_excuses_nothing_but_the_main_pass_app_stun_dpi() -> None:
    """Only a main pass that saw plain STUN pass before its app probe and the app's fail
    explains a blocked port later: a main pass that found plain STUN blocked (stun_dpi)
    does not, and a confirmation that finds the whole port dropped says udp_blocked."""
    net = call_world()
    ep = Endpoint(service="svc", function="calls", check="differential", port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR)
    net.censor.apply("stun_dpi")
    main = await differential.run(ep, context(net, cfg))
    assert main["outcome"] == "stun_dpi"
    net.censor.apply("drop_udp_ports", ports=[CALL_PORT])
    ctx = context(net, cfg)
    ctx.main_pass = json.loads(json.dumps(main))
    confirm = await differential.run(ep, ctx)
    assert confirm["outcome"] == "udp_blocked" and confirm["main_pass"] is None


async def test_confirmation_after_app_stun_dpi_without_residual_in_the_main_pass() -> None:
    """Blocking the run's app probes set off after the main pass's own after-phase (nDPI
    labels later STUN to the port with the app it saw there): plain STUN passed before the
    main pass's app probe and fails now, the app's never passed: app_stun_dpi, residual."""
    net = call_world()
    ep = Endpoint(service="svc", function="calls", check="differential", port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR)
    net.censor.apply("app_stun_dpi", flavor="whatsapp")
    main = await differential.run(ep, context(net, cfg))
    assert main["outcome"] == "app_stun_dpi" and main["residual_kinds"] == []
    net.censor.apply("stun_dpi", addresses=[REFLECTOR], ports=[CALL_PORT])
    ctx = context(net, cfg)
    ctx.main_pass = json.loads(json.dumps(main))
    confirm = await differential.run(ep, ctx)
    assert confirm["outcome"] == "app_stun_dpi" and confirm["residual_kinds"] == ["stun"]
    assert confirm["main_pass"]["outcome"] == "app_stun_dpi"
    alone = await differential.run(ep, context(net, cfg))
    assert alone["outcome"] == "stun_dpi"  # what the pass would say without the main pass


def test_runner_gives_the_confirmation_pass_the_main_pass_keys() -> None:
    """Through the runner: main pass app_stun_dpi with residual blocking, confirmation
    inside the block, and the calls verdict app_stun_dpi, never udp_blocked."""
    net = call_world(names={"c.test": ["198.18.9.9"]})
    net.censor.apply("app_stun_dpi", flavor="whatsapp", residual_s=60)
    ep = Endpoint(service="svc", function="calls", check="differential", port=CALL_PORT,
                  options={"flavor": "whatsapp"}, source="test:1")
    control = Endpoint(service="controls", function="control", check="tcp", host="c.test",
                       port=443, expected_networks=T.FAKE_NETWORKS, source="test:2")
    out: list[dict] = []
    cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR)
    plan = Plan((Service("svc", "svc", (ep,)), Service("controls", "controls", (control,))))
    asyncio.run(run_plan(plan, cfg, net, INFO, out.append))
    passes = {r["pass"]: r["test_keys"] for r in out if r["service"] == "svc"}
    assert passes["main"]["residual_blocking"] is True
    assert passes["confirmation"]["outcome"] == "app_stun_dpi"
    assert passes["confirmation"]["main_pass"]["outcome"] == "app_stun_dpi"
    calls = summarize(out)["services"]["svc"]["functions"]["calls"]
    assert calls["status"] == "blocked" and calls["methods"] == ["app_stun_dpi"]


# --- ICMP errors by their sender -----------------------------------------------------------

async def test_differential_icmp_reject_from_a_router_is_udp_blocked() -> None:
    net = call_world()
    net.censor.apply("reject_udp_ports", ports=[CALL_PORT])
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": "viber"}, timeout_s=3.0)
    assert methods == ["udp_blocked"] and keys["icmp_from"] == T.CENSOR_ROUTER
    assert keys["trials"]["icmp"] == failures.PORT_UNREACHABLE


async def test_differential_icmp_from_the_reflector_is_nothing_listens() -> None:
    net = call_world(udp={(REFLECTOR, CALL_PORT): T.icmp_port_unreachable})
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": "viber"}, timeout_s=3.0)
    assert keys["outcome"] == "nothing_listens" and methods == []
    assert keys["failure"] == failures.NOT_APPLICABLE and "icmp_from" not in keys
    assert keys["trials"]["icmp_from"] == REFLECTOR


def test_app_probes_wait_for_the_other_checks_neutral_traffic_on_the_port() -> None:
    """A residual block the differential's app probe triggers would cut the udp echo and
    the stream on the same reflector port (a blocked or throttled port, wrongly): the app
    phase waits until they are over, so both stay ok while the differential still finds
    app_stun_dpi with residual blocking."""
    net = call_world(names={"c.test": ["198.18.9.9"]})
    net.censor.apply("app_stun_dpi", flavor="whatsapp", residual_s=60)
    eps = tuple(Endpoint(service="svc", function="calls", check=check, port=CALL_PORT,
                         options=options, source=f"test:{i}")
                for i, (check, options) in enumerate([
                    ("differential", {"flavor": "whatsapp"}), ("udp", {}), ("stream", {})]))
    control = Endpoint(service="controls", function="control", check="tcp", host="c.test",
                       port=443, expected_networks=T.FAKE_NETWORKS, source="test:9")
    out: list[dict] = []
    cfg = RunConfig(timeout_s=4.0, reflector=REFLECTOR, stream_seconds=1.5)
    plan = Plan((Service("svc", "svc", eps), Service("controls", "controls", (control,))))
    asyncio.run(run_plan(plan, cfg, net, INFO, out.append))
    main = {r["test_name"]: r["test_keys"] for r in out if r["pass"] == "main"}
    assert main["udp"]["outcome"] == "ok" and main["stream"]["outcome"] == "ok"
    assert main["differential"]["outcome"] == "app_stun_dpi"
    assert main["differential"]["residual_blocking"] is True
    assert main["differential"]["trials"]["waited_s"] >= 1.0  # the stream's time


def test_residual_blocking_set_off_by_another_app_is_not_this_apps_dpi() -> None:
    """WhatsApp's and Teams' differentials share reflector port 3478; the censor drops
    WhatsApp's STUN, then everything to the port (residual). Teams' own STUN is never
    reported blocked: it passed, or it went after WhatsApp's dropped probe
    (not_applicable, after_other_app)."""
    for seed in range(3):
        random.seed(seed)
        net = call_world(names={"c.test": ["198.18.9.9"]})
        net.censor.apply("app_stun_dpi", flavor="whatsapp", residual_s=60)
        eps = tuple(Endpoint(service=svc, function="calls", check="differential",
                             port=CALL_PORT, options={"flavor": flavor}, source=f"test:{svc}")
                    for svc, flavor in (("wa", "whatsapp"), ("teams", "teams")))
        control = Endpoint(service="controls", function="control", check="tcp",
                           host="c.test", port=443, expected_networks=T.FAKE_NETWORKS,
                           source="test:9")
        out: list[dict] = []
        cfg = RunConfig(timeout_s=3.0, reflector=REFLECTOR)
        plan = Plan((*(Service(e.service, e.service, (e,)) for e in eps),
                     Service("controls", "controls", (control,))))
        asyncio.run(run_plan(plan, cfg, net, INFO, out.append))
        calls = summarize(out)["services"]
        assert calls["wa"]["functions"]["calls"]["methods"] == ["app_stun_dpi"]
        teams = [r["test_keys"] for r in out if r["service"] == "teams"]
        assert all(k["outcome"] in ("ok", "after_other_app") for k in teams), teams
        assert "teams" not in calls or calls["teams"]["functions"]["calls"]["methods"] == []


def test_a_policer_the_stream_exhausts_is_not_app_dpi() -> None:
    """The throttled scenario's policer (a rate shared by every flow to the port) and a
    stream on the same port that exhausts it: the differential's app phase, after waiting
    for the stream as long as it may, meets a port that loses plain traffic as much as the
    app's. That is never app_stun_dpi (seen in the lab's throttled scenario: Viber calls
    read blocked); the before phase is sent again after the wait, and the differential is
    not_applicable (starved) or ok. The stream is throttled: starved all along, not cut by
    the app probes dropped at its end."""
    for seed in range(3):
        random.seed(seed)
        net = call_world(names={"c.test": ["198.18.9.9"]})
        net.censor.apply("throttle_udp_ports", ports=[CALL_PORT], kbytes_per_s=1)
        eps = tuple(Endpoint(service="svc", function="calls", check=check, port=CALL_PORT,
                             options=options, source=f"test:{i}")
                    for i, (check, options) in enumerate([
                        ("differential", {"flavor": "viber"}), ("stream", {})]))
        control = Endpoint(service="controls", function="control", check="tcp",
                           host="c.test", port=443, expected_networks=T.FAKE_NETWORKS,
                           source="test:9")
        out: list[dict] = []
        cfg = RunConfig(timeout_s=4.0, reflector=REFLECTOR, stream_seconds=3.0)
        plan = Plan((Service("svc", "svc", eps), Service("controls", "controls", (control,))))
        asyncio.run(run_plan(plan, cfg, net, INFO, out.append))
        stream = next(r["test_keys"] for r in out if r["test_name"] == "stream")
        # starved all along, not cut by the differential's dropped app probes
        assert stream["outcome"] == "throttled", stream["reasons"]
        diffs = [r["test_keys"] for r in out if r["test_name"] == "differential"]
        assert all(k["outcome"] in ("ok", "starved") for k in diffs), [
            (k["outcome"], k["trials"]["flows"]) for k in diffs]
        main = diffs[0]
        assert main["trials"]["waited_s"] > 0.3
        phases = [f[0] for f in main["trials"]["flows"]]
        assert phases[:4] == ["b", "b", "b", "b"]  # before the wait, and again after it
        services = summarize(out)["services"]
        assert "app_stun_dpi" not in services.get("svc", {}).get("functions", {}).get(
            "calls", {}).get("methods", []), [(r["test_name"], r["pass"],
                                               r["test_keys"].get("outcome")) for r in out]


# The flows of the lab's throttled scenario where Viber's differential read app_stun_dpi
# (main pass, then confirmation): the neutral kinds passed before a 2.2 s wait for the
# stream, then the policer the stream exhausted lost nearly everything.
THROTTLED_MAIN = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"],
                  ["m", "random", 3, "lost"], ["m", "app_stun", 4, "lost"],
                  ["m", "app_stun", 5, "lost"], ["m", "stun", 6, "lost"],
                  ["m", "app_stun", 7, "lost"], ["m", "random", 8, "lost"],
                  ["m", "stun", 9, "lost"], ["m", "stun", 10, "lost"],
                  ["m", "random", 11, "lost"], ["a", "stun", 12, "lost"],
                  ["a", "random", 13, "lost"]]
THROTTLED_CONFIRMATION = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"],
                          ["m", "random", 3, "lost"], ["m", "app_stun", 4, "lost"],
                          ["m", "random", 5, "lost"], ["m", "stun", 6, "lost"],
                          ["m", "stun", 7, "lost"], ["m", "stun", 8, "ok"],
                          ["m", "app_stun", 9, "lost"], ["m", "random", 10, "ok"],
                          ["m", "app_stun", 11, "lost"], ["a", "stun", 12, "lost"],
                          ["a", "random", 13, "lost"]]


def _keys(flows: list[list]) -> dict:
    return {"failure": None, "trials": recorded_trials(flows),
            "baseline": {"kinds": {"random": {"sent": 1, "answered": 1, "rtt_s": [0.01]}}},
            "main_pass": None}


@pytest.mark.parametrize("flows", [THROTTLED_MAIN, THROTTLED_CONFIRMATION])
def test_loss_that_began_before_the_app_probe_or_matches_it_is_not_app_dpi(flows) -> None:
    assert differential.outcome(_keys(flows)) == "starved"


def test_app_dpi_still_shows_beside_some_loss_and_as_residual_blocking() -> None:
    """The other side: the app's three probes lost while 5 of 6 neutral ones beside them
    passed (chance: 1/6 cubed), and the residual pattern (plain traffic passing right up to
    the app probe, nothing after)."""
    beside = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"], ["m", "app_stun", 3, "lost"],
              ["m", "random", 4, "ok"], ["m", "stun", 5, "lost"], ["m", "app_stun", 6, "lost"],
              ["m", "stun", 7, "ok"], ["m", "random", 8, "ok"], ["m", "app_stun", 9, "lost"],
              ["a", "stun", 10, "ok"], ["a", "random", 11, "ok"]]
    assert differential.outcome(_keys(beside)) == "app_stun_dpi"
    residual = [["b", "stun", 1, "ok"], ["b", "random", 2, "ok"], ["m", "stun", 3, "ok"],
                ["m", "app_stun", 4, "lost"], ["m", "random", 5, "lost"],
                ["m", "stun", 6, "lost"], ["m", "app_stun", 7, "lost"],
                ["a", "stun", 8, "lost"], ["a", "random", 9, "lost"]]
    assert differential.outcome(_keys(residual)) == "app_stun_dpi"
