"""Packet captures in the lab (tcpdump inside a lab namespace), for offline classification.

    with capture(lab, "client", "eth0", "udp") as pcap:
        ...                                    # traffic
    flows = classify_capture(pcap)             # probe.lab.dpi.offline

tcpdump writes every packet as it arrives (``-U --immediate-mode``), so the file is complete
once the process is stopped at the end of the ``with`` block.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.lab.lab import Lab

_COUNT = itertools.count(1)


@contextmanager
def capture(lab: Lab, role: str = "client", iface: str = "eth0",
            bpf: str = "udp") -> Iterator[Path]:
    """Capture ``bpf``-filtered packets on ``iface`` of ``role``'s namespace into a pcap file
    in the lab's directory; yields its path."""
    name = f"tcpdump-{next(_COUNT)}"
    path = lab.dir / f"{name}.pcap"
    lab.spawn(role, name, ["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-w",
                           str(path), bpf], ready="listening on", timeout_s=15)
    try:
        yield path
    finally:
        lab.stop(name)
