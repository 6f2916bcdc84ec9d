"""The fake internet's TURN relays over TCP and TLS (the apps' fallback when UDP is blocked).

A service's relay host (e.g. Teams' ``worldaz.tr.teams.microsoft.com``) takes TURN over UDP
on its STUN port (the lab's ordinary coturn, :meth:`probe.lab.lab.Lab._start_coturn`) and,
as the fallback, TURN over TCP and over TLS on TCP 443 (RFC 8656 section 12.5 framing).
TCP 443 on every other lab address belongs to :mod:`probe.lab.servers` (TLS/HTTP/echo on
the wildcard address), and Linux refuses a second listener on a specific address while a
wildcard one listens on the same port. So a second coturn (real TURN, the lab CA's
certificate) listens on :data:`STREAM_PORT` of the relay addresses only, and a DNAT rule
in the ``inet`` namespace sends TCP to ``relay:443`` there. The censor, two hops before,
still sees TCP to port 443: its rules apply exactly as to a real relay. coturn 4.6
accepts TLS and plain TCP on the same listening port (it looks at the first bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

STREAM_PORT = 15349      # coturn's TCP+TLS listener on the relay addresses
STREAM_TLS_PORT = 15350  # coturn's dedicated TLS port (unused by the lab, must be free)
NAT_TABLE = "vplabrelay"


def coturn_stream_args(addresses: Iterable[str], realm: str, cert: Path, key: Path,
                       pidfile: Path, relay_ip: str, min_port: int) -> list[str]:
    """turnserver arguments for the TCP/TLS relay: no UDP listener (the UDP relay is the
    ordinary lab coturn), long-term credentials so that an Allocate without them gets 401
    with REALM and NONCE, as from a real relay."""
    args = ["turnserver", "-n", "--listening-port", str(STREAM_PORT),
            "--tls-listening-port", str(STREAM_TLS_PORT), "--no-udp", "--no-dtls",
            "--no-rfc5780", "--no-cli", "--realm", realm, "--fingerprint", "--lt-cred-mech",
            "--user=u:p", "--cert", str(cert), "--pkey", str(key), "--log-file=stdout",
            "--simple-log", f"--pidfile={pidfile}", "--relay-ip", relay_ip,
            "--min-port", str(min_port), "--max-port", str(min_port + 199),
            "--no-software-attribute"]
    for address in sorted(set(addresses)):
        args += ["--listening-ip", address]
    return args


def nat_script(relays: Mapping[str, Iterable[int]]) -> str:
    """nftables for the ``inet`` namespace: TCP to each relay address and port goes to
    coturn's :data:`STREAM_PORT` on the same address."""
    rules = "".join(f"        ip daddr {address} tcp dport {port} dnat to {address}:{STREAM_PORT}\n"
                    for address in sorted(relays) for port in sorted(set(relays[address])))
    return (f"table ip {NAT_TABLE} {{\n    chain prerouting {{\n"
            "        type nat hook prerouting priority dstnat; policy accept;\n"
            f"{rules}    }}\n}}\n")
