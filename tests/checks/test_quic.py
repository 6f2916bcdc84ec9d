"""The quic check (version negotiation ping) through the network seam, in the fake world."""

from __future__ import annotations

from probe import failures
from probe.testing import FakeNetwork
from tests.helpers.checks import SERVER
from tests.helpers.checks import run_call_check as run_check


def version_negotiation(data: bytes) -> bytes:
    dlen = data[5]
    dcid = data[6:6 + dlen]
    slen = data[6 + dlen]
    scid = data[7 + dlen:7 + dlen + slen]
    return (bytes([0x80]) + b"\x00\x00\x00\x00" + bytes([len(scid)]) + scid
            + bytes([len(dcid)]) + dcid + (1).to_bytes(4, "big"))


async def test_quic_version_negotiation() -> None:
    net = FakeNetwork(udp_hosts={SERVER: version_negotiation})
    keys, methods = await run_check("quic", net, port=443, reflector=None)
    assert methods == []
    assert keys["failure"] is None and keys["quic_ping"]["supported_versions"] == ["0x00000001"]
    assert net.udp_sent and all(len(d) == 1200 for _, _, d in net.udp_sent)


async def test_quic_echo_is_unexpected_and_silence_is_timeout() -> None:
    keys, methods = await run_check("quic", FakeNetwork(udp_hosts={SERVER: lambda d: d}),
                                    port=443, reflector=None)
    assert keys["failure"] == failures.QUIC_UNEXPECTED_REPLY and methods == []
    keys, methods = await run_check("quic", FakeNetwork(), port=443, reflector=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]
