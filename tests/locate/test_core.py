"""The locate logic without a network: decoding what comes back, placing the censor from
per-hop outcomes, injection fingerprints, choosing the endpoints to locate from a run's
records, payloads, and the finding format (DESIGN.md "Locate")."""

from __future__ import annotations

from typing import Any

import pytest

from probe import stun
from probe.locate.core import (
    Finding,
    Location,
    Settings,
    Target,
    diverges,
    fingerprint,
    observed_method,
    random_bytes_like,
    stun_payload,
    trace,
)
from probe.locate.targets import blocked_targets
from probe.locate.ttl import Packet, ProbeResult, client_hello, decode
from probe.verdicts import summarize

CLIENT, SERVER = "198.18.1.2", "198.19.10.10"
ROUTERS = {1: "198.18.1.1", 2: "198.18.2.2", 3: "198.18.3.2"}


def te(hop: int, t: float = 0.0) -> Packet:
    return Packet(t=t, src=ROUTERS[hop], ip_ttl=64 - hop, ip_id=7, kind="time_exceeded",
                  quoted=(17, 40000, SERVER, 3478))


def reply(ttl: int = 61, ip_id: int = 0, kind: str = "udp", flags: str = "") -> Packet:
    return Packet(t=1.0, src=SERVER, ip_ttl=ttl, ip_id=ip_id, kind=kind, sport=3478,
                  dport=40000, flags=flags, payload=b"x" if kind == "udp" else b"")


# --- decoding --------------------------------------------------------------------------

def test_decode_time_exceeded_quotes_the_probe() -> None:
    from scapy.layers.inet import ICMP, IP, UDP, raw

    probe = IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=40000, dport=3478) / b"stun"
    icmp = IP(src=ROUTERS[1], dst=CLIENT, ttl=64, id=99) / ICMP(type=11, code=0) / raw(probe)
    packet = decode(raw(icmp), 5.0)
    assert packet is not None
    assert (packet.kind, packet.src, packet.ip_ttl, packet.ip_id) == \
        ("time_exceeded", ROUTERS[1], 64, 99)
    assert packet.quoted == (17, 40000, SERVER, 3478)


def test_decode_rst_and_garbage() -> None:
    from scapy.layers.inet import IP, TCP, raw

    rst = IP(src=SERVER, dst=CLIENT, ttl=63, id=1) / TCP(sport=443, dport=40000, flags="RA")
    packet = decode(raw(rst), 1.0)
    assert packet is not None and packet.kind == "tcp" and "R" in packet.flags
    assert packet.ip_ttl == 63 and packet.quoted is None
    assert decode(b"\x45\x00garbage", 1.0) is None
    echo_reply = raw(IP(src=SERVER, dst=CLIENT) / b"\x00\x00\x00\x00")
    assert decode(echo_reply, 1.0) is None or decode(echo_reply, 1.0).kind != "time_exceeded"


def test_outcome_precedence() -> None:
    assert ProbeResult(1, []).outcome == "none"
    assert ProbeResult(1, [te(1)]).outcome == "time_exceeded"
    assert ProbeResult(2, [te(2), reply()]).outcome == "reply"
    assert ProbeResult(2, [reply(kind="tcp", flags="RA"), te(2)]).outcome == "rst"
    late, early = te(3, t=0.5), te(2, t=0.1)
    assert ProbeResult(2, [late, early]).time_exceeded_from == ROUTERS[2]


# --- placing the censor -----------------------------------------------------------------

class FakeProber:
    """Answers like a path of three routers and a server, with a censor at hop 2 that
    either drops the test after its own TTL check ("drop") or answers it as soon as it
    sees it ("inject"); "none" blocks nothing."""

    def __init__(self, censor: str) -> None:
        self.censor = censor
        self.t = Target("svc", "calls", "stun://x:3478", "udp", SERVER, 3478)
        self.sent: list[tuple[str, int]] = []

    def control(self, ttl: int) -> ProbeResult:
        self.sent.append(("control", ttl))
        return ProbeResult(ttl, [te(ttl)] if ttl <= 3 else [reply()])

    def test(self, ttl: int) -> ProbeResult:
        self.sent.append(("test", ttl))
        if self.censor == "drop" and ttl >= 3:
            return ProbeResult(ttl, [])
        if self.censor == "inject" and ttl >= 2:
            forged = reply(ttl=63, ip_id=1)  # and the router at this hop still answers
            return ProbeResult(ttl, [te(ttl), forged] if ttl <= 3 else [forged])
        return ProbeResult(ttl, [te(ttl)] if ttl <= 3 else [reply()])


