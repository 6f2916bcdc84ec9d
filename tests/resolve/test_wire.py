"""DNS on the wire: late duplicate replies (Hold-On injection detection), through the
fake seam and real sockets on loopback."""

from __future__ import annotations

from probe import failures
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.model import RunConfig
from probe.net import RealNetwork
from probe.testing import FakeNetwork
from tests.helpers.checks import resolving_check as check
from tests.helpers.dnsserver import LoopbackDnsServer, answer

LOOPBACK = ("127.0.0.0/8",)


async def test_late_differing_reply_is_injection() -> None:
    net = FakeNetwork(names={"a.test": ["198.18.1.1"]})
    net.censor.apply("dns_injection", hosts=["a.test"], answer="198.18.9.9")
    keys = await check(net, "a.test")
    assert keys["failure"] == failures.DNS_INJECTED
    assert dns_check.methods(keys) == ["dns_injection"]
    a = keys["queries"][0]
    assert a["addresses"] == ["198.18.9.9"]  # the forged reply came first
    assert a["late_replies"][0]["addresses"] == ["198.18.1.1"]
    assert keys["addresses"] == [] and keys["answered_addresses"] == ["198.18.9.9"]
    tcp = await check(net, "a.test", name="tcp")
    assert tcp_check.methods(tcp) == ["dns_injection"]


async def test_loopback_duplicates_same_answer_is_not_injection() -> None:
    def handle(request):
        return [answer(request, "127.0.0.1"), answer(request, "127.0.0.1")]

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=2.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg)
    assert keys["failure"] is None
    assert len(keys["queries"][0]["late_replies"]) == 1


async def test_loopback_injected_reply_then_real_one() -> None:
    def handle(request):
        return [answer(request, "127.0.0.66"), answer(request, "127.0.0.1")]

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
        return [answer(request, "127.0.0.2"), answer(request, "127.0.0.1")]

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=3.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg, budget=3.0)
    a = keys["queries"][0]
    assert a["attempts"] == 2 and a["late_replies"]
    assert keys["failure"] is None  # two transmissions may get two different answers


async def test_a_flood_of_duplicates_cannot_hide_the_real_answer() -> None:
    """An injector floods copies of its forged reply around the real one: the record keeps
    only a few late replies, yet the differing one is judged as it arrives."""
    from probe.results import KEEP_EVENTS

    def handle(request):
        forged = answer(request, "127.0.0.66")
        return [forged] * 20 + [answer(request, "127.0.0.1")] + [forged] * 20

    with LoopbackDnsServer(handle) as srv:
        cfg = RunConfig(timeout_s=4.0, resolver=srv.resolver)
        keys = await check(RealNetwork(), "a.test", LOOPBACK, cfg, budget=4.0)
    a = keys["queries"][0]
    assert keys["failure"] == failures.DNS_INJECTED
    assert a["injected_first"]["addresses"] == ["127.0.0.66"]
    assert len(a["late_replies"]) == KEEP_EVENTS
    assert a["late_replies_total"] > KEEP_EVENTS
    assert all(r["addresses"] == ["127.0.0.66"] for r in a["late_replies"])  # not kept
