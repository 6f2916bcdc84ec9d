"""The real network seam's client SSL contexts: shared, yet never stale."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import pytest
import trustme

from probe.net import make_ssl_context


def test_contexts_are_shared_per_bundle_and_verify_mode(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    a = make_ssl_context(str(bundle))
    assert make_ssl_context(str(bundle)) is a
    assert make_ssl_context(None) is not a
    loose = make_ssl_context(str(bundle), verify=False)
    assert loose is not a and loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    assert a.verify_mode == ssl.CERT_REQUIRED and a.check_hostname
    h2 = make_ssl_context(str(bundle), alpn=("h2",))
    assert h2 is not a and make_ssl_context(str(bundle), alpn=["h2"]) is h2


def test_a_rewritten_bundle_gets_a_fresh_context(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    first, second = trustme.CA(), trustme.CA()
    first.cert_pem.write_to_path(str(bundle))
    old = make_ssl_context(str(bundle))
    second.cert_pem.write_to_path(str(bundle))
    st = bundle.stat()
    os.utime(bundle, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = make_ssl_context(str(bundle))
    assert new is not old
    def serials(ctx: ssl.SSLContext) -> set[str]:
        return {str(c["serialNumber"]) for c in ctx.get_ca_certs()}

    assert serials(new) != serials(old)  # the second CA, not the first


def test_a_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError):
        make_ssl_context(str(missing))


async def test_a_udp_flow_holds_a_bounded_number_of_unread_datagrams() -> None:
    """A censor spraying junk at a flow faster than its check reads fills a bounded queue;
    the rest is dropped, so the probe's memory does not grow with the flood."""
    import asyncio
    import socket

    from probe.net import UDP_QUEUE_DATAGRAMS, RealNetwork

    sprayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sprayer.bind(("127.0.0.1", 0))
    sprayer.setblocking(False)
    try:
        flow = await RealNetwork().udp_open("127.0.0.1", sprayer.getsockname()[1])
        sent = 0
        for _ in range(20):  # in rounds, letting the event loop take them in
            for _ in range(UDP_QUEUE_DATAGRAMS // 2):
                try:
                    sprayer.sendto(b"junk", flow.local_address)
                    sent += 1
                except BlockingIOError:
                    break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        queued = 0
        while True:
            try:
                assert await flow.recv(0.05) == b"junk"
            except TimeoutError:
                break
            queued += 1
        flow.close()
    finally:
        sprayer.close()
    assert sent >= 4 * UDP_QUEUE_DATAGRAMS
    assert 0 < queued <= UDP_QUEUE_DATAGRAMS


async def test_the_fake_flow_is_bounded_as_the_real_one() -> None:
    from probe import failures
    from probe.model import Endpoint
    from probe.net import UDP_QUEUE_DATAGRAMS
    from probe.results import KEEP_EVENTS
    from probe.testing import FAKE_NETWORKS, FakeNetwork
    from tests.helpers.checks import run_check

    net = FakeNetwork(names={"stun.test": ["198.18.2.10"]})
    net.udp[("198.18.2.10", 3478)] = lambda data: [b"junk" * 12] * 5000
    ep = Endpoint(service="s", function="calls", check="stun", host="stun.test", port=3478,
                  expected_networks=FAKE_NETWORKS)
    keys, _ = await run_check(net, ep, budget=1.0)
    tx = keys["stun_binding"]
    assert keys["failure"] == failures.STUN_MALFORMED_REPLY
    assert len(tx["received"]) == KEEP_EVENTS
    # Each send brings 5000 junk replies; the flow holds at most the queue's worth of each.
    assert KEEP_EVENTS < tx["received_total"] <= UDP_QUEUE_DATAGRAMS * len(tx["sends"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
async def test_an_icmp_error_names_its_sender_once_per_error() -> None:
    """A real UDP flow on loopback to a port where nothing listens: each ICMP port
    unreachable comes back once, as ConnectionRefusedError naming its sender (read from
    the socket's error queue; the socket's pending copy is dropped), and the flow sends
    again after it. A flow to a port that answers gets its datagram."""
    import socket

    from probe.net import RealNetwork, icmp_sender

    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    flow = await RealNetwork().udp_open("127.0.0.1", port)
    try:
        for _ in range(2):
            await flow.send(b"anyone?")
            with pytest.raises(ConnectionRefusedError) as err:
                await flow.recv(2.0)
            assert icmp_sender(err.value) == "127.0.0.1"
        with pytest.raises(TimeoutError):
            await flow.recv(0.2)  # no second copy of an error already reported
    finally:
        flow.close()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.setblocking(False)
    loop = asyncio.get_running_loop()
    loop.add_reader(echo.fileno(), lambda: echo.sendto(*echo.recvfrom(2048)))
    flow = await RealNetwork().udp_open("127.0.0.1", echo.getsockname()[1])
    try:
        await flow.send(b"hello")
        assert await flow.recv(2.0) == b"hello"
    finally:
        flow.close()
        loop.remove_reader(echo.fileno())
        echo.close()
