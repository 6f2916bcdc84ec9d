"""The fake network (probe.testing) speaks the lab's censor rules: every rule of
probe.lab.censor.RULES is either modelled, with the lab's selection keys and parameters,
or refused by name; app_stun_dpi drops exactly what the lab's definition of each flavour
marks (probe.lab.censor.APP_STUN), and nothing else."""

from __future__ import annotations

import asyncio

import pytest

from probe import reflector, stun
from probe.checks._payloads import plain_stun, random_bytes
from probe.checks._reflector import ReflectorCookie
from probe.lab.censor import APP_STUN, RULES
from probe.testing import CLIENT, FAKE_REFLECTOR, NOT_MODELLED, FakeNetwork, reflector_responder

SELECTION = {"addresses": {"addresses": ["198.18.1.1"]}, "hosts": {"hosts": ["a.test"]},
             "": {}}


def test_every_lab_rule_is_modelled_or_refused() -> None:
    assert set(NOT_MODELLED) < set(RULES)
    for rule, spec in RULES.items():
        net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
        if rule in NOT_MODELLED:
            with pytest.raises(ValueError, match="does not model"):
                net.censor.apply(rule, **SELECTION[spec.needs])  # type: ignore[arg-type]
        else:
            net.censor.apply(rule, **SELECTION[spec.needs])  # type: ignore[arg-type]
            assert [a.rule for a in net.censor.applied] == [rule]


def test_hosts_select_their_addresses_as_in_the_lab() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1", "2001:db8::1"]})
    sel = net.censor.apply("drop_endpoint", hosts=["A.test."], ports=[443])
    assert (sel.hosts, sel.addresses, sel.ports) == (["a.test"], ["198.18.1.1", "2001:db8::1"],
                                                     [443])


@pytest.mark.parametrize(("rule", "kw", "error"), [
    ("no_such_rule", {}, "unknown rule"),
    ("drop_endpoint", {}, "needs hosts or addresses"),
    ("drop_endpoint", {"hosts": ["unknown.test"]}, "needs hosts or addresses"),
    ("dns_nxdomain", {"addresses": ["198.18.1.1"]}, "needs hosts"),
    ("app_stun_dpi", {"flavor": "telegram"}, "bad flavor"),
    ("drop_endpoint", {"addresses": ["198.18.1.1"], "proto": "sctp"}, "bad proto"),
    ("random_loss", {"percent": "10"}, "bad percent"),
    ("stun_dpi", {"flavor": "whatsapp"}, "takes no 'flavor'"),
    ("random_loss", {"ports": [3478]}, "selects no ports"),
])
def test_apply_refuses_what_the_lab_would_not_do(rule: str, kw: dict[str, object],
                                                 error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FakeNetwork().censor.apply(rule, **kw)  # type: ignore[arg-type]


def payloads() -> dict[str, bytes]:
    """Every app's STUN (the probe's own builder), plain STUN and random bytes."""
    made = {f"app:{f}": stun.app_flavoured(f).encode(fingerprint=True) for f in stun.FLAVORS}
    return {**made, "plain": plain_stun(64).encode(fingerprint=True),
            "random": random_bytes(64)}


def with_token(payload: bytes) -> bytes:
    """``payload`` carrying a token of the fake reflector's cookie for the probe, as the
    probe's checks send it (the reflector echoes nothing else)."""
    cookie = ReflectorCookie("198.18.9.7", FAKE_REFLECTOR.cookie(CLIENT[0]),
                             reflector.SLOT_S, 0.0, 3478)
    return cookie.with_cookie(payload, "stun" if stun.looks_like_stun(payload) else "random")


async def echoed(net: FakeNetwork, payload: bytes) -> bool:
    flow = await net.udp_open("198.18.9.7", 3478)
    await flow.send(with_token(payload))
    try:
        await flow.recv(0.01)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("flavor", list(APP_STUN))
async def test_app_stun_dpi_drops_its_flavour_only(flavor: str) -> None:
    net = FakeNetwork(udp_hosts={"198.18.9.7": reflector_responder})
    net.censor.apply("app_stun_dpi", flavor=flavor)
    passed = {name: await echoed(net, data) for name, data in payloads().items()}
    dropped = {name for name, ok in passed.items() if not ok}
    assert dropped == {f"app:{flavor}"}
    assert dropped == {name for name, data in payloads().items()
                       if APP_STUN[flavor].matches(data)}


async def test_stun_dpi_drops_every_stun_and_nothing_else() -> None:
    net = FakeNetwork(udp_hosts={"198.18.9.7": reflector_responder})
    net.censor.apply("stun_dpi", ports=[3478])
    passed = {name: await echoed(net, data) for name, data in payloads().items()}
    assert [name for name, ok in passed.items() if ok] == ["random"]
    other_port = await net.udp_open("198.18.9.7", 3479)
    await other_port.send(with_token(payloads()["plain"]))
    assert await asyncio.wait_for(other_port.recv(0.5), 1)  # not a selected port
