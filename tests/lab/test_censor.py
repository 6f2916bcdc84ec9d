"""The censor behind its protocol (:class:`probe.lab.censor.CensorHost`), without root: the
rules' commands, selections and refusals, on a host that records what it is asked to do.
The rules biting real packets are proven in the lab (test_lab_rules_bite, test_call_verdicts)."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from probe.lab import censor
from probe.lab.dns import DnsZone
from probe.lab.labtargets import LabTargets, make_lab_targets
from probe.lab.netns import LabError

MINI_TARGETS = Path(__file__).parent / "mini_targets.toml"


@dataclass
class RecordingHost:
    """A CensorHost that runs nothing: it records commands and helper processes."""

    dir: Path
    targets: LabTargets
    dns: DnsZone = field(default_factory=DnsZone)
    commands: list[tuple[list[str], str | None]] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    dns_reloads: int = 0

    def censor_exec(self, args: list[str], **kwargs: Any) -> Any:
        self.commands.append((args, kwargs.get("input_text")))
        return SimpleNamespace(stdout=json.dumps({"nftables": []}))

    def spawn(self, role: str, name: str, args: list[str], ready: str | None = None,
              timeout_s: float = 10.0) -> None:
        assert role == "censor"
        self.running.append(name)

    def stop(self, name: str) -> None:
        self.running.remove(name)

    def processes(self) -> list[str]:
        return list(self.running)

    def reload_dns(self) -> None:
        self.dns_reloads += 1

    def nft_scripts(self) -> list[str]:
        return [text or "" for args, text in self.commands if args[:2] == ["nft", "-f"]]


@pytest.fixture
def host(tmp_path: Path) -> RecordingHost:
    return RecordingHost(tmp_path, make_lab_targets([MINI_TARGETS], tmp_path / "targets"))


def test_censor_imports_nothing_of_the_lab_object() -> None:
    tree = ast.parse(Path(censor.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert "probe.lab.lab" not in imported
    assert not any(isinstance(node, ast.ImportFrom) and node.module == "probe.lab"
                   and any(a.name == "lab" for a in node.names) for node in ast.walk(tree))


def test_packet_rules_select_the_service_addresses(host: RecordingHost) -> None:
    sel = censor.apply(host, "reset_endpoint", service="whatsapp", function="messaging")
    addresses = sorted({host.targets.plan.addresses[h] for h in ("e1.whatsapp.net",
                                                                 "e2.whatsapp.net")})
    assert sel.addresses == addresses and sel.hosts == ["e1.whatsapp.net", "e2.whatsapp.net"]
    assert host.nft_scripts() == [
        f"add rule inet censor forward ip daddr {{ {', '.join(addresses)} }} "
        "meta l4proto tcp counter reject with tcp reset\n"]
    censor.apply(host, "stun_dpi", ports=[3478])
    assert host.nft_scripts()[-1] == ("add rule inet censor forward udp dport { 3478 } "
                                      f"{censor.STUN_COOKIE} counter drop\n")


def test_resolver_rules_change_the_zone(host: RecordingHost) -> None:
    censor.apply(host, "dns_nxdomain", hosts=["E1.whatsapp.net."])
    censor.apply(host, "dns_bogon", hosts=["v.whatsapp.net"], answer="10.0.0.1")
    assert host.dns.nxdomain == {"e1.whatsapp.net"}
    assert host.dns.bogon == {"v.whatsapp.net": "10.0.0.1"}
    assert host.dns_reloads == 2 and host.commands == []


def test_injectors_are_numbered_and_cleared_with_every_rule(host: RecordingHost) -> None:
    censor.apply(host, "dns_injection", hosts=["e1.whatsapp.net"])
    censor.apply(host, "rst_injection", ports=[443])
    censor.apply(host, "dns_servfail", hosts=["v.whatsapp.net"])
    assert host.processes() == ["injector-dns-1", "injector-rst-2"]
    config = json.loads((host.dir / "injector-dns-1.json").read_text())
    assert config["names"] == ["e1.whatsapp.net"]
    assert any("udp dport 53 counter drop" in s for s in host.nft_scripts())
    host.commands.clear()

    censor.clear(host)
    assert host.processes() == []
    assert host.commands == [(["nft", "flush", "ruleset"], None),
                             (["nft", "-f", "-"], censor.NFT_BASE)]
    assert not host.dns.servfail and host.dns_reloads == 2  # the SERVFAIL rule, then clear
    censor.apply(host, "dns_injection", hosts=["e2.whatsapp.net"])
    assert host.processes() == ["injector-dns-3"]  # a new name: earlier logs are kept


@pytest.mark.parametrize(("rule", "keys", "reason"), [
    ("no_such_rule", {}, "unknown rule 'no_such_rule'"),
    ("drop_endpoint", {}, "rule drop_endpoint needs a service, hosts or addresses"),
    ("sni_reset", {"addresses": ["198.18.1.1"]}, "rule sni_reset needs a service or hosts"),
    ("offline", {"service": "nosuch"}, "no lab hosts for service='nosuch'"),
    ("drop_endpoint", {"addresses": ["192.0.2.1"]}, "192.0.2.1 is outside the lab"),
])
def test_refused_rules_change_nothing(host: RecordingHost, rule: str, keys: dict[str, Any],
                                      reason: str) -> None:
    with pytest.raises(LabError, match=reason):
        censor.apply(host, rule, **keys)
    assert host.commands == [] and host.running == [] and host.dns_reloads == 0


def test_ndpi_block_queues_udp_to_its_censor_and_clear_stops_it(host: RecordingHost) -> None:
    sel = censor.apply(host, "ndpi_block", ports=[3478], apps=["WhatsAppCall"],
                       residual_s=60)
    assert sel.ports == [3478]
    assert host.processes() == ["ndpi-1"]
    config = json.loads((host.dir / "ndpi-1.json").read_text())
    assert config["block"] == ["WhatsAppCall"] and config["residual_s"] == 60
    queued = [c for c, _ in host.commands if c[0] == "iptables"]
    queue = str(config["queue"])
    assert queued == [
        ["iptables", "-A", "FORWARD", "-p", "udp", "-m", "multiport", way, "3478",
         "-j", "NFQUEUE", "--queue-num", queue] for way in ("--dports", "--sports")]
    censor.clear(host)
    assert host.processes() == []


def test_reject_udp_ports_answers_with_port_unreachable(host: RecordingHost) -> None:
    censor.apply(host, "reject_udp_ports", ports=[3478, 19302])
    assert host.nft_scripts()[-1] == ("add rule inet censor forward udp dport { 3478, 19302 } "
                                      "counter reject with icmp type port-unreachable\n")
