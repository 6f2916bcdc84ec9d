"""Lab copies of target files: same hosts, ports and keys, networks pointing into the lab.

Each host name of the targets files gets one lab address (:class:`HostPlan`); the lab
resolver answers the real name with it. A copy differs from its original only in
``expected_networks``, set to the lab /24s of the endpoint's hosts, so the probe runs
the real endpoint lists. The copy also tells the fake internet which ports to serve:
TCP for ``tcp``/``tls``/``https``, coturn for ``stun``/``turn``, coturn over TCP and TLS
for ``turn_tcp``/``turn_tls`` (the relays' fallback, :mod:`probe.lab.relays`), UDP echo
for ``udp`` and anything else that is not TCP.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from probe.lab.addresses import HostPlan

TCP_CHECKS = {"tcp", "tls", "https", "http"}
STUN_CHECKS = {"stun", "turn"}
STREAM_TURN_CHECKS = {"turn_tcp", "turn_tls"}


class LabTargetsError(Exception):
    """A targets file cannot be read (message names the file and reason)."""


@dataclass
class LabTargets:
    plan: HostPlan = field(default_factory=HostPlan)
    files: list[Path] = field(default_factory=list)
    tcp_ports: set[int] = field(default_factory=set)
    stun_ports: set[int] = field(default_factory=set)
    udp_ports: set[int] = field(default_factory=set)
    # host name -> TCP ports on which its relay takes TURN over TCP and TLS
    stream_relays: dict[str, set[int]] = field(default_factory=dict)
    # service id -> function -> hosts, for rules that target a whole function
    hosts_by_function: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # flattened, with service

    def hosts(self, service: str | None = None, function: str | None = None) -> list[str]:
        found: set[str] = set()
        for svc, functions in self.hosts_by_function.items():
            if service not in (None, svc):
                continue
            for fn, hosts in functions.items():
                if function in (None, fn):
                    found |= hosts
        return sorted(found)

    def addresses(self, service: str | None = None, function: str | None = None) -> list[str]:
        return sorted({self.plan.addresses[h] for h in self.hosts(service, function)})


def _endpoint_hosts(endpoint: dict[str, Any]) -> list[tuple[str, int | None]]:
    pairs: list[tuple[str, int | None]] = []
    for url in endpoint.get("urls", []):
        parts = urlsplit(url)
        if parts.hostname:
            default = 80 if parts.scheme == "http" else 443
            pairs.append((parts.hostname.lower(), parts.port or default))
    ports = endpoint.get("ports") or [None]
    for host in endpoint.get("hosts", []):
        for port in ports:
            pairs.append((str(host).lower().rstrip("."), port))
    return pairs


def _rewrite_endpoint(endpoint: dict[str, Any], service: str, lab: LabTargets) -> None:
    check = str(endpoint.get("check", ""))
    function = str(endpoint.get("function", ""))
    nets = set()
    for host, port in _endpoint_hosts(endpoint):
        address = lab.plan.assign(service, host)
        nets.add(address.rsplit(".", 1)[0] + ".0/24")
        lab.hosts_by_function.setdefault(service, {}).setdefault(function, set()).add(host)
        if port is None:
            continue
        if check in TCP_CHECKS:
            lab.tcp_ports.add(int(port))
        elif check in STUN_CHECKS:
            lab.stun_ports.add(int(port))
        elif check in STREAM_TURN_CHECKS:
            lab.stream_relays.setdefault(host, set()).add(int(port))
        else:
            lab.udp_ports.add(int(port))
    # Always set, added where the original has none: the lab lives in 198.18.0.0/15, a bogon
    # range, and the probe takes answers there for bogons unless the target expects them.
    if nets:  # (endpoints without hosts, e.g. reflector-based udp, have none)
        endpoint["expected_networks"] = sorted(nets)
    lab.endpoints.append({"service": service, **endpoint})


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabTargetsError(f"{path}: {exc}") from exc


def make_lab_targets(sources: list[Path], out_dir: Path) -> LabTargets:
    """Write lab copies of ``sources`` into ``out_dir``; return the plan and port sets."""
    lab = LabTargets()
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        doc = _load(source)
        if "service" in doc:
            service = str(doc["service"].get("id", source.stem))
            for endpoint in doc.get("endpoints", []):
                _rewrite_endpoint(endpoint, service, lab)
        for svc in doc.get("services", []):
            service = str(svc.get("id", source.stem))
            for endpoint in svc.get("endpoints", []):
                _rewrite_endpoint(endpoint, service, lab)
        target = out_dir / source.name
        target.write_text(f"# Lab copy of {source} (expected_networks point into the lab)\n"
                          + dumps_toml(doc))
        lab.files.append(target)
    return lab


# --- a minimal TOML writer for target files (strings, numbers, booleans, lists, tables) ---

def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t"))
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _value(key)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps_toml(doc: dict[str, Any], prefix: str = "") -> str:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not _is_table_array(v)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in doc.items():
        name = f"{prefix}{_key(key)}"
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + dumps_toml(value, f"{name}.")
        elif _is_table_array(value):
            for item in value:
                out += f"\n[[{name}]]\n" + dumps_toml(item, f"{name}.")
    return out
