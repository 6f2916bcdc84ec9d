"""The censorship lab: topology + fake internet + censor, behind one object.

    with Lab(targets=[...]) as lab:            # up() on enter, down() on exit (always)
        lab.apply("stun_dpi")                   # a named rule from probe.lab.censor.RULES
        lab.apply("reset_endpoint", service="whatsapp", function="messaging")
        lab.client_run(["python3", "-c", "..."])  # a command inside the client namespace
        lab.clear_rules()

A lab's state (prefix, host plan, files) is kept in ``/run/voip-probe-lab/<prefix>/``
(``state.json``), so ``voip-probe lab up`` and a later ``lab down``/``lab run`` in another
process find it again (:meth:`Lab.attach`). Names are ``<prefix>-<role>``; the prefix is
random unless given, so several labs run at once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from probe.lab import addresses as A
from probe.lab import censor, topology
from probe.lab.censor import Selection
from probe.lab.dns import DnsZone
from probe.lab.labtargets import LabTargets, make_lab_targets
from probe.lab.netns import NETNS_ETC, LabError, kill_pids, ns_exec, sh, spawn
from probe.lab.pki import make_pki
from probe.lab.relays import coturn_stream_args, nat_script

STATE_ROOT = Path("/run/voip-probe-lab")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TARGETS = REPO_ROOT / "configs" / "targets"
LAB_REALM = "lab.example"


def shipped_targets() -> list[Path]:
    return sorted(SHIPPED_TARGETS.glob("*.toml"))


def new_prefix() -> str:
    return "vp" + secrets.token_hex(3)


class Lab:
    def __init__(self, targets: list[Path] | None = None, prefix: str | None = None,
                 state_root: Path = STATE_ROOT, persistent: bool = False) -> None:
        self.prefix = prefix or new_prefix()
        if not self.prefix.replace("-", "").isalnum() or len(self.prefix) > 10:
            raise LabError(f"lab prefix {self.prefix!r}: use up to 10 letters/digits")
        self.sources = [Path(p) for p in (targets if targets is not None else shipped_targets())]
        self.dir = state_root / self.prefix
        self.ns = topology.ns_names(self.prefix)
        self.targets = LabTargets()
        self.dns = DnsZone()
        self.reflector: str | None = None
        self._pids: dict[str, int] = {}
        # A lab owned by a process (a test) is stale once that process is gone: see
        # cleanup_stale(). `voip-probe lab up` makes persistent labs, removed by `lab down`.
        self.owner: int | None = None if persistent else os.getpid()

    # --- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> Lab:
        """Build (or rebuild) the whole lab: namespaces, servers, resolver, empty censor."""
        self.down()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self._save()  # first thing: a lab killed half-built is still found and removed
        self.targets = make_lab_targets(self.sources, self.dir / "targets")
        topology.build(self.prefix, self.targets.plan.all_addresses())
        pki = make_pki(self.dir / "pki", [*self.targets.plan.addresses, A.DOH_HOST])
        etc = NETNS_ETC / self.ns["client"]
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {A.RESOLVER}\noptions timeout:2 attempts:2\n")
        self.dns = DnsZone()
        for host, address in self.targets.plan.addresses.items():
            self.dns.add_a(host, address)
        self.dns.add_a("reflector.lab.example", A.REFLECTOR)
        self.dns.add_a("echo.lab.example", A.ECHO)
        self.dns.add_a(A.DOH_HOST, A.DOH)
        self._start_servers(pki.server_cert, pki.server_key)
        self.reload_dns()
        self._start_coturn()
        self._start_stream_relays(pki.server_cert, pki.server_key)
        self._start_reflector()
        censor.install(self)
        self._save()
        return self

    def down(self) -> None:
        """Remove everything of this lab; safe to call any number of times, in any state."""
        kill_pids(list(self._pids.values()))
        self._pids.clear()
        topology.destroy(self.prefix)
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def attach(cls, prefix: str, state_root: Path = STATE_ROOT) -> Lab:
        """The lab ``prefix`` started by another process (``voip-probe lab up``)."""
        state_file = state_root / prefix / "state.json"
        if not state_file.exists():
            raise LabError(f"no lab {prefix!r} is up (no {state_file})")
        state = json.loads(state_file.read_text())
        lab = cls(targets=[Path(p) for p in state["sources"]], prefix=prefix,
                  state_root=state_root)
        lab.owner = state.get("owner")
        if (lab.dir / "targets").exists():
            lab.targets = make_lab_targets(lab.sources, lab.dir / "targets")
        lab.dns = DnsZone(records=state["dns_records"], txt=state["dns_txt"])
        lab._pids = {k: int(v) for k, v in state["pids"].items()}
        lab.reflector = state["reflector"]
        return lab

    def _save(self) -> None:
        state = {"prefix": self.prefix, "owner": self.owner,
                 "sources": [str(p) for p in self.sources],
                 "namespaces": self.ns, "pids": self._pids, "reflector": self.reflector,
                 "dns_records": self.dns.records, "dns_txt": self.dns.txt,
                 "ca_bundle": str(self.ca_bundle), "doh_url": A.DOH_URL,
                 "targets": [str(p) for p in self.targets.files]}
        (self.dir / "state.json").write_text(json.dumps(state, indent=1))

    # --- facts other code needs ------------------------------------------------------

    @property
    def ca_bundle(self) -> Path:
        return self.dir / "pki" / "ca.pem"

    @property
    def target_files(self) -> list[Path]:
        return list(self.targets.files)

    doh_url = A.DOH_URL
    censor_hop = A.CENSOR_HOP
    censor_address = A.CENSOR_DOWN
    client_address = A.CLIENT
    resolver = A.RESOLVER

    def address_of(self, host: str) -> str:
        return self.targets.plan.addresses[host.lower().rstrip(".")]

    # --- running things --------------------------------------------------------------

    def exec(self, role: str, args: list[str], **kwargs: Any) -> Any:
        return ns_exec(self.ns[role], args, **kwargs)

    def client_run(self, args: list[str], **kwargs: Any) -> Any:
        return self.exec("client", args, **kwargs)

    def check(self, op: str, *args: object, role: str = "client") -> dict[str, Any]:
        """A direct socket check (:mod:`probe.lab.sockcheck`) from ``role``'s namespace."""
        out = self.exec(role, [sys.executable, "-m", "probe.lab.sockcheck", op,
                               *map(str, args)], timeout_s=60).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def censor_exec(self, args: list[str], **kwargs: Any) -> Any:
        return self.exec("censor", args, **kwargs)

    def spawn(self, role: str, name: str, args: list[str], ready: str | None = None,
              timeout_s: float = 10.0) -> None:
        """Start a daemon in ``role``'s namespace; wait for ``ready`` in its log if given."""
        if name in self._pids:
            kill_pids([self._pids.pop(name)])
        log = self.dir / "logs" / f"{name}.log"
        log.write_bytes(b"")
        proc = spawn(self.ns[role], args, log)
        self._pids[name] = proc.pid
        deadline = time.monotonic() + timeout_s
        while ready is not None:
            if proc.poll() is not None:
                raise LabError(f"{name} exited ({proc.returncode}) at start: "
                               f"{log.read_text(errors='replace')[-800:]}")
            if ready in log.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                raise LabError(f"{name} not ready after {timeout_s:.0f} s (log {log})")
            time.sleep(0.02)
        if (self.dir / "state.json").exists():
            self._save()

    def stop(self, name: str) -> None:
        if name in self._pids:
            kill_pids([self._pids.pop(name)])

    def processes(self) -> list[str]:
        """The names of the daemons this lab runs (servers, resolver, coturn, injectors)."""
        return list(self._pids)

    def _start_servers(self, cert: Path, key: Path) -> None:
        config = {"cert": str(cert), "key": str(key),
                  "tcp_ports": sorted(self.targets.tcp_ports | {80, 443}),
                  "servfail": A.SERVFAIL_UPSTREAM,
                  "doh_zone": str(self.dir / "doh_zone.json"),
                  "udp_echo": self._udp_echo_sockets()}
        path = self.dir / "servers.json"
        path.write_text(json.dumps(config))
        self.spawn("inet", "servers", [sys.executable, "-m", "probe.lab.servers", str(path)],
                   ready="ready")

    def _udp_echo_sockets(self) -> list[tuple[int, str]]:
        plain = sorted(self.targets.udp_ports - self.targets.stun_ports)
        sockets = [(port, addr) for port in plain for addr in self.targets.plan.all_addresses()]
        echo_ports = self.targets.udp_ports | self.targets.stun_ports | A.ECHO_PORTS
        return sockets + [(port, A.ECHO) for port in sorted(echo_ports)]

    def _start_coturn(self) -> None:
        addresses = self.targets.addresses() or [A.SPARE]
        for index, port in enumerate(sorted(self.targets.stun_ports)):
            low = 49152 + index * 500
            args = ["turnserver", "-n", "--listening-port", str(port), "--no-rfc5780",
                    "--realm", LAB_REALM, "--no-tls", "--no-dtls", "--no-cli",
                    "--fingerprint", "--lt-cred-mech", "--user=u:p", "--log-file=stdout",
                    "--simple-log", f"--pidfile={self.dir / f'coturn-{port}.pid'}",
                    "--relay-ip", A.SPARE, "--min-port", str(low), "--max-port",
                    str(low + 499), "--no-software-attribute"]
            if port in self._served_tcp_ports():
                args.append("--no-tcp")  # TCP on this port is the lab servers' (e.g. 443)
            for address in addresses:
                args += ["--listening-ip", address]
            self.spawn("inet", f"coturn-{port}", args, ready="Total General servers")

    def _served_tcp_ports(self) -> set[int]:
        return self.targets.tcp_ports | {80, 443}

    def _start_stream_relays(self, cert: Path, key: Path) -> None:
        """The relays' fallback: TURN over TCP and TLS (:mod:`probe.lab.relays`)."""
        relays = {self.address_of(host): ports
                  for host, ports in self.targets.stream_relays.items()}
        if not relays:
            return
        args = coturn_stream_args(relays, LAB_REALM, cert, key,
                                  self.dir / "coturn-stream.pid", A.SPARE, 60000)
        self.spawn("inet", "coturn-stream", args, ready="Total General servers")
        self.exec("inet", ["nft", "-f", "-"], input_text=nat_script(relays))

    def _start_reflector(self) -> None:
        self.spawn("inet", "reflector",
                   [sys.executable, "-m", "probe", "reflector", "--host", A.REFLECTOR],
                   ready="reflector listening", timeout_s=30)
        self.reflector = A.REFLECTOR

    # --- DNS -------------------------------------------------------------------------

    def reload_dns(self) -> None:
        (self.dir / "doh_zone.json").write_text(json.dumps(self.dns.records))
        conf = self.dir / "dnsmasq.conf"
        conf.write_text(self.dns.dnsmasq_conf())
        self.spawn("inet", "dnsmasq", ["dnsmasq", "--keep-in-foreground",
                                       f"--conf-file={conf}", "--pid-file="],
                   ready="compile time options")

    def add_dns_record(self, name: str, address: str) -> None:
        self.dns.add_a(name, address)
        self.reload_dns()

    def add_txt_record(self, name: str, text: str) -> None:
        """Serve a TXT record (e.g. ``1.0.19.198.origin.asn.cymru.com``) from the lab resolver."""
        self.dns.add_txt(name, text)
        self.reload_dns()

    # --- the censor (its rules and their mechanics: probe.lab.censor) ------------------

    def apply(self, rule: str, *, service: str | None = None, function: str | None = None,
              hosts: list[str] | None = None, addresses: list[str] | None = None,
              ports: list[int] | None = None, **params: Any) -> Selection:
        """Apply the named censor rule (see :data:`probe.lab.censor.RULES`)."""
        return censor.apply(self, rule, service=service, function=function, hosts=hosts,
                            addresses=addresses, ports=ports, **params)

    def clear_rules(self) -> None:
        """Remove every censor rule: flush nftables/iptables, stop injectors, clean DNS."""
        censor.clear(self)
        self._save()

    def rule_counters(self) -> list[tuple[str, int]]:
        """(rule text, packets matched) for every nftables rule of the censor."""
        return censor.rule_counters(self)

    def leftovers(self) -> list[str]:
        found = topology.leftovers(self.prefix)
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        return found


def owner_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(state_root: Path = STATE_ROOT) -> list[str]:
    """Remove every lab whose owning process is gone (a test run killed mid-way); labs of
    live processes and persistent labs (``lab up``) are left alone. Returns the prefixes."""
    removed = []
    for state_file in sorted(state_root.glob("*/state.json")):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if owner_alive(state.get("owner")):
            continue
        Lab.attach(state_file.parent.name, state_root).down()
        removed.append(state_file.parent.name)
    return removed


def require_root() -> str | None:
    """A one-line reason the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables): run it with sudo"
    for tool in ("ip", "nft", "iptables", "dnsmasq", "turnserver", "openssl"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (Debian packages: see .ci/run)"
    return None


__all__ = ["Lab", "LabError", "require_root", "sh"]
