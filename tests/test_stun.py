"""The STUN codec (probe/stun.py): RFC 5769 vectors, strict parsing, non-standard
attributes, interop both ways with aioice's codec and with a real coturn on loopback,
and hypothesis properties (round trip; parse raises only StunParseError)."""

from __future__ import annotations

import socket
import struct

import pytest
from aioice import stun as aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe import stun
from tests.helpers.coturn import REALM, coturn

# RFC 5769 sections 2.2 and 2.3 (sample IPv4 and IPv6 Binding responses).
RFC5769_V4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
RFC5769_V6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf1"
    "1784c97c8292c275bfe3ed4180280004c8fb0b4c"
)


def test_rfc5769_ipv4_response() -> None:
    msg = stun.parse(RFC5769_V4)
    assert msg.msg_type == stun.BINDING_SUCCESS
    assert msg.transaction_id.hex() == "b7e7a701bc34d686fa87dfae"
    assert msg.xor_mapped_address == ("192.0.2.1", 32853)
    assert msg.software == "test vector"
    assert msg.has_fingerprint


def test_rfc5769_ipv6_response() -> None:
    msg = stun.parse(RFC5769_V6)
    assert msg.xor_mapped_address == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)


def test_padding_is_ignored_and_encoded_as_zero() -> None:
    # The RFC 5769 vector pads SOFTWARE with a space; receivers must ignore padding.
    original = stun.parse(RFC5769_V4)
    rebuilt = stun.StunMessage(original.msg_type, original.transaction_id,
                               original.attributes[:-1]).encode(fingerprint=True)
    assert rebuilt[:35] == RFC5769_V4[:35] and rebuilt[35] == 0
    assert rebuilt[36:-8] == RFC5769_V4[36:-8]
    assert stun.parse(rebuilt).attributes[:-1] == original.attributes[:-1]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"\x40" + d[1:], "top two bits"),
        (lambda d: d[:4] + b"\x21\x12\xa4\x43" + d[8:], "magic cookie"),
        (lambda d: d[:2] + struct.pack("!H", 0x3d) + d[4:], "multiple of 4"),
        (lambda d: d[:2] + struct.pack("!H", 0x40) + d[4:], "does not match"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "FINGERPRINT does not match"),
        (lambda d: d[:19], "shorter than a STUN header"),
        (lambda d: d + b"\x00\x00\x00\x00", "does not match"),
    ],
)
def test_strict_parse_rejects(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(stun.StunParseError, match=reason):
        stun.parse(mutate(RFC5769_V4))


def _raw(msg_type: int, body: bytes, txid: bytes = b"\x01" * 12) -> bytes:
    return struct.pack("!HHI", msg_type, len(body), stun.MAGIC_COOKIE) + txid + body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (struct.pack("!HH", 0x8022, 8) + b"abcd", "overruns"),
        (struct.pack("!HH", 0x0020, 6) + b"\x00\x01\x00\x00\x00\x00\x00\x00", "family"),
        (struct.pack("!HH", 0x0020, 8) + b"\x00\x03" + b"\x00" * 6, "family"),
        (struct.pack("!HH", 0x0001, 20) + b"\x00\x01" + b"\x00" * 18, "family"),
        (struct.pack("!HH", 0x0009, 4) + b"\x00\x00\x07\x00", "ERROR-CODE"),
        (struct.pack("!HH", 0x0009, 4) + b"\x00\x00\x04\x64", "ERROR-CODE"),
        (struct.pack("!HH", 0x0014, 4) + b"\xff\xfe\xfd\xfc", "not UTF-8"),
        (struct.pack("!HH", 0x8022, 132) + b"a" * 132, "128 characters"),
        (struct.pack("!HH", 0x0008, 4) + b"\x00" * 4, "MESSAGE-INTEGRITY"),
    ],
)
def test_strict_attribute_checks(body: bytes, reason: str) -> None:
    with pytest.raises(stun.StunParseError, match=reason):
        stun.parse(_raw(stun.BINDING_SUCCESS, body))


