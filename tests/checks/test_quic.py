"""The quic check (version negotiation ping) through the network
seam, against a fake UDP network whose responders are the real reflector logic and a
STUN/TURN server on our codec, and whose censor drops datagrams like the lab's rules."""

from __future__ import annotations

from probe import failures
from tests.helpers import callpath_fakes as F
from tests.helpers.callpath_fakes import SERVER
from tests.helpers.callpath_fakes import run_call_check as run_check


# --- quic --------------------------------------------------------------------------------
def version_negotiation(data: bytes) -> bytes:
    dlen = data[5]
    dcid = data[6:6 + dlen]
    slen = data[6 + dlen]
    scid = data[7 + dlen:7 + dlen + slen]
    return (bytes([0x80]) + b"\x00\x00\x00\x00" + bytes([len(scid)]) + scid
            + bytes([len(dcid)]) + dcid + (1).to_bytes(4, "big"))


async def test_quic_version_negotiation() -> None:
    net = F.FakeCallNet(hosts={SERVER: version_negotiation})
    keys, methods = await run_check("quic", net, port=443, reflector=None)
    assert methods == []
    assert keys["failure"] is None and keys["quic_ping"]["supported_versions"] == ["0x00000001"]
    assert all(len(d) == 1200 for _, _, d in net.sent)


async def test_quic_echo_is_unexpected_and_silence_is_timeout() -> None:
    keys, methods = await run_check("quic", F.FakeCallNet(hosts={SERVER: lambda d: d}),
                                    port=443, reflector=None)
    assert keys["failure"] == failures.QUIC_UNEXPECTED_REPLY and methods == []
    keys, methods = await run_check("quic", F.FakeCallNet(), port=443, reflector=None)
    assert keys["failure"] == failures.GENERIC_TIMEOUT and methods == ["udp_blocked"]
