"""The probe's call-path checks against real censors in the lab: the nDPI censor
(probe.lab.dpi, inline on the censor through NFQUEUE) with residual blocking, and a real
iptables ``-j REJECT --reject-with icmp-port-unreachable`` on the censor. The real probe
(``voip-probe run`` in the client namespace) with a small targets file; the assertions read
the measurements it wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.checks import methods_for
from probe.lab import addresses as A
from probe.lab.censor import Selection
from probe.lab.dpi.rule import decisions, ndpi_block
from probe.lab.lab import Lab

pytestmark = pytest.mark.lab
TIMEOUT_S = "4"
LAB_NETS = '["198.18.0.0/15"]'


def targets(lab: Lab, tmp_path: Path, *endpoints: str) -> Path:
    """A targets file: the given calls endpoints of WhatsApp, and one control (a lab host
    that answers TCP 443) so the network counts as online."""
    control = lab.targets.hosts("controls", "control")[0]
    body = ('[[services]]\nid = "controls"\nname = "Controls"\n[[services.endpoints]]\n'
            f'function = "control"\ncheck = "tcp"\nhosts = ["{control}"]\nports = [443]\n'
            f'expected_networks = {LAB_NETS}\n\n'
            '[[services]]\nid = "whatsapp"\nname = "WhatsApp"\n')
    for ep in endpoints:
        body += f'\n[[services.endpoints]]\nfunction = "calls"\n{ep}\n'
    path = tmp_path / "targets.toml"
    path.write_text(body)
    return path


DIFFERENTIAL = 'check = "differential"\nports = [3478]\nflavor = "whatsapp"'


def run_probe(lab: Lab, tmp_path: Path, target_file: Path) -> list[dict[str, Any]]:
    """The probe's records (measurements and summary) of one run."""
    out = tmp_path / "results"
    args = [sys.executable, "-m", "probe", "run", "--json", "--timeout", TIMEOUT_S,
            "--reflector", A.REFLECTOR, "--output", str(out), "--targets", str(target_file)]
    proc = lab.client_run(args, timeout_s=120, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    with open(summary["results_file"], encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def measurements(records: list[dict[str, Any]], check: str) -> dict[str, dict[str, Any]]:
    """pass -> test keys of ``check``'s measurement."""
    return {r["pass"]: r["test_keys"] for r in records if r.get("test_name") == check}


def calls_verdict(records: list[dict[str, Any]]) -> dict[str, Any]:
    summary = next(r for r in records if r.get("record") == "summary")
    verdict: dict[str, Any] = summary["services"]["whatsapp"]["functions"]["calls"]
    return verdict


@pytest.mark.parametrize("residual_s", [60, 0])
def test_differential_against_ndpi_is_app_stun_dpi(lab: Lab, tmp_path: Path,
                                                    residual_s: int) -> None:
    """nDPI labels the probe's WhatsApp-flavoured STUN STUN.WhatsAppCall and drops its flow;
    with residual blocking it then drops everything from the client to the reflector's
    port. Every trial is a fresh flow and the neutral kinds went first, so this is
    app_stun_dpi (with residual_blocking when armed), never udp_blocked, in both passes.
    Plain STUN and random bytes went first and passed, and no app trial passed after them
    (the one-flow differential said ok when random bytes went first)."""
    log = ndpi_block(lab, Selection(), ["WhatsAppCall"], residual_s=residual_s)
    try:
        records = run_probe(lab, tmp_path, targets(lab, tmp_path, DIFFERENTIAL))
    finally:
        lab.stop(log.stem)
    diff = measurements(records, "differential")
    main = diff["main"]
    flows = main["trials"]["flows"]
    assert main["outcome"] == "app_stun_dpi", flows
    assert [f[3] for f in flows if f[0] == "b"] == ["ok", "ok"]  # before: both neutral pass
    assert not any(f[1] == "app_stun" and f[3] == "ok" for f in flows)
    assert len({f[2] for f in flows}) == len(flows)  # every trial its own source port
    if residual_s:
        assert main["residual_blocking"] is True
        assert main["residual_kinds"] == ["random", "stun"]
    assert diff["confirmation"]["outcome"] == "app_stun_dpi", diff["confirmation"]
    assert methods_for("differential", diff["confirmation"]) == ["app_stun_dpi"]
    verdict = calls_verdict(records)
    assert verdict["status"] == "blocked" and verdict["methods"] == ["app_stun_dpi"]
    seen = decisions(log)
    assert {d["label"] for d in seen if d["event"] == "drop" and d["reason"] == "app"} == {
        "STUN.WhatsAppCall"}
    if residual_s:
        assert any(d["event"] == "drop" and d["reason"] == "residual" for d in seen)


def test_icmp_reject_by_the_censor_is_udp_blocked_with_its_address(lab: Lab,
                                                                 tmp_path: Path) -> None:
    """iptables on the censor answers UDP to port 3478 with ICMP port unreachable, from its
    own address: the stun check to the service's server, the udp echo and the differential
    to the reflector all say udp_blocked and name the censor (hop 2). An ICMP error from
    the reflector itself (a port where it does not listen) stays 'nothing listens'."""
    lab.censor_exec(["iptables", "-A", "FORWARD", "-p", "udp", "--dport", "3478", "-j",
                     "REJECT", "--reject-with", "icmp-port-unreachable"])
    stun_host = next(h for h in lab.targets.hosts("whatsapp", "calls"))
    file = targets(lab, tmp_path,
                   f'check = "stun"\nhosts = ["{stun_host}"]\nports = [3478]\n'
                   f"expected_networks = {LAB_NETS}",
                   'check = "udp"\nports = [3478, 5999]', DIFFERENTIAL)
    records = run_probe(lab, tmp_path, file)
    stun_keys = measurements(records, "stun")["main"]
    assert stun_keys["failure"] == "port_unreachable"
    assert stun_keys["icmp_from"] == A.CENSOR_DOWN
    assert methods_for("stun", stun_keys) == ["udp_blocked"]
    udp = {r["input"]: r["test_keys"] for r in records
           if r.get("test_name") == "udp" and r["pass"] == "main"}
    blocked = next(v for k, v in udp.items() if k.endswith(":3478"))
    assert blocked["outcome"] == "udp_blocked" and blocked["icmp_from"] == A.CENSOR_DOWN
    closed = next(v for k, v in udp.items() if k.endswith(":5999"))
    assert closed["outcome"] == "nothing_listens" and closed["echo"]["icmp_from"] == A.REFLECTOR
    diff = measurements(records, "differential")["main"]
    assert diff["outcome"] == "udp_blocked" and diff["icmp_from"] == A.CENSOR_DOWN
    # Port 5999 works as a path (the reflector itself said nothing listens): the one
    # reachable endpoint; the three others are udp_blocked.
    verdict = calls_verdict(records)
    assert (verdict["status"], verdict["reachable"], verdict["total"], verdict["methods"]) \
        == ("impaired", 1, 4, ["udp_blocked"])
