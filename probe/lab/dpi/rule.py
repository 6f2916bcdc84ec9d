"""The lab's ``ndpi_block`` censor rule: start the nDPI censor (:mod:`probe.lab.dpi.nfq`) in
the censor namespace and send the forwarded UDP there through an NFQUEUE.

The rule queues every forwarded UDP packet, both directions (with a selection: the packets
to the selected addresses/ports and the packets from them; iptables ``NFQUEUE``), after the
censor process said ``ready``. Nothing bypasses the queue: if the censor dies, the queued
UDP is dropped, which makes a broken censor visible in every test instead of silently
letting traffic through.
The censor's decisions are in its log (``<lab dir>/logs/ndpi-<n>.log``, one JSON object a
line, see :func:`decisions`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.lab.dpi.nfq import DEFAULT_QUEUE, CensorConfig

if TYPE_CHECKING:
    from probe.lab.censor import CensorHost, Selection

PROCESS_PREFIX = "ndpi-"


def _queue_rules(sel: Selection, queue: int) -> list[list[str]]:
    """iptables arguments queueing the selected UDP, both directions (nftables' own
    ``queue`` statement needs the nft_queue module, which not every kernel has; iptables-nft
    uses xt_NFQUEUE)."""
    target = ["-j", "NFQUEUE", "--queue-num", str(queue)]
    if not sel.addresses and not sel.ports:
        return [["-A", "FORWARD", "-p", "udp", *target]]
    ports = ",".join(str(p) for p in sel.ports)
    rules = []
    for addr_flag, port_flag in (("-d", "--dports"), ("-s", "--sports")):
        for address in sel.addresses or [""]:
            args = ["-A", "FORWARD", "-p", "udp"]
            if address:
                args += [addr_flag, address]
            if ports:
                args += ["-m", "multiport", port_flag, ports]
            rules.append([*args, *target])
    return rules


def ndpi_block(lab: CensorHost, sel: Selection, apps: list[str], residual_s: int = 0,
               passive: bool = False, inspect_packets: int = 10) -> Path:
    """Drop the UDP flows nDPI labels with one of ``apps`` (``WhatsAppCall``,
    ``STUN.ViberVoip``, ...); see :mod:`probe.lab.dpi.nfq` for ``residual_s``, ``passive``
    and ``inspect_packets``. Returns the censor's log file."""
    index = len(list(lab.dir.glob(f"{PROCESS_PREFIX}*.json"))) + 1
    name = f"{PROCESS_PREFIX}{index}"
    queue = DEFAULT_QUEUE + index - 1
    config: dict[str, Any] = {"block": list(apps), "residual_s": residual_s,
                              "passive": passive, "inspect_packets": inspect_packets,
                              "queue": queue}
    CensorConfig.from_json(config)  # a bad option fails here, before anything starts
    path = lab.dir / f"{name}.json"
    path.write_text(json.dumps(config))
    lab.spawn("censor", name, [sys.executable, "-m", "probe.lab.dpi.nfq", str(path)],
              ready="ready", timeout_s=30)
    for args in _queue_rules(sel, queue):
        lab.censor_exec(["iptables", *args])
    return lab.dir / "logs" / f"{name}.log"


def decisions(log: Path) -> list[dict[str, Any]]:
    """The censor's decisions so far (the JSON lines of its log)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
