"""DNS tampering: bogon answers, late duplicate replies (injection), the injection probe
and the DNS-over-HTTPS control, through the fake seam and real sockets on loopback.

Public-looking addresses below appear only in FakeNetwork tables (nothing is sent)."""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import UTC, datetime

import dns.message
import dns.rrset
import pytest

from probe import failures
from probe.checks import CheckContext
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.checks.dns import HostResolver
from probe.checks.dns_tampering import injection_probe, is_bogon, probe_target
from probe.model import Endpoint, Plan, RunConfig, Service
from probe.net import RealNetwork
from probe.runner import RunInfo, run_plan
from probe.testing import FAKE_NETWORKS, FakeNetwork
from tests.dnsserver import LoopbackDnsServer

LOOPBACK = ("127.0.0.0/8",)
DOH = "https://doh.test/dns-query"


async def check(net, host: str, expected: tuple[str, ...] = FAKE_NETWORKS,
                cfg: RunConfig | None = None, budget: float = 2.0,
                name: str = "dns") -> dict:
    cfg = cfg or RunConfig(timeout_s=budget)
    ep = Endpoint(service="s", function="dns" if name == "dns" else "messaging", check=name,
                  host=host, port=None if name == "dns" else 443, expected_networks=expected)
    resolver = HostResolver(net, cfg, expected={host: expected})
    ctx = CheckContext(cfg=cfg, net=net, resolver=resolver,
                       deadline=asyncio.get_running_loop().time() + budget)
    module = dns_check if name == "dns" else tcp_check
    return await module.run(ep, ctx)


def test_bogon_list_follows_ooni_and_expected_networks_exempt() -> None:
    for bogon in ("10.10.34.35", "127.0.0.1", "198.19.10.10", "192.168.1.1", "0.0.0.0",
                  "169.254.1.1", "100.64.0.1", "224.0.0.1", "::1", "fe80::1", "fd00::1",
                  "2001:db8::1"):
        assert is_bogon(bogon), bogon
    for public in ("157.240.1.1", "2a03:2880:f000::1", "31.13.64.1"):
        assert not is_bogon(public), public
    # The lab's servers sit in 198.19.0.0/16: a bogon, unless the target expects it there.
    assert not is_bogon("198.19.10.10", ["198.19.10.0/24"])
    assert is_bogon("198.18.200.200", ["198.19.10.0/24"])


async def test_bogon_answer_fails_the_lookup_for_every_check() -> None:
    net = FakeNetwork(names={"a.test": ["10.10.34.35"]})
    keys = await check(net, "a.test")
    assert keys["failure"] == failures.DNS_BOGON
    assert keys["bogon_answers"] == ["10.10.34.35"] and keys["addresses"] == []
    assert dns_check.methods(keys) == ["dns_bogon"]
    assert keys["injection_probe"]["target"] is None  # never a probe to a forged address
    tcp = await check(net, "a.test", name="tcp")
    assert (tcp["failure"], tcp["failed_operation"]) == (failures.DNS_BOGON, "resolve")
    assert tcp_check.methods(tcp) == ["dns_bogon"]
    assert net.connects == []  # nothing sent to the bogon


async def test_answer_inside_expected_networks_is_no_bogon() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    keys = await check(net, "a.test")
    assert keys["failure"] is None and dns_check.methods(keys) == []
    assert keys["tampering"] == [] and keys["suspicious_answers"] == []
    # The injection probe went to the host's own address and met "nothing listens".
    probe = keys["injection_probe"]
    assert (probe["target"], probe["injected"], probe["ended_by"]) == (
        "198.18.1.1:53", False, "icmp_error")


async def test_late_differing_reply_is_injection() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]}, dns_forged={"a.test": ["198.18.9.9"]})
    keys = await check(net, "a.test")
    assert keys["failure"] == failures.DNS_INJECTED
    assert dns_check.methods(keys) == ["dns_injection"]
    a = keys["queries"][0]
    assert a["addresses"] == ["198.18.9.9"]  # the forged reply came first
    assert a["late_replies"][0]["addresses"] == ["198.18.1.1"]
    assert keys["addresses"] == [] and keys["answered_addresses"] == ["198.18.9.9"]
    tcp = await check(net, "a.test", name="tcp")
    assert tcp_check.methods(tcp) == ["dns_injection"]


def _answer(request: dns.message.Message, address: str) -> dns.message.Message:
    reply = dns.message.make_response(request)
    name = request.question[0].name
    if request.question[0].rdtype == 1:
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "A", address))
    return reply


async def test_loopback_duplicates_same_answer_is_not_injection() -> None:
    def handle(request):
        return [_answer(request, "127.0.0.1"), _answer(request, "127.0.0.1")]

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=2.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg)
    assert keys["failure"] is None
    assert len(keys["queries"][0]["late_replies"]) == 1


async def test_loopback_injected_reply_then_real_one() -> None:
    def handle(request):
        return [_answer(request, "127.0.0.66"), _answer(request, "127.0.0.1")]

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=2.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg)
    assert keys["failure"] == failures.DNS_INJECTED
    assert keys["queries"][0]["injected_first"]["addresses"] == ["127.0.0.66"]
    assert dns_check.methods(keys) == ["dns_injection"]


