"""The differential check (plain STUN, app STUN, random bytes over one flow) through the network
seam, in the fake world (the project's reflector logic answering) under the lab's censor
rules."""

from __future__ import annotations

import pytest

from probe import failures, reflector
from probe.lab.censor import APP_STUN
from probe.testing import CLIENT, FAKE_REFLECTOR, FakeNetwork
from tests.helpers.checks import CALL_PORT, call_world
from tests.helpers.checks import run_call_check as run_check

FLAVORS = ["whatsapp", "teams", "google", "viber"]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_differential_ok(flavor: str) -> None:
    net = call_world()
    keys, methods = await run_check("differential", net, host=None,
                                    options={"flavor": flavor}, timeout_s=6.0)
    assert keys["failure"] is None and keys["outcome"] == "ok" and methods == []
    kinds = keys["trials"]["kinds"]
    assert set(kinds) == {"stun", "app_stun", "random"}
    assert all(k["sent"] == 3 and k["answered"] == 3 for k in kinds.values())
    compared = [d for ip, port, d in net.udp_sent
                if port == CALL_PORT and not d.startswith(reflector.HELLO_PREFIX)]
    assert {len(d) for d in compared} == {keys["payload_bytes"]}  # same length, every kind
    # each carries a token of the cookie the fake reflector gave the probe's address
    assert len(compared) == 9 and all(FAKE_REFLECTOR.proven(d, CLIENT[0]) for d in compared)


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
