"""Signalling depth and identity in the censorship lab: the probe, run for real in the
client namespace against the lab copies of the shipped targets, tells each DNS and TLS
blocking method apart, shows none of them where the censor does something else, learns
its network identity from the lab's STUN server and Cymru-style TXT records, and writes
the client's address nowhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab

pytestmark = pytest.mark.lab

# Methods this work adds; a scenario may show only the ones it expects.
SIGNAL_METHODS = {"dns_nxdomain", "dns_servfail", "dns_timeout", "dns_injection",
                  "dns_bogon", "tls_sni", "tls_failure", "http_failure"}

# scenario -> (censor rules, {(service, function): method that must show})
SCENARIOS: dict[str, tuple[list[tuple[str, dict[str, Any]]], dict[tuple[str, str], str]]] = {
    "clean": ([], {}),
    "dns-nxdomain": ([("dns_nxdomain", {"service": "whatsapp"})],
                     {("whatsapp", "dns"): "dns_nxdomain"}),
    "dns-servfail": ([("dns_servfail", {"service": "whatsapp"})],
                     {("whatsapp", "dns"): "dns_servfail"}),
    "dns-bogon": ([("dns_bogon", {"service": "whatsapp", "answer": A.BOGON_ANSWER})],
                  {("whatsapp", "dns"): "dns_bogon"}),
    "dns-injection": ([("dns_injection", {"service": "whatsapp",
                                          "answer": A.INJECTED_ANSWER})],
                      {("whatsapp", "dns"): "dns_injection"}),
    "sni-filter": ([("sni_reset", {"service": "whatsapp"})],
                   {("whatsapp", "web"): "tls_sni", ("whatsapp", "registration"): "tls_sni"}),
    # A RST answering the SYN: the client sees a refused connection (LAB-NOTES.md).
    "tcp-reset": ([("reset_endpoint", {"service": "whatsapp", "function": "messaging"})],
                  {("whatsapp", "messaging"): "tcp_refused"}),
    "tcp-drop": ([("drop_endpoint", {"service": "whatsapp", "function": "messaging"})],
                 {("whatsapp", "messaging"): "tcp_timeout"}),
}


def stun_server(lab: Lab) -> str:
    """A STUN endpoint of the lab (coturn answers Binding requests on it)."""
    for ep in lab.targets.endpoints:
        if ep.get("check") == "stun" and ep.get("hosts") and ep.get("ports"):
            return f"{ep['hosts'][0]}:{ep['ports'][0]}"
    raise AssertionError("the lab targets have no stun endpoint")


def run_probe(lab: Lab, out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    args = [sys.executable, "-m", "probe", "run", "--ca-bundle", str(lab.ca_bundle),
            "--timeout", "5", "--json", "--network-type", "fixed", "--output", str(out),
            "--stun-server", stun_server(lab), *extra]
    for path in lab.target_files:
        args += ["--targets", str(path)]
    res = lab.client_run(args, check=False, timeout_s=240)
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout), res.stderr


def shown(summary: dict[str, Any]) -> dict[tuple[str, str], tuple[str, set[str]]]:
    return {(svc, fn): (v["status"], set(v["methods"]))
            for svc, s in summary["services"].items() for fn, v in s["functions"].items()}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_method_in_its_scenario_and_nowhere_else(lab: Lab, tmp_path: Path,
                                                      scenario: str) -> None:
    rules, wanted = SCENARIOS[scenario]
    for rule, params in rules:
        lab.apply(rule, **params)
    code, summary, stderr = run_probe(lab, tmp_path)
    assert summary["network"]["status"] == "online", stderr
    verdicts = shown(summary)
    for key, method in wanted.items():
        status, methods = verdicts[key]
        assert status == "blocked" and method in methods, (key, verdicts[key], stderr)
    allowed = set(wanted.values())
    for key, (status, methods) in verdicts.items():
        stray = (methods & SIGNAL_METHODS) - allowed
        assert not stray, (scenario, key, status, methods)
        if key[0] != "whatsapp":  # only WhatsApp is censored in these scenarios
            assert status == "ok", (scenario, key, status, methods)
    assert code == (0 if not wanted else 1), stderr


def test_identity_from_the_lab_and_the_address_written_nowhere(lab: Lab,
                                                               tmp_path: Path) -> None:
    reversed_ip = ".".join(reversed(A.CLIENT.split(".")))
    lab.add_txt_record(f"{reversed_ip}.origin.asn.cymru.com",
                       "64500 | 198.18.1.0/24 | MA | lab | 2016-01-07")
    lab.add_txt_record("AS64500.asn.cymru.com",
                       "64500 | MA | lab | 2016-01-07 | LABTEL-AS Lab Telecom, MA")
    _, summary, stderr = run_probe(lab, tmp_path / "scrubbed")
    assert (summary["network"]["asn"], summary["network"]["cc"]) == ("AS64500", "MA"), stderr
    assert summary["network"]["name"] == "LABTEL-AS Lab Telecom, MA"
    results = Path(summary["results_file"])
    assert "_AS64500_fixed_" in results.name
    assert summary["report_id"].split("_")[2:4] == ["MA", "64500"]
    written = [p for p in (tmp_path / "scrubbed").rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert A.CLIENT.encode() not in path.read_bytes(), path
    assert b"[scrubbed]" in results.read_bytes() or b"probe_ip" not in results.read_bytes()
    # The grep can fail: with --include-ip the same run does write the address.
    _, opted_in, _ = run_probe(lab, tmp_path / "opted-in", "--include-ip")
    assert A.CLIENT.encode() in Path(opted_in["results_file"]).read_bytes()
