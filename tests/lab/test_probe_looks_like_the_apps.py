"""Proof that the probe's call-path traffic looks like the apps to a real DPI engine: the real
probe runs in the lab's client namespace (no censor, the lab's reflector), tcpdump captures its
UDP (probe.lab.dpi.capture), and nDPI 5 classifies the capture offline, flow by flow
(probe.lab.dpi.offline, as ``ndpiReader -i FILE`` does).

- every flow that opens with an app-flavoured STUN request (the call check's calls, the
  differential's app probes, Teams-flavoured TURN) is labelled as that app: WhatsAppCall,
  TeamsCall, GoogleCall, ViberVoip;
- every service's ``call`` flow is among them, on the port of its target;
- the call check's control calls (plain STUN, then the same media) are labelled as no app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab import addresses as A
from probe.lab.censor import APP_STUN
from probe.lab.dpi.capture import capture
from probe.lab.dpi.offline import classify_capture
from probe.lab.lab import Lab
from probe.lab.play import run_probe

pytestmark = pytest.mark.lab
APP_LABELS = {"whatsapp": "WhatsAppCall", "teams": "TeamsCall", "google": "GoogleCall",
              "viber": "ViberVoip"}
SERVICE_FLAVORS = {"whatsapp": "whatsapp", "skype": "teams", "duo": "google",
                   "viber": "viber"}
APP_NAMES = {*APP_LABELS.values(), "WhatsApp", "Skype_Teams", "Teams", "GoogleMeet",
             "Google", "Viber"}
BUDGET_S = 4.0

Key = tuple[str, int, str, int]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        assert lab.reflector == A.REFLECTOR, "the lab must run voip-probe reflector"
        yield lab


def first_payloads(pcap: Path) -> dict[Key, tuple[float, bytes]]:
    """(client, client port, server, server port) -> when the flow's first UDP datagram
    went out and its payload, for the flows the client opened."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import PcapReader

    firsts: dict[Key, tuple[float, bytes]] = {}
    seen: set[Key] = set()
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            if IP not in pkt or UDP not in pkt:
                continue
            ip, udp = pkt[IP], pkt[UDP]
            key = (ip.src, udp.sport, ip.dst, udp.dport)
            back = (ip.dst, udp.dport, ip.src, udp.sport)
            if key in seen or back in seen:
                continue
            seen.add(key)
            if ip.src == A.CLIENT:
                firsts[key] = (float(pkt.time), bytes(udp.payload))
    return firsts


def flavour_of(payload: bytes) -> str | None:
    """The app whose STUN ``payload`` is (the lab's own definition of app STUN)."""
    for flavor in APP_LABELS:
        if APP_STUN[flavor].matches(payload):
            return flavor
    return None


def test_probe_call_traffic_is_labelled_as_the_apps(lab: Lab, tmp_path: Path) -> None:
    with capture(lab, "client", "eth0", "udp") as pcap:
        run = run_probe(lab, tmp_path / "run", "mobile", BUDGET_S)
    assert run.summary is not None, run.stderr[-3000:]
    calls: dict[str, int] = {}  # service -> the call check's reflector port
    with open(run.summary["results_file"], encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("test_name") == "call" and rec.get("pass") == "main":
                calls[rec["service"]] = rec["test_keys"]["reflector_port"]
    assert set(calls) == set(SERVICE_FLAVORS)

    firsts = first_payloads(pcap)
    labels = {(f.client[0], f.client[1], f.server[0], f.server[1]): f.label
              for f in classify_capture(pcap)}
    app_flows = {k: flavour_of(p) for k, (_, p) in firsts.items() if flavour_of(p)}
    assert app_flows, "no app-flavoured STUN captured"
    wrong = {k: (app, labels[k].name) for k, app in app_flows.items()
             if APP_LABELS[str(app)] not in labels[k].names()}
    assert not wrong, f"app-flavoured flows nDPI did not label as the app: {wrong}"

    for service, port in calls.items():
        to_port = {k: v for k, v in firsts.items() if k[2] == A.REFLECTOR and k[3] == port}
        app = sorted((t, k) for k, (t, p) in to_port.items()
                     if flavour_of(p) == SERVICE_FLAVORS[service])
        assert app, (service, port, to_port)
        assert APP_LABELS[SERVICE_FLAVORS[service]] in labels[app[0][1]].names()
        # The call check's control: plain STUN to the same port before the app's call (a
        # later neutral flow to that port nDPI labels with the app it saw there: its cache).
        controls = [k for k, (t, p) in to_port.items() if t < app[0][0]
                    and flavour_of(p) is None and p[4:8] == b"\x21\x12\xa4\x42"]
        assert controls, (service, port, to_port)
        for key in controls:
            assert labels[key].known, (service, labels[key])  # nDPI saw STUN in it ...
            assert not (labels[key].names() & APP_NAMES), (service, labels[key].name)
