"""The nDPI censor inline in the lab: a real NFQUEUE in the censor namespace, real nDPI, real
datagrams from the client namespace to the lab's echo host (which answers STUN and echoes
the rest). Direct socket checks (probe.lab.sockcheck), independent of the probe's checks."""

from __future__ import annotations

import pytest

from probe.lab import addresses as A
from probe.lab.censor import Selection
from probe.lab.dpi.rule import decisions, ndpi_block
from probe.lab.lab import Lab

pytestmark = pytest.mark.lab


def test_ndpi_censor_drops_the_listed_app_and_passes_the_rest(lab: Lab) -> None:
    log = ndpi_block(lab, Selection(), ["WhatsAppCall", "ViberVoip"])
    try:
        assert lab.check("stun", A.ECHO, 3478)["result"] == "ok"
        assert lab.check("stun", A.ECHO, 3478, "whatsapp")["result"] == "generic_timeout_error"
        assert lab.check("udp", A.ECHO, 3478)["result"] == "ok"
        # nDPI's STUN cache: plain STUN to the server port where WhatsApp was seen is now
        # labelled WhatsAppCall (dropped); on another port it is plain STUN.
        assert lab.check("stun", A.ECHO, 3478)["result"] == "generic_timeout_error"
        assert lab.check("stun", A.ECHO, 3479)["result"] == "ok"
        seen = decisions(log)
        drops = [d for d in seen if d["event"] == "drop"]
        assert [d["label"] for d in drops] == ["STUN.WhatsAppCall"] * 2
        assert all(d["server"] == f"{A.ECHO}:3478" for d in drops)
        # The plain Binding request was seen and labelled STUN; the reply direction went
        # through the censor too (the flow has packets both ways).
        labels = {d["label"] for d in seen if d["event"] == "label"}
        assert {"STUN.WhatsAppCall", "STUN"} <= labels
    finally:
        lab.stop(log.stem)


def test_ndpi_censor_residual_blocks_the_three_tuple(lab: Lab) -> None:
    log = ndpi_block(lab, Selection(), ["WhatsAppCall"], residual_s=30)
    try:
        assert lab.check("udp", A.ECHO, 3480)["result"] == "ok"  # before: random bytes pass
        assert lab.check("stun", A.ECHO, 3480, "whatsapp")["result"] == "generic_timeout_error"
        # after: random bytes on a fresh flow to the same server port are dropped ...
        assert lab.check("udp", A.ECHO, 3480)["result"] == "generic_timeout_error"
        # ... while another port of the same server still answers
        assert lab.check("udp", A.ECHO, 3481)["result"] == "ok"
        reasons = [d["reason"] for d in decisions(log) if d["event"] == "drop"]
        assert reasons == ["app", "residual"]
    finally:
        lab.stop(log.stem)


def test_ndpi_censor_passive_lets_the_first_packet_through(lab: Lab) -> None:
    """A tap: the first WhatsApp-flavoured request reaches the echo host and its answer comes
    back (the reply is already a later packet of the flow: dropped), so the client sees no
    answer, while the echo host did get the request."""
    log = ndpi_block(lab, Selection(), ["WhatsAppCall"], passive=True)
    try:
        assert lab.check("stun", A.ECHO, 3478, "whatsapp")["result"] == "generic_timeout_error"
        drops = [d for d in decisions(log) if d["event"] == "drop"]
        assert drops and drops[0]["first_dropped"] == "next"
        assert drops[0]["packets"] == 1  # decided on the first packet, which went through
    finally:
        lab.stop(log.stem)