def test_attribute_after_fingerprint_rejected() -> None:
    data = stun.binding_request().encode(fingerprint=True)
    extended = data + struct.pack("!HH", 0x8022, 0)
    extended = extended[:2] + struct.pack("!H", len(extended) - 20) + extended[4:]
    with pytest.raises(stun.StunParseError):
        stun.parse(extended)


def test_method_and_class_interleaving() -> None:
    assert stun.make_type(stun.METHOD_BINDING, stun.CLASS_SUCCESS) == 0x0101
    assert stun.make_type(stun.METHOD_ALLOCATE, stun.CLASS_ERROR) == 0x0113
    assert stun.make_type(0xFFF, stun.CLASS_ERROR) == 0x3FFF
    for method in (0x001, 0x003, 0x0A5, 0xFFF):
        assert stun.method_of(stun.make_type(method, stun.CLASS_INDICATION)) == method


def test_non_standard_types_and_attributes_round_trip() -> None:
    txid = stun.new_transaction_id()
    msg = stun.StunMessage(0x0800, txid)
    for t in (*stun.WHATSAPP_ATTRS, 0x8054, 0x8095, 0x8070, 0x8055, 0xFF03):
        msg.add(t, bytes([t & 0xFF]) * ((t % 7) + 1))
    msg.add(stun.ATTR_REALM, b"viber.com")
    parsed = stun.parse(msg.encode(fingerprint=True))
    assert parsed.msg_type == 0x0800
    assert parsed.attributes[:-1] == msg.attributes
    assert parsed.realm == "viber.com"


def test_error_code_round_trip() -> None:
    msg = stun.StunMessage(stun.ALLOCATE_ERROR)
    msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(401, "Unauthorized"))
    msg.add(stun.ATTR_NONCE, b"abc123")
    parsed = stun.parse(msg.encode())
    assert parsed.error_code == stun.ErrorCode(401, "Unauthorized")
    assert parsed.nonce == "abc123"


def test_looks_like_stun() -> None:
    assert stun.looks_like_stun(RFC5769_V4)
    assert not stun.looks_like_stun(b"\x80" + RFC5769_V4[1:])
    assert not stun.looks_like_stun(b"hello")


# --- interop with aioice's codec, both ways --------------------------------------
@pytest.mark.parametrize("mapped", [("198.51.100.7", 40000), ("2001:db8::1", 5)])
def test_aioice_parses_ours(mapped: tuple[str, int]) -> None:
    req = stun.binding_request()
    resp = stun.binding_success(req, mapped, software="ours")
    data = resp.encode(fingerprint=True)
    theirs = aio.parse_message(data)  # verifies FINGERPRINT itself
    assert theirs.message_method == aio.Method.BINDING
    assert theirs.message_class == aio.Class.RESPONSE
    assert theirs.transaction_id == req.transaction_id
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == mapped
    assert theirs.attributes["SOFTWARE"] == "ours"


@pytest.mark.parametrize("mapped", [("198.51.100.7", 40000), ("2001:db8::1", 5)])
def test_we_parse_aioice(mapped: tuple[str, int]) -> None:
    theirs = aio.Message(aio.Method.BINDING, aio.Class.RESPONSE)
    theirs.attributes["XOR-MAPPED-ADDRESS"] = mapped
    theirs.attributes["MAPPED-ADDRESS"] = mapped
    theirs.attributes["SOFTWARE"] = "aioice"
    theirs.attributes["ERROR-CODE"] = (438, "Stale Nonce")
    theirs.attributes["REALM"] = REALM
    theirs.attributes["NONCE"] = b"n0nce"
    theirs.add_message_integrity(b"key")  # also adds FINGERPRINT
    ours = stun.parse(bytes(theirs))
    assert ours.transaction_id == theirs.transaction_id
    assert ours.xor_mapped_address == mapped
    assert ours.mapped_address == mapped
    assert ours.software == "aioice"
    assert ours.error_code == stun.ErrorCode(438, "Stale Nonce")
    assert ours.realm == REALM and ours.nonce == "n0nce"
    assert ours.has_fingerprint


