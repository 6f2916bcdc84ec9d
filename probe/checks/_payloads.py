"""The payloads the call-path checks compare: plain STUN, app-flavoured STUN and random
bytes of one length, so that only the content differs (techniques.md 4.5)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from probe import stun
from probe.reflector import RESERVED_PREFIXES

MIN_STUN_LEN = 48  # big enough for the reflector's Binding response to fit (40 bytes)


def pad_to(msg: stun.StunMessage, length: int) -> stun.StunMessage:
    """Append a SOFTWARE attribute so that the message (with FINGERPRINT) is ``length``
    bytes long; the app's markers stay where they were."""
    missing = length - len(msg.encode(fingerprint=True))
    if missing < 0 or missing % 4:
        raise ValueError(f"cannot pad a STUN message to {length} bytes")
    if missing:
        msg.add(stun.ATTR_SOFTWARE, b"." * (missing - 4))
    return msg


def plain_stun(length: int) -> stun.StunMessage:
    """A plain Binding request (SOFTWARE, FINGERPRINT) of exactly ``length`` bytes."""
    text_len = length - stun.HEADER_LEN - 4 - 8  # SOFTWARE header, FINGERPRINT
    if text_len < 1 or length % 4:
        raise ValueError(f"no plain STUN message of {length} bytes")
    software = (stun.SOFTWARE + " " + "." * 200)[:text_len]
    return stun.binding_request(software=software)


def random_bytes(length: int) -> bytes:
    """Random bytes that no STUN demultiplexer would take for STUN (no magic cookie) and
    that do not start as the reflector's cookie messages do."""
    while True:
        data = os.urandom(length)
        if ((length < 8 or data[4:8] != stun.MAGIC_COOKIE.to_bytes(4, "big"))
                and not data.startswith(RESERVED_PREFIXES)):
            return data


@dataclass
class Payload:
    data: bytes
    txid: bytes | None  # STUN payloads: answered by a Binding response or an echo

    def answered_by(self, reply: bytes) -> bool:
        if reply == self.data:
            return True
        if self.txid is None:
            return False
        try:
            msg = stun.parse(reply)
        except stun.StunParseError:
            return False
        return msg.transaction_id == self.txid and msg.msg_class == stun.CLASS_SUCCESS


PayloadMaker = Callable[[], Payload]


def stun_payload(msg: stun.StunMessage) -> Payload:
    return Payload(msg.encode(fingerprint=True), msg.transaction_id)


def differential_makers(flavor: str | None) -> tuple[dict[str, PayloadMaker], int]:
    """Payload makers for plain STUN, app STUN (if ``flavor``) and random bytes, all of
    one length, so that only the content differs."""
    length = MIN_STUN_LEN
    if flavor:
        length = max(length, len(stun.app_flavoured(flavor).encode(fingerprint=True)))
    makers: dict[str, PayloadMaker] = {
        "stun": lambda: stun_payload(plain_stun(length)),
        "random": lambda: Payload(random_bytes(length), None),
    }
    if flavor:
        makers["app_stun"] = lambda: stun_payload(pad_to(stun.app_flavoured(flavor), length))
    return makers, length