def test_a_dropping_censor_is_the_last_router_that_answered_the_test() -> None:
    prober = FakeProber("drop")
    loc = trace(prober, Settings())  # type: ignore[arg-type]
    assert (loc.hop, loc.hop_address, loc.diverged_at, loc.test_outcome) == \
        (2, ROUTERS[2], 3, "none")
    assert prober.sent.count(("test", 3)) == 2  # a lost test is tried once more


def test_an_injecting_censor_is_the_hop_where_the_answer_came_from() -> None:
    loc = trace(FakeProber("inject"), Settings())  # type: ignore[arg-type]
    assert (loc.hop, loc.hop_address, loc.diverged_at, loc.test_outcome) == \
        (2, ROUTERS[2], 2, "reply")


def test_nothing_blocked_reaches_the_server_without_a_location() -> None:
    prober = FakeProber("none")
    loc = trace(prober, Settings())  # type: ignore[arg-type]
    assert loc.hop is None and loc.diverged_at is None
    assert len(loc.hops) == 4  # stopped at the server, not at max_hops


def test_a_silent_path_stops_early() -> None:
    class Silent(FakeProber):
        def control(self, ttl: int) -> ProbeResult:
            return ProbeResult(ttl, [])

        def test(self, ttl: int) -> ProbeResult:
            return ProbeResult(ttl, [])

    loc = trace(Silent("none"), Settings(silent_hops=3))  # type: ignore[arg-type]
    assert loc.hop is None and len(loc.hops) == 3


REFLECTOR = "198.19.0.7"


class FirstHopPastTheCensor(FakeProber):
    """The blocked server is the first hop past the censor (hop 3) and ignores random
    bytes; the censor (hop 2) drops the test. The reflector, also past the censor, echoes
    the control. Controls go to ``control_to``, as :class:`probe.locate.core.Prober`'s."""

    def __init__(self) -> None:
        super().__init__("drop")
        self.control_to = SERVER

    def control(self, ttl: int) -> ProbeResult:
        self.sent.append(("control", ttl))
        if self.control_to == REFLECTOR:
            return ProbeResult(ttl, [te(ttl)] if ttl <= 3 else [reply()])
        return ProbeResult(ttl, [te(ttl)] if ttl <= 2 else [])  # the server ignores it

    def test(self, ttl: int) -> ProbeResult:
        self.sent.append(("test", ttl))
        return ProbeResult(ttl, [te(ttl)] if ttl <= 2 else [])


def test_a_server_right_past_the_censor_is_located_with_the_reflector_as_control() -> None:
    alone = trace(FirstHopPastTheCensor(), Settings())  # type: ignore[arg-type]
    assert alone.hop is None  # the control to the server itself never answers past hop 2
    prober = FirstHopPastTheCensor()
    prober.control_to = REFLECTOR
    loc = trace(prober, Settings())  # type: ignore[arg-type]
    assert (loc.hop, loc.hop_address, loc.diverged_at) == (2, ROUTERS[2], 3)


def test_blocked_server_endpoints_get_the_reflector_as_control_address() -> None:
    records = [
        _rec("controls", "control", "tcp", "tcp://ctl.test:443", {"failure": None}),
        _rec("chatty", "dns", "dns", "dns://relay.test",
             {"failure": None, "hostname": "relay.test", "addresses": [SERVER]}),
        _rec("chatty", "messaging", "tcp", "tcp://chat.test:443", {"failure": None}),
        _rec("chatty", "calls", "stun", "stun://relay.test:3478",
             {"failure": "generic_timeout_error", "failed_operation": "stun_binding"}),
    ]
    (target,) = blocked_targets(records, None, None, reflector=REFLECTOR)
    assert (target.kind, target.address, target.control_address) == ("udp", SERVER, REFLECTOR)
    (plain,) = blocked_targets(records, None, None, reflector=None)
    assert plain.control_address is None


@pytest.mark.parametrize(("control", "test", "expected"), [
    ([te(2)], [], True),                         # dropped
    ([te(2)], [te(2), reply()], True),            # answered before the server
    ([te(2)], [te(2)], False),
    ([], [], False),                              # both silent: no evidence
    ([reply()], [reply()], False),
    ([reply()], [], True),
])
def test_diverges(control: list[Packet], test: list[Packet], expected: bool) -> None:
    assert diverges(ProbeResult(2, control), ProbeResult(2, test)) is expected


# --- fingerprints -----------------------------------------------------------------------

def test_fingerprint_flags_ttl_and_ip_id_that_the_server_never_sends() -> None:
    genuine = [reply(ttl=61, ip_id=0), reply(ttl=61, ip_id=0)]
    assert fingerprint([reply(ttl=61, ip_id=0)], genuine) == []
    assert fingerprint([reply(ttl=62, ip_id=0)], genuine) == []  # one hop of jitter is fine
    assert fingerprint([reply(ttl=63, ip_id=0)], genuine) == ["ip_ttl_mismatch"]
    assert fingerprint([reply(ttl=61, ip_id=1)], genuine) == ["ip_id_mismatch"]
    assert fingerprint([reply(ttl=63, ip_id=1)], []) == []  # no baseline, no claim