def test_aioice_request_and_our_request_agree() -> None:
    ours = stun.binding_request(software=None)
    theirs = aio.Message(aio.Method.BINDING, aio.Class.REQUEST,
                         transaction_id=ours.transaction_id)
    theirs.add_fingerprint()
    assert bytes(theirs) == ours.encode(fingerprint=True)


# --- interop with a real coturn on loopback ---------------------------------------
def _exchange(addr: tuple[str, int], data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.bind(("127.0.0.1", 0))
        s.sendto(data, addr)
        reply, _ = s.recvfrom(4096)
        return reply


def test_coturn_binding_and_unauthenticated_allocate() -> None:
    with coturn() as addr:
        req = stun.binding_request()
        reply = stun.parse(_exchange(addr, req.encode(fingerprint=True)))
        assert reply.msg_type == stun.BINDING_SUCCESS
        assert reply.transaction_id == req.transaction_id
        assert reply.has_fingerprint
        mapped = reply.xor_mapped_address
        assert mapped is not None and mapped.host == "127.0.0.1"

        alloc = stun.allocate_request()
        reply = stun.parse(_exchange(addr, alloc.encode(fingerprint=True)))
        assert reply.msg_type == stun.ALLOCATE_ERROR
        assert reply.error_code is not None and reply.error_code.code == 401
        assert reply.realm == REALM
        assert reply.nonce


# --- properties -------------------------------------------------------------------
_attr = st.tuples(st.integers(0, 0xFFFF).filter(
    lambda t: t not in stun._PLAIN_ADDRESS_ATTRS | stun._XOR_ADDRESS_ATTRS
    | stun._TEXT_ATTRS | {stun.ATTR_FINGERPRINT, stun.ATTR_ERROR_CODE,
                          stun.ATTR_MESSAGE_INTEGRITY, stun.ATTR_UNKNOWN_ATTRIBUTES,
                          stun.ATTR_LIFETIME, stun.ATTR_REQUESTED_TRANSPORT}),
    st.binary(max_size=64))
_msgs = st.builds(
    stun.StunMessage,
    st.integers(0, 0x3FFF),
    st.binary(min_size=12, max_size=12),
    st.lists(_attr, max_size=8),
)


@given(_msgs, st.booleans())
def test_round_trip(msg: stun.StunMessage, fingerprint: bool) -> None:
    data = msg.encode(fingerprint=fingerprint)
    parsed = stun.parse(data)
    assert parsed.msg_type == msg.msg_type
    assert parsed.transaction_id == msg.transaction_id
    assert (parsed.attributes[:-1] if fingerprint else parsed.attributes) == msg.attributes
    assert parsed.encode() == data


@given(st.ip_addresses(), st.integers(0, 0xFFFF), st.binary(min_size=12, max_size=12))
def test_xor_address_round_trip(ip, port: int, txid: bytes) -> None:  # type: ignore[no-untyped-def]
    msg = stun.StunMessage(stun.BINDING_SUCCESS, txid)
    msg.add(stun.ATTR_XOR_MAPPED_ADDRESS, stun.encode_xor_address(str(ip), port, txid))
    msg.add(stun.ATTR_MAPPED_ADDRESS, stun.encode_address(str(ip), port))
    parsed = stun.parse(msg.encode(fingerprint=True))
    assert parsed.xor_mapped_address == (str(ip), port)
    assert parsed.mapped_address == (str(ip), port)


def _parse_or_reject(data: bytes) -> None:
    try:
        stun.parse(data)
    except stun.StunParseError:
        pass


@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes_raises_only_its_error(data: bytes) -> None:
    _parse_or_reject(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_msgs, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       st.integers(0, 300), st.booleans())
def test_parse_mutated_messages_raises_only_its_error(
    msg: stun.StunMessage, flips: list[tuple[int, int]], cut: int, fix_length: bool
) -> None:
    data = bytearray(msg.encode(fingerprint=True))
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: max(0, len(data) - cut % 8)]
    if fix_length and len(data) >= 4:
        data[2:4] = struct.pack("!H", max(0, len(data) - 20) & 0xFFFF)
    _parse_or_reject(bytes(data))
