"""On-path injectors run in the censor namespace, built with scapy.

``python -m probe.lab.injector dns CONFIG.json`` and ``... rst CONFIG.json``.

A real injector wins its race because it sits closer to the client than the server. In
the lab every hop is microseconds away and scapy needs milliseconds, so the injector
*holds* the trigger: an nftables/iptables rule on the censor drops the trigger packet
from the forwarding path, the injector (which sees it on the client-side interface
before the filter) sends its forgery first and then releases the original packet
itself through a raw socket. The client gets the forged answer first and the real one
afterwards, as on a real network with an injector:

* ``dns``: every UDP query to port 53 is held; for a query whose name matches
  ``names`` (or a subdomain) a forged A answer (``answer``) from the resolver's address is
  sent to the client, then the query is released, so the real answer follows.
* ``rst``: held TCP packets (a SYN to a selected address/port, or a segment whose payload
  contains a selected name, e.g. the SNI) are answered with forged RSTs to both ends.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

IFACE = "down0"  # the censor's client-side interface (probe.lab.topology.LINKS)


def _raw_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def _name_matches(qname: str, names: list[str]) -> bool:
    qname = qname.lower().rstrip(".")
    return any(qname == n or qname.endswith("." + n) for n in names)


def run_dns(config: dict[str, Any]) -> None:
    from scapy.all import DNS, DNSRR, IP, UDP, AsyncSniffer, raw

    names = [n.lower().rstrip(".") for n in config["names"]]
    answer = config["answer"]
    out = _raw_socket()

    def handle(pkt: Any) -> None:
        if IP not in pkt or UDP not in pkt or DNS not in pkt or pkt[DNS].qr != 0:
            return
        ip, udp, dns = pkt[IP], pkt[UDP], pkt[DNS]
        if dns.qd is not None and dns.qd.qtype == 1 and _name_matches(
                dns.qd.qname.decode(errors="replace"), names):
            forged = (IP(src=ip.dst, dst=ip.src)
                      / UDP(sport=53, dport=udp.sport)
                      / DNS(id=dns.id, qr=1, aa=0, rd=dns.rd, ra=1, qd=dns.qd,
                            an=DNSRR(rrname=dns.qd.qname, type="A", ttl=60, rdata=answer)))
            out.sendto(raw(forged), (ip.src, 0))
        # Release the held query (the real answer follows). Recompute the checksums: veth
        # offload leaves a partial UDP checksum in the captured packet.
        del ip.chksum
        del udp.chksum
        out.sendto(raw(ip), (ip.dst, 0))

    sniffer = AsyncSniffer(iface=IFACE, filter="udp dst port 53", prn=handle, store=False)
    sniffer.start()
    _ready(sniffer)


def run_rst(config: dict[str, Any]) -> None:
    from scapy.all import IP, TCP, AsyncSniffer, Raw, raw

    addresses = set(config.get("addresses") or [])
    ports = set(config.get("ports") or [])
    names = [n.encode() for n in config.get("names") or []]
    out = _raw_socket()

    def handle(pkt: Any) -> None:
        if IP not in pkt or TCP not in pkt:
            return
        ip, tcp = pkt[IP], pkt[TCP]
        payload = bytes(pkt[Raw].load) if Raw in pkt else b""
        if names:
            if not any(n in payload for n in names):
                return
        elif not (tcp.flags.S and not tcp.flags.A):
            return
        if (addresses and ip.dst not in addresses) or (ports and tcp.dport not in ports):
            return
        if tcp.flags.S:  # refuse the connection the way a RST to a SYN does
            to_client = (IP(src=ip.dst, dst=ip.src)
                         / TCP(sport=tcp.dport, dport=tcp.sport, flags="RA", seq=0,
                               ack=tcp.seq + 1))
            out.sendto(raw(to_client), (ip.src, 0))
            return
        to_client = (IP(src=ip.dst, dst=ip.src)
                     / TCP(sport=tcp.dport, dport=tcp.sport, flags="R", seq=tcp.ack))
        to_server = (IP(src=ip.src, dst=ip.dst)
                     / TCP(sport=tcp.sport, dport=tcp.dport, flags="R",
                           seq=tcp.seq + len(payload)))
        out.sendto(raw(to_client), (ip.src, 0))
        out.sendto(raw(to_server), (ip.dst, 0))

    sniffer = AsyncSniffer(iface=IFACE, filter="tcp", prn=handle, store=False)
    sniffer.start()
    _ready(sniffer)


def _ready(sniffer: Any) -> None:
    import time

    # AsyncSniffer opens its socket in its thread: wait until it is listening.
    for _ in range(200):
        if getattr(sniffer, "running", False) and getattr(sniffer, "stop_cb", None):
            break
        time.sleep(0.01)
    time.sleep(0.2)
    print("ready", flush=True)
    sniffer.join()


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    cfg = json.loads(Path(path).read_text())
    {"dns": run_dns, "rst": run_rst}[kind](cfg)