# --- which endpoints ---------------------------------------------------------------------

def _rec(service: str, function: str, test_name: str, inp: str, keys: dict[str, Any],
         pass_name: str = "main") -> dict[str, Any]:
    return {"service": service, "function": function, "test_name": test_name, "input": inp,
            "pass": pass_name, "pool": "any", "test_keys": keys}


def _run_records() -> list[dict[str, Any]]:
    ok = {"failure": None}
    refused = {"failure": "connection_refused", "failed_operation": "connect"}
    nx = {"failure": "dns_nxdomain_error", "hostname": "blocked.test", "addresses": []}
    return [
        _rec("controls", "control", "tcp", "tcp://ctl.test:443", ok),
        _rec("chatty", "dns", "dns", "dns://relay.test",
             {"failure": None, "hostname": "relay.test", "addresses": ["::1", SERVER]}),
        _rec("chatty", "dns", "dns", "dns://blocked.test", nx),
        _rec("chatty", "dns", "dns", "dns://blocked.test", nx, "confirmation"),
        _rec("chatty", "messaging", "tcp", "tcp://chat.test:443", ok),
        _rec("chatty", "calls", "tcp", "tcp://relay.test:3478", refused),
        _rec("chatty", "calls", "tcp", "tcp://relay.test:3478", refused, "confirmation"),
        _rec("chatty", "web", "tcp", "tcp://web.test:443", refused),
        _rec("chatty", "web", "tcp", "tcp://web.test:443", ok, "confirmation"),
    ]


def test_blocked_targets_are_the_failed_endpoints_with_the_scans_addresses() -> None:
    targets = blocked_targets(_run_records(), None, ("198.19.0.53", 53))
    by_input = {t.input: t for t in targets}
    assert set(by_input) == {"dns://blocked.test", "tcp://relay.test:3478"}
    dns_t, tcp_t = by_input["dns://blocked.test"], by_input["tcp://relay.test:3478"]
    assert (dns_t.kind, dns_t.address, dns_t.port, dns_t.host, dns_t.method) == \
        ("dns", "198.19.0.53", 53, "blocked.test", "dns_nxdomain")
    assert (tcp_t.kind, tcp_t.address, tcp_t.port, tcp_t.method) == \
        ("tcp", SERVER, 3478, "tcp_refused")  # the IPv4 address the scan resolved
    assert tcp_t.endpoint == f"tcp://{SERVER}:3478"


def test_no_targets_when_the_network_is_down() -> None:
    records = [r for r in _run_records() if r["function"] != "control"]
    records.insert(0, _rec("controls", "control", "tcp", "tcp://ctl.test:443",
                           {"failure": "generic_timeout_error"}))
    assert blocked_targets(records, None, ("198.19.0.53", 53)) == []


def test_locate_records_do_not_change_the_verdicts() -> None:
    records = _run_records()
    extra = _rec("chatty", "calls", "locate", "tcp://relay.test:3478",
                 {"failure": None, "hop": 2})
    assert summarize([*records, extra]) == summarize(records)


# --- findings and payloads ----------------------------------------------------------------

def test_finding_has_exactly_the_contract_keys() -> None:
    target = Target("whatsapp", "calls", "stun://s:3478", "udp", SERVER, 3478,
                    method="stun_dpi")
    loc = Location(hop=2, hop_address=ROUTERS[2], diverged_at=3, test_outcome="none")
    assert Finding(target, loc).to_json() == {
        "service": "whatsapp", "function": "calls", "endpoint": f"udp://{SERVER}:3478",
        "method": "stun_dpi", "hop": 2, "hop_address": ROUTERS[2], "injected": False}
    unlocated = Finding(Target("w", "calls", "x", "tcp", SERVER, 443), Location())
    assert unlocated.to_json()["hop"] is None and unlocated.to_json()["method"] is None


@pytest.mark.parametrize(("kind", "outcome", "flavor", "method"), [
    ("dns", "reply", None, "dns_injection"), ("dns", "none", None, "dns_timeout"),
    ("udp", "none", None, "stun_dpi"), ("udp", "none", "whatsapp", "app_stun_dpi"),
    ("tcp", "rst", None, "tcp_reset"), ("tcp", "none", None, "tcp_timeout"),
    ("tls", "rst", None, "tls_sni"),
])
def test_observed_method(kind: str, outcome: str, flavor: str | None, method: str) -> None:
    target = Target("s", "f", "x", kind, SERVER, 1, flavor=flavor)
    assert observed_method(target, Location(diverged_at=3, test_outcome=outcome)) == method
    assert observed_method(target, Location()) is None


