"""The lab's inline DPI censor: nDPI fed from an NFQUEUE, dropping the flows of listed apps.

``python -m probe.lab.dpi.nfq CONFIG.json`` runs in the censor namespace, bound to NFQUEUE
``queue`` (the lab adds the nftables rule that sends forwarded UDP there, after this process
printed ``ready``). CONFIG keys:

* ``block``: nDPI names to drop, matched against a flow's label (``STUN.WhatsAppCall``), its
  application (``WhatsAppCall``) or its master protocol (``STUN``);
* ``inspect_packets`` (default 10): how many packets of a flow (both directions) nDPI sees
  before the censor stops looking at it, as real DPI boxes offload flows after their first
  packets; ``idle_s`` (default 30): a flow idle that long is forgotten;
* ``residual_s`` (default 0, off): after a detection, every packet from that client to that
  server address and port (new flows and existing ones, both directions) is dropped for that
  many seconds, as the GFW does to UDP; a later detection re-arms it;
* ``passive`` (default false): a tap-based censor. It sees copies of the packets, so the packet
  that reveals the app (and every one before it) passes; only the later packets of the flow
  (and, with ``residual_s``, the 3-tuple) are dropped.

Decisions (see :class:`DpiCensor`):

* Both directions of a flow are one nDPI flow; the first packet's sender is the client.
* A flow nDPI has not labelled yet passes while it is inspected: an inline box forwards
  what it cannot judge yet (holding packets would break every flow it inspects). Once a
  listed label appears, that packet (inline mode) and every later packet of the flow, both
  directions, are dropped. After ``inspect_packets`` without a listed label the flow passes
  for good, whatever nDPI would have said later.
* nDPI's port guesses (``ndpi_detection_giveup``: random bytes on UDP 5243 are "Viber") are
  logged for flows that end inspection unlabelled, never acted on: the censor blocks what it
  recognises.
* One nDPI engine serves all flows, so nDPI's own caches apply (its STUN cache labels a later
  STUN flow to the same server address and port with the app seen there before).
* ``SIGHUP`` forgets every flow, residual entry and cache (a new engine): the state of a
  censor that has not seen this client for a long time. ``SIGTERM`` ends the process.

Every decision is printed on stdout as one JSON object per line (``event``: ``label`` when a
flow's label changes, ``drop`` for the first dropped packet of a flow, ``residual`` when a
3-tuple is armed, ``offload`` when inspection ends, ``reset`` on SIGHUP).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.lab.dpi.ndpi import Classifier, Engine, Flow

DEFAULT_QUEUE = 7
QUEUE_PACKETS = 16384  # packets the kernel holds for the censor (NFQUEUE max length)
COPY_BYTES = 2048  # bytes of each packet copied to the censor (call packets are smaller)
PRIORITY = -10  # the censor's nice value
EXPIRE_EVERY_S = 1.0

Residual = tuple[int, str, str, int]  # proto, client address, server address, server port


@dataclass
class CensorConfig:
    block: frozenset[str]
    inspect_packets: int = 10
    idle_s: float = 30.0
    residual_s: float = 0.0
    passive: bool = False
    queue: int = DEFAULT_QUEUE

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CensorConfig:
        known = {"block", "inspect_packets", "idle_s", "residual_s", "passive", "queue"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown censor keys: {', '.join(sorted(unknown))}")
        block = data.get("block")
        if not isinstance(block, list) or not block or not all(
                isinstance(b, str) and b for b in block):
            raise ValueError("block: a non-empty list of nDPI names (e.g. WhatsAppCall)")
        cfg = cls(frozenset(block), int(data.get("inspect_packets", 10)),
                  float(data.get("idle_s", 30.0)), float(data.get("residual_s", 0.0)),
                  bool(data.get("passive", False)), int(data.get("queue", DEFAULT_QUEUE)))
        if cfg.inspect_packets < 1 or cfg.idle_s <= 0 or cfg.residual_s < 0:
            raise ValueError("inspect_packets >= 1, idle_s > 0 and residual_s >= 0")
        return cfg


class DpiCensor:
    """The censor's decisions, independent of how packets arrive (NFQUEUE or a test)."""

    def __init__(self, cfg: CensorConfig, log: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.log = log
        self.classifier = Classifier(Engine(), max_packets=cfg.inspect_packets,
                                     idle_s=cfg.idle_s)
        self.residual: dict[Residual, float] = {}  # -> loop time until which it holds
        self._last_expiry = 0.0

    def close(self) -> None:
        self.classifier.close()
        self.classifier.engine.close()

    def reset(self) -> None:
        """Forget everything: flows, residual entries and nDPI's caches (a new engine)."""
        self.close()
        self.classifier = Classifier(Engine(), max_packets=self.cfg.inspect_packets,
                                     idle_s=self.cfg.idle_s)
        self.residual.clear()
        self.log({"event": "reset"})

    def _emit(self, event: str, flow: Flow, now: float, **more: Any) -> None:
        self.log({"event": event, "t": round(now, 3), **flow.to_json(), **more})

    def _residual_key(self, flow: Flow) -> Residual:
        return (flow.proto, flow.client[0], flow.server[0], flow.server[1])

    def _in_residual(self, flow: Flow, now: float) -> bool:
        until = self.residual.get(self._residual_key(flow))
        return until is not None and now < until

    def accept(self, packet: bytes, now: float) -> bool:
        """Whether ``packet`` (an IPv4 packet) goes on; decides and logs."""
        if now - self._last_expiry >= EXPIRE_EVERY_S:
            self._last_expiry = now
            self.classifier.expire(now)
            self.residual = {k: v for k, v in self.residual.items() if v > now}
        fed = self.classifier.feed(packet, now)
        if fed is None:
            return True  # not an IPv4 UDP/TCP packet nDPI can classify: not ours to judge
        flow, _ = fed
        if flow.verdict == "drop":
            return False
        if self._in_residual(flow, now):
            flow.verdict = "drop"
            self.classifier.stop_inspecting(flow)
            self._emit("drop", flow, now, reason="residual")
            return False
        return self._judge(flow, now)

    def _judge(self, flow: Flow, now: float) -> bool:
        label = flow.label
        previous = flow.extra.get("logged_label")
        if label.known and label.name != previous:
            flow.extra["logged_label"] = label.name
            self._emit("label", flow, now)
        if label.names() & self.cfg.block:
            flow.verdict = "drop"
            self.classifier.stop_inspecting(flow)
            if self.cfg.residual_s:
                self.residual[self._residual_key(flow)] = now + self.cfg.residual_s
                self._emit("residual", flow, now, seconds=self.cfg.residual_s)
            # A tap sees a copy: the packet that revealed the app has already gone through.
            self._emit("drop", flow, now, reason="app", first_dropped="next" if
                       self.cfg.passive else "this")
            return self.cfg.passive
        if flow.done and flow.verdict is None:
            flow.verdict = "pass"
            guess = self.classifier.giveup(flow) if not label.known else label
            self._emit("offload", flow, now, guess=guess.name if guess.guessed else None)
        return True


def run(cfg: CensorConfig) -> None:
    """Bind the NFQUEUE and judge packets until SIGTERM."""
    import selectors

    from netfilterqueue import NetfilterQueue

    def log(record: dict[str, Any]) -> None:
        print(json.dumps(record), flush=True)

    censor = DpiCensor(cfg, log)
    flags = {"reset": False, "stop": False}

    def on_packet(pkt: Any) -> None:
        if censor.accept(pkt.get_payload(), time.monotonic()):
            pkt.accept()
        else:
            pkt.drop()

    def on_signal(signum: int, _frame: object) -> None:
        flags["reset" if signum == signal.SIGHUP else "stop"] = True

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # A DPI box is dedicated hardware: here the censor shares the machine with the lab, so it
    # runs ahead of it, and its queue holds seconds of traffic rather than the library's
    # 1024 packets, lest a busy machine drop (or let through) what the censor never saw.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)
    except OSError:
        pass
    nfq = NetfilterQueue()
    nfq.bind(cfg.queue, on_packet, max_len=QUEUE_PACKETS, range=COPY_BYTES,
             sock_len=QUEUE_PACKETS * COPY_BYTES)
    selector = selectors.DefaultSelector()
    selector.register(nfq.get_fd(), selectors.EVENT_READ)
    print("ready", flush=True)
    try:
        while not flags["stop"]:
            if flags["reset"]:
                flags["reset"] = False
                censor.reset()
            if selector.select(timeout=0.2):
                nfq.run(block=False)
    finally:
        nfq.unbind()
        censor.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m probe.lab.dpi.nfq CONFIG.json", file=sys.stderr)
        return 2
    try:
        cfg = CensorConfig.from_json(json.loads(Path(argv[0]).read_text()))
    except (OSError, ValueError) as exc:
        print(f"bad censor config {argv[0]}: {exc}", file=sys.stderr)
        return 2
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