async def test_loopback_differing_replies_after_a_retransmission_are_not_injection() -> None:
    seen: list[int] = []

    def handle(request):
        seen.append(request.id)
        if len(seen) == 1:
            return None  # the first query is lost: the probe sends it again
        return [_answer(request, "127.0.0.2"), _answer(request, "127.0.0.1")]

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=3.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg, budget=3.0)
    a = keys["queries"][0]
    assert a["attempts"] == 2 and a["late_replies"]
    assert keys["failure"] is None  # two transmissions may get two different answers


async def test_injection_probe_through_fakes() -> None:
    loop = asyncio.get_running_loop()
    net = FakeNetwork(dns_forged={"a.test": ["198.18.9.9"]},
                      rules={("198.18.1.2", 53): "timeout"})
    hit = await injection_probe(net, "198.18.1.1", "a.test", loop.time() + 2)
    assert hit["injected"] and hit["replies"][0]["addresses"] == ["198.18.9.9"]
    clean = await injection_probe(net, "198.18.1.1", "b.test", loop.time() + 2)
    assert (clean["injected"], clean["ended_by"], clean["failure"]) == (
        False, "icmp_error", failures.CONNECTION_REFUSED)
    silent = await injection_probe(net, "198.18.1.2", "b.test", loop.time() + 2, wait_s=0.2)
    assert (silent["injected"], silent["ended_by"]) == (False, "window")
    assert silent["t"] >= 0.2


async def test_injection_probe_on_loopback_real_sockets() -> None:
    injector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    injector.bind(("127.0.0.1", 0))
    injector.settimeout(3)
    port = injector.getsockname()[1]

    def forge() -> None:
        data, peer = injector.recvfrom(4096)
        injector.sendto(_answer(dns.message.from_wire(data), "127.0.0.66").to_wire(), peer)

    thread = threading.Thread(target=forge, daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()
    hit = await injection_probe(RealNetwork(), "127.0.0.1", "a.test", loop.time() + 2,
                                wait_s=0.5, port=port)
    thread.join(2)
    injector.close()
    assert hit["injected"] and hit["replies"][0]["addresses"] == ["127.0.0.66"]
    # Now nothing listens on that port: the kernel's ICMP port unreachable ends the wait.
    clean = await injection_probe(RealNetwork(), "127.0.0.1", "a.test", loop.time() + 2,
                                  wait_s=1.5, port=port)
    assert (clean["injected"], clean["ended_by"]) == (False, "icmp_error")
    assert clean["t"] < 1.0


def test_probe_target_never_a_bogon() -> None:
    assert probe_target(["10.10.34.35"], ["198.19.10.0/24"]) is None
    assert probe_target(["2001:db8::1", "198.19.10.5"], ["198.19.10.0/24"]) == "198.19.10.5"
    assert probe_target(["157.240.1.1"], []) == "157.240.1.1"


@pytest.mark.parametrize(("control", "failure", "methods"), [
    (["157.240.1.1"], failures.DNS_UNEXPECTED_NETWORK, ["dns_injection"]),  # disagrees
    (["1.2.3.4"], None, []),  # the vendor moved: the control sees the same address
])
async def test_answer_outside_expected_networks_needs_the_control(
        control: list[str], failure: str | None, methods: list[str]) -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]}, doh_names={"a.test": control})
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await check(net, "a.test", ("157.240.0.0/16",), cfg)
    assert keys["suspicious_answers"] == ["1.2.3.4"]
    assert keys["control"]["addresses"] == control
    assert keys["control"]["queries"][0]["engine"] == "doh"
    assert keys["failure"] == failure
    assert dns_check.methods(keys) == methods


async def test_suspicious_answer_without_a_control_is_only_recorded() -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]})
    keys = await check(net, "a.test", ("157.240.0.0/16",))
    assert keys["failure"] is None and keys["suspicious_answers"] == ["1.2.3.4"]
    assert keys["control"] is None and dns_check.methods(keys) == []


async def test_unreachable_control_is_recorded_not_taken_as_evidence() -> None:
    net = FakeNetwork(names={"a.test": ["1.2.3.4"]}, rules={("doh.test", 443): "reset"})
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await check(net, "a.test", ("157.240.0.0/16",), cfg)
    assert keys["control"]["failure"] == failures.CONNECTION_RESET
    assert keys["failure"] is None and dns_check.methods(keys) == []


async def test_control_answers_a_failed_lookup_too() -> None:
    net = FakeNetwork(names={}, doh_names={"a.test": ["157.240.1.1"]})
    cfg = RunConfig(timeout_s=2.0, doh_url=DOH)
    keys = await check(net, "a.test", ("157.240.0.0/16",), cfg)
    assert keys["failure"] == failures.DNS_NXDOMAIN
    assert keys["control"]["addresses"] == ["157.240.1.1"]
    assert dns_check.methods(keys) == ["dns_nxdomain"]


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