def test_payloads() -> None:
    plain = stun.parse(stun_payload(None))
    assert plain.msg_type == stun.BINDING_REQUEST
    app = stun.parse(stun_payload("whatsapp"))
    assert app.msg_type == 0x0800 and app.has(0x4000)
    for payload in (stun_payload(None), stun_payload("whatsapp")):
        control = random_bytes_like(payload)
        assert len(control) == len(payload) and control != payload
        assert not stun.looks_like_stun(control)
    hello = client_hello("v.whatsapp.net")
    assert hello[0] == 0x16 and b"v.whatsapp.net" in hello
    assert b"v.whatsapp.net" not in client_hello("example.com")


def test_reflector_endpoints_are_probed_at_the_reflector() -> None:
    from probe.model import Endpoint, Plan, Service

    ep = Endpoint(service="chatty", function="calls", check="differential", port=3478,
                  options={"flavor": "whatsapp"})
    plan = Plan((Service("chatty", "Chatty", (ep,)),))
    assert ep.input == "differential://reflector:3478"
    records = [
        _rec("controls", "control", "tcp", "tcp://ctl.test:443", {"failure": None}),
        _rec("chatty", "messaging", "tcp", "tcp://chat.test:443", {"failure": None}),
        _rec("chatty", "calls", "differential", ep.input,
             {"failure": "generic_timeout_error", "failed_operation": "stun"}),
    ]
    (target,) = blocked_targets(records, plan, None, reflector="198.19.0.7")
    assert (target.kind, target.address, target.port, target.flavor) == \
        ("udp", "198.19.0.7", 3478, "whatsapp")
    assert target.at_reflector  # its probes will carry the reflector's cookie token
    (unknown,) = blocked_targets(records, plan, None, reflector=None)
    assert unknown.address == ""  # no reflector given: cannot be probed, hop stays null


def test_what_cannot_be_located_says_why() -> None:
    from probe.locate.core import cannot_locate

    stub = Target("s", "dns", "dns://x.test", "dns", "127.0.0.53", 53, "x.test")
    assert "--resolver" in (cannot_locate(stub) or "")
    assert cannot_locate(Target("s", "f", "x", "tcp", "", 443)) == "no address to probe"
    assert "quic://" in (cannot_locate(Target("s", "f", "quic://h:443", "unknown", SERVER,
                                              443)) or "")
    assert cannot_locate(Target("s", "f", "x", "tcp", SERVER, 443)) is None


@pytest.mark.parametrize("flavor", [None, "whatsapp"])
def test_probes_to_the_reflector_carry_its_token(flavor: str | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The reflector answers only a datagram carrying a token of its cookie: locate's test
    (STUN, in the transaction ID) and control (random bytes, at bytes 12-24) carry one,
    same lengths and app markers as without."""
    from probe import reflector
    from probe.lab.censor import APP_STUN
    from probe.locate import ttl as tp
    from probe.locate.core import Prober

    resp = reflector.Responder()
    cookie = resp.cookie(CLIENT)
    sent: list[bytes] = []
    monkeypatch.setattr(tp, "udp_probe", lambda obs, addr, port, payload, ttl, w:
                        sent.append(payload) or ProbeResult(ttl=ttl, packets=[]))
    target = Target("chatty", "calls", "differential://reflector:3478", "udp", SERVER, 3478,
                    flavor=flavor, at_reflector=True, reflector_cookie=cookie)
    prober = Prober(target, None, Settings())  # type: ignore[arg-type]
    prober.test(3)
    prober.control(3)
    test, control = sent
    assert len(test) == len(control) == len(stun_payload(flavor))
    assert resp.proven(test, CLIENT) and resp.proven(control, CLIENT)
    assert not stun.looks_like_stun(control)
    assert stun.parse(test).msg_type == stun.parse(stun_payload(flavor)).msg_type
    if flavor:
        assert APP_STUN[flavor].matches(test)


async def test_locate_gets_the_reflector_cookie_without_an_event_loop() -> None:
    """fetch_cookie (blocking) against a real reflector on loopback: the cookie for this
    address; None from a port where nothing answers."""
    import asyncio

    from probe import reflector
    from tests.helpers.coturn import free_udp_port

    port = free_udp_port("127.0.0.2")
    r = await reflector.start("127.0.0.2", [port])
    try:
        cookie = await asyncio.to_thread(reflector.fetch_cookie, "127.0.0.2",
                                         [free_udp_port("127.0.0.2"), port])
        assert cookie == r.responder.cookie("127.0.0.1")
        assert await asyncio.to_thread(reflector.fetch_cookie, "127.0.0.2",
                                       [free_udp_port("127.0.0.2")], 0.5) is None
    finally:
        r.close()
