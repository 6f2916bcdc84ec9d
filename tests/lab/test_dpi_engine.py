"""The lab's nDPI engine (probe.lab.dpi): the real nDPI 5 from the nfstream wheel, fed packets
built here. No root needed: these are the engine's and the censor's decisions, without NFQUEUE.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, Ether
from scapy.utils import PcapNgWriter, wrpcap

from probe import stun
from probe.checks import _payloads
from probe.lab.dpi import ndpi, nfq, offline

CLIENT, SERVER, OTHER = "198.18.1.2", "198.19.0.7", "198.19.0.8"
APPS = {"whatsapp": "STUN.WhatsAppCall", "teams": "STUN.TeamsCall",
        "google": "STUN.GoogleCall", "viber": "STUN.ViberVoip"}


def packet(payload: bytes, sport: int, dport: int, src: str = CLIENT,
           dst: str = SERVER) -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def app_stun(flavor: str) -> bytes:
    makers, _ = _payloads.differential_makers(flavor)
    return makers["app_stun"]().data


def plain_stun() -> bytes:
    makers, _ = _payloads.differential_makers(None)
    return makers["stun"]().data


def random_payload() -> bytes:
    return _payloads.random_bytes(_payloads.MIN_STUN_LEN)


def test_revision_is_ndpi_5() -> None:
    assert ndpi.revision().startswith("5.")


@pytest.mark.parametrize("flavor", sorted(APPS))
def test_app_flavoured_stun_is_labelled_as_the_app(flavor: str) -> None:
    with ndpi.Classifier() as classifier:
        fed = classifier.feed(packet(app_stun(flavor), 40000, 3478), 1.0)
        assert fed is not None
        flow, _ = fed
        assert flow.label.name == APPS[flavor]
        assert flow.label.master == "STUN"


def test_neutral_kinds_are_not_labelled_as_an_app() -> None:
    with ndpi.Classifier() as classifier:
        stun_flow, _ = classifier.feed(packet(plain_stun(), 40001, 3478), 1.0) or (None, None)
        random_flow, _ = classifier.feed(packet(random_payload(), 40002, 7985), 1.0) \
            or (None, None)
        assert stun_flow is not None and random_flow is not None
        assert stun_flow.label.name == "STUN"
        assert not random_flow.label.known
        # nDPI's give-up guess goes by port only (7985 is not one of its ports).
        assert classifier.giveup(random_flow).guessed


def test_giveup_guesses_by_port() -> None:
    """Random bytes on UDP 5243 end up guessed as Viber: a censor acting on guesses would
    block the neutral control too, which is why ours does not."""
    with ndpi.Classifier() as classifier:
        fed = classifier.feed(packet(random_payload(), 40003, 5243), 1.0)
        assert fed is not None
        assert classifier.giveup(fed[0]).name == "Viber"


def test_ndpi_stun_cache_labels_later_stun_to_the_same_server_port() -> None:
    """nDPI remembers a STUN app by server address and port: plain STUN sent after a Viber
    flow to the same server port is labelled ViberVoip, on another port it is plain STUN.
    This is why the probe sends its neutral kinds before the app-flavoured one."""
    with ndpi.Classifier() as classifier:
        before = classifier.feed(packet(plain_stun(), 41000, 3478), 1.0)
        classifier.feed(packet(app_stun("viber"), 41001, 3478), 1.1)
        after = classifier.feed(packet(plain_stun(), 41002, 3478), 1.2)
        elsewhere = classifier.feed(packet(plain_stun(), 41003, 3479), 1.3)
        assert before and after and elsewhere
        assert before[0].label.name == "STUN"
        assert after[0].label.name == "STUN.ViberVoip"
        assert elsewhere[0].label.name == "STUN"


def test_both_directions_are_one_flow() -> None:
    with ndpi.Classifier() as classifier:
        classifier.feed(packet(app_stun("whatsapp"), 42000, 3478), 1.0)
        reply = stun.StunMessage(0x0101).encode(fingerprint=True)
        fed = classifier.feed(packet(reply, 3478, 42000, src=SERVER, dst=CLIENT), 1.01)
        assert fed is not None
        flow, p = fed
        assert len(classifier.flows) == 1
        assert flow.packets == 2 and not flow.from_client(p)
        assert flow.client == (CLIENT, 42000)


def test_parse_ipv4_skips_what_it_cannot_classify() -> None:
    assert ndpi.parse_ipv4(b"") is None
    assert ndpi.parse_ipv4(b"\x60" + bytes(39)) is None  # IPv6
    icmp = bytes(IP(src=CLIENT, dst=SERVER, proto=1) / b"\x08\x00\x00\x00")
    assert ndpi.parse_ipv4(icmp) is None
    fragment = bytes(IP(src=CLIENT, dst=SERVER, frag=10) / UDP(sport=1, dport=2))
    assert ndpi.parse_ipv4(fragment) is None
    assert ndpi.parse_ipv4(packet(b"x", 1, 2)) == ndpi.Packet(17, CLIENT, 1, SERVER, 2)


def test_idle_flows_are_forgotten() -> None:
    with ndpi.Classifier(idle_s=5.0) as classifier:
        classifier.feed(packet(b"abcd", 43000, 3478), 1.0)
        assert classifier.expire(3.0) == []
        assert len(classifier.expire(6.0)) == 1
        assert classifier.flows == {}


# --- the censor's decisions ------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        self.events.append(record)

    def kinds(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


def censor(**cfg: Any) -> tuple[nfq.DpiCensor, Recorder]:
    log = Recorder()
    data = {"block": ["WhatsAppCall", "ViberVoip"], **cfg}
    return nfq.DpiCensor(nfq.CensorConfig.from_json(data), log), log


def test_inline_censor_drops_listed_app_flows_both_ways() -> None:
    dpi, log = censor()
    try:
        assert not dpi.accept(packet(app_stun("whatsapp"), 44000, 3478), 1.0)
        # the reply direction and later packets of the flow are dropped too
        assert not dpi.accept(packet(b"x" * 20, 3478, 44000, src=SERVER, dst=CLIENT), 1.1)
        assert not dpi.accept(packet(random_payload(), 44000, 3478), 1.2)
        # another app (not listed), plain STUN on another port, random bytes: pass
        assert dpi.accept(packet(app_stun("teams"), 44001, 3479), 1.3)
        assert dpi.accept(packet(plain_stun(), 44002, 3480), 1.4)
        assert dpi.accept(packet(random_payload(), 44003, 3478), 1.5)
        drops = log.kinds("drop")
        assert [(d["label"], d["reason"]) for d in drops] == [("STUN.WhatsAppCall", "app")]
        assert {e["label"] for e in log.kinds("label")} >= {"STUN.WhatsAppCall",
                                                             "STUN.TeamsCall", "STUN"}
    finally:
        dpi.close()


def test_random_first_does_not_protect_a_later_app_flow() -> None:
    """Each flow is judged on its own: random bytes first, then app STUN on a fresh source
    port is still recognised (the probe's fresh-flow rule relies on this)."""
    dpi, _ = censor()
    try:
        assert dpi.accept(packet(random_payload(), 45000, 7985), 1.0)
        assert not dpi.accept(packet(app_stun("viber"), 45001, 7985), 1.1)
    finally:
        dpi.close()


def test_app_packet_inside_an_offloaded_flow_passes() -> None:
    """After ``inspect_packets`` the flow is no longer inspected: app STUN sent late in a
    flow that began with random bytes passes (the flaw of one-flow differentials)."""
    dpi, log = censor(inspect_packets=3)
    try:
        for i in range(3):
            assert dpi.accept(packet(random_payload(), 46000, 3478), 1.0 + i / 10)
        assert dpi.accept(packet(app_stun("whatsapp"), 46000, 3478), 2.0)
        assert [e["client"] for e in log.kinds("offload")] == [f"{CLIENT}:46000"]
    finally:
        dpi.close()


def test_residual_blocking_of_the_three_tuple() -> None:
    dpi, log = censor(residual_s=10)
    try:
        assert not dpi.accept(packet(app_stun("viber"), 47000, 7985), 1.0)
        # a fresh flow of random bytes from the same client to the same server port
        assert not dpi.accept(packet(random_payload(), 47001, 7985), 2.0)
        # another port of the server, another server, another client: not affected
        assert dpi.accept(packet(random_payload(), 47002, 7987), 2.1)
        assert dpi.accept(packet(random_payload(), 47003, 7985, dst=OTHER), 2.2)
        assert dpi.accept(packet(random_payload(), 47004, 7985, src="198.18.1.3"), 2.3)
        # the entry lapses after residual_s
        assert dpi.accept(packet(random_payload(), 47005, 7985), 11.5)
        assert [e["reason"] for e in log.kinds("drop")] == ["app", "residual"]
        assert log.kinds("residual")[0]["server"] == f"{SERVER}:7985"
    finally:
        dpi.close()


def test_residual_also_cuts_a_flow_that_was_already_passing() -> None:
    dpi, _ = censor(residual_s=10)
    try:
        assert dpi.accept(packet(random_payload(), 48000, 3478), 1.0)  # a running flow
        assert not dpi.accept(packet(app_stun("whatsapp"), 48001, 3478), 1.5)
        assert not dpi.accept(packet(random_payload(), 48000, 3478), 1.6)
    finally:
        dpi.close()


def test_passive_censor_lets_the_revealing_packet_through() -> None:
    dpi, log = censor(passive=True)
    try:
        assert dpi.accept(packet(app_stun("whatsapp"), 49000, 3478), 1.0)
        assert not dpi.accept(packet(b"y" * 40, 3478, 49000, src=SERVER, dst=CLIENT), 1.1)
        assert not dpi.accept(packet(app_stun("whatsapp"), 49000, 3478), 1.2)
        assert log.kinds("drop")[0]["first_dropped"] == "next"
    finally:
        dpi.close()


def test_reset_forgets_residual_entries_and_ndpi_caches() -> None:
    dpi, log = censor(residual_s=60)
    try:
        assert not dpi.accept(packet(app_stun("viber"), 50000, 7985), 1.0)
        dpi.reset()
        assert dpi.accept(packet(random_payload(), 50001, 7985), 2.0)
        assert dpi.accept(packet(plain_stun(), 50002, 7985), 2.1)  # nDPI's cache is new too
        assert log.kinds("reset")
    finally:
        dpi.close()


def test_non_ip_packets_pass_untouched() -> None:
    dpi, log = censor()
    try:
        assert dpi.accept(b"\x60" + bytes(60), 1.0)
        assert log.events == []
    finally:
        dpi.close()


@pytest.mark.parametrize("data, message", [
    ({}, "block"),
    ({"block": []}, "block"),
    ({"block": ["WhatsAppCall"], "inspect_packets": 0}, "inspect_packets"),
    ({"block": ["WhatsAppCall"], "residual": 5}, "unknown censor keys: residual"),
])
def test_censor_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nfq.CensorConfig.from_json(data)


def test_censor_command_rejects_a_bad_config(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "censor.json"
    path.write_text(json.dumps({"block": "WhatsAppCall"}))
    assert nfq.main([str(path)]) == 2
    assert "bad censor config" in capsys.readouterr().err


# --- offline classification of captures ----------------------------------------------


def test_offline_classification_of_a_pcap(tmp_path: Path) -> None:
    frames = [Ether() / IP(packet(app_stun("teams"), 51000, 3478)),
              Ether() / IP(packet(plain_stun(), 51001, 3478, dst=OTHER)),
              Ether() / IP(packet(random_payload(), 51002, 5243))]
    for t, frame in enumerate(frames):
        frame.time = 1700000000 + t
    path = tmp_path / "capture.pcap"
    wrpcap(str(path), frames)
    flows = offline.classify_capture(path)
    assert [(f.label.name, f.label.guessed) for f in flows] == [
        ("STUN.TeamsCall", False), ("STUN", False), ("Viber", True)]


def test_offline_classification_of_a_cooked_pcapng(tmp_path: Path) -> None:
    """``tcpdump -i any`` writes Linux cooked frames; pcapng is read as well."""
    path = tmp_path / "capture.pcapng"
    writer = PcapNgWriter(str(path))
    frame = CookedLinux() / IP(packet(app_stun("google"), 52000, 19302))
    frame.time = 1700000000
    writer.write(frame)
    writer.close()
    flows = offline.classify_capture(path)
    assert [f.label.name for f in flows] == ["STUN.GoogleCall"]


def test_offline_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "capture.pcap"
    wrpcap(str(path), [Ether() / IP(packet(app_stun("viber"), 53000, 7985))])
    assert offline.main([str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["label"] == "STUN.ViberVoip" and rows[0]["client"] == f"{CLIENT}:53000"
    bad = tmp_path / "not-a-capture.pcap"
    bad.write_text("hello")
    assert offline.main([str(bad)]) == 2
    assert "cannot classify" in capsys.readouterr().err
