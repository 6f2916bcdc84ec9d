"""Classify the flows of a capture file with nDPI, as nDPI's ``ndpiReader -i FILE`` does.

``python -m probe.lab.dpi.offline FILE`` prints one JSON object per flow (client, server,
packets, nDPI label, state, whether the label is nDPI's guess). The capture may be pcap or
pcapng, of any link type scapy decodes down to IPv4 (Ethernet, Linux cooked capture from
``tcpdump -i any``, raw IP). Every packet of a flow is fed to one nDPI engine in capture order
until nDPI decides (:class:`probe.lab.dpi.ndpi.Classifier`); a flow nDPI did not decide gets
its give-up guess, marked ``guessed``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from probe.lab.dpi.ndpi import Classifier, Flow


def classify_capture(path: Path | str, max_packets: int = 32) -> list[Flow]:
    """The flows of the capture at ``path``, in order of their first packet, labelled."""
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP
    from scapy.utils import PcapReader

    with Classifier(max_packets=max_packets, idle_s=float("inf")) as classifier:
        try:
            reader = PcapReader(str(path))
        except Scapy_Exception as exc:
            raise ValueError(f"{path}: not a pcap or pcapng file ({exc})") from exc
        with reader:
            for pkt in reader:
                if IP not in pkt:
                    continue
                classifier.feed(bytes(pkt[IP]), float(pkt.time))
        flows = list(classifier.flows.values())
        for flow in flows:
            if not flow.label.known:
                classifier.giveup(flow)
        # The flows are returned after their nDPI memory is freed (close): data only.
    return sorted(flows, key=lambda f: f.first_s)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m probe.lab.dpi.offline CAPTURE_FILE", file=sys.stderr)
        return 2
    try:
        flows = classify_capture(argv[0])
    except (OSError, ValueError) as exc:  # unreadable or not a capture file
        print(f"cannot classify {argv[0]}: {exc}", file=sys.stderr)
        return 2
    for flow in flows:
        row: dict[str, Any] = flow.to_json()
        row.pop("verdict", None)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
