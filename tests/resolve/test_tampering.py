"""The injection probe (a query to an address that runs no DNS server) through the fake
seam and real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import dns.message
import dns.rrset

from probe import failures
from probe import testing as T
from probe.net import RealNetwork
from probe.resolve.tampering import injection_probe, probe_target
from probe.testing import FakeNetwork
from tests.helpers.dnsserver import answer


async def test_injection_probe_through_fakes() -> None:
    loop = asyncio.get_running_loop()
    # 198.18.1.1 runs no DNS server (ICMP port unreachable); 198.18.1.2 says nothing.
    net = FakeNetwork(udp={("198.18.1.2", 53): T.silent})
    net.censor.apply("dns_injection", hosts=["a.test"], answer="198.18.9.9")
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
        injector.sendto(answer(dns.message.from_wire(data), "127.0.0.66").to_wire(), peer)

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
