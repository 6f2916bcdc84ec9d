"""The small loopback world that end-to-end command tests run the probe against.

Three names (``ctl.test``, ``chat.test``, ``relay.test``) all resolve to 127.0.0.1 through a
loopback DNS server (``tests.dnsserver``); a targets file (docs: DESIGN.md, targets format)
gives a "controls" service and a "chatty" service whose messaging and calls endpoints are
plain TCP ports chosen by each test: a listening port works, a closed one is "blocked"
(connection refused). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.dnsserver import LoopbackDnsServer, zone_handler

ZONE = {"ctl.test": ["127.0.0.1"], "chat.test": ["127.0.0.1"], "relay.test": ["127.0.0.1"]}


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_targets(folder: Path, open_port: int, calls_port: int) -> Path:
    """Write the world's targets file, ``folder/world.toml``, and return its path: controls
    and messaging on ``open_port``, calls on ``calls_port``."""
    path = folder / "world.toml"
    # Loopback is a bogon range: the world's hosts say they live there (probe.checks.dns),
    # or every answer would be one.
    loopback = 'expected_networks = ["127.0.0.0/8"]'
    path.write_text(f"""
[[services]]
id = "controls"
[[services.endpoints]]
function = "control"
check = "tcp"
hosts = ["ctl.test"]
ports = [{open_port}]
{loopback}

[[services]]
id = "chatty"
name = "Chatty"
[[services.endpoints]]
function = "messaging"
check = "tcp"
hosts = ["chat.test"]
ports = [{open_port}]
{loopback}
[[services.endpoints]]
function = "calls"
check = "tcp"
hosts = ["relay.test"]
ports = [{calls_port}]
{loopback}
""")
    return path


@contextmanager
def world_dns() -> Iterator[LoopbackDnsServer]:
    """A loopback DNS server that answers the world's names (``ZONE``)."""
    with LoopbackDnsServer(zone_handler(ZONE)) as dns:
        yield dns
