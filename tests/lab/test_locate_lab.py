"""``voip-probe locate`` in the lab: the censor sits at hop 2 (r1 -> censor -> r3) and
locate must name that hop and its address for DNS injection, RST injection, STUN DPI and
SNI filtering, tell forged answers from genuine ones, and name nothing when nothing is
blocked. ``run --deep`` adds the findings to the run without changing its verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab
from probe.results import read_results
from probe.verdicts import summarize

HERE = Path(__file__).parent
MINI = HERE / "mini_targets.toml"
LOCATE_TARGETS = HERE / "locate_targets.toml"
pytestmark = [pytest.mark.lab, pytest.mark.lab_targets([str(MINI), str(LOCATE_TARGETS)])]

# scenario -> (rule, rule selection, --endpoint, service, method, injected)
SCENARIOS: dict[str, tuple[str, dict[str, Any], str, str, str, bool]] = {
    "dns_injection": ("dns_injection", {"hosts": ["e1.whatsapp.net"]},
                      "dns://e1.whatsapp.net", "whatsapp", "dns_injection", True),
    "rst_injection": ("rst_injection", {"addresses": ["e1.whatsapp.net"], "ports": [443]},
                      "tcp://e1.whatsapp.net:443", "whatsapp", "tcp_reset", True),
    "stun_dpi": ("stun_dpi", {}, "stun://stun.whatsapp.lab:3478", "whatsapp",
                 "stun_dpi", False),
    "sni_filtering": ("sni_reset", {"hosts": ["v.whatsapp.net"]},
                      "tls://v.whatsapp.net:443", "whatsapp", "tls_sni", True),
}


def voip_probe(lab: Lab, *args: str) -> Any:
    return lab.client_run([sys.executable, "-m", "probe", *args], check=False, timeout_s=180)


def locate_json(lab: Lab, *endpoints: str) -> tuple[int, list[dict[str, Any]], str]:
    args = [a for e in endpoints for a in ("--endpoint", e)]
    out = voip_probe(lab, "locate", *args, "--resolver", A.RESOLVER, "--timeout", "3",
                     "--json", "--targets", str(lab_copy(lab, LOCATE_TARGETS)))
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)["findings"], out.stderr


def lab_copy(lab: Lab, source: Path) -> Path:
    return next(p for p in lab.target_files if p.name == source.name)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_locate_names_the_censor_hop(lab: Lab, scenario: str) -> None:
    rule, selection, endpoint, service, method, injected = SCENARIOS[scenario]
    if "addresses" in selection:  # forge RSTs for SYNs to these hosts' addresses
        selection = {**selection, "addresses": [lab.address_of(h)
                                                for h in selection["addresses"]]}
    lab.apply(rule, **selection)
    code, findings, stderr = locate_json(lab, endpoint)
    assert code == 1, stderr
    assert len(findings) == 1, findings
    finding = findings[0]
    assert set(finding) == {"service", "function", "endpoint", "method", "hop",
                            "hop_address", "injected"}
    assert finding["hop"] == lab.censor_hop == 2, stderr
    assert finding["hop_address"] == lab.censor_address
    assert finding["method"] == method
    assert finding["injected"] is injected, stderr
    assert finding["service"] == service
    host = endpoint.split("://")[1].split(":")[0]
    expected = (f"udp://{A.RESOLVER}:53" if endpoint.startswith("dns") else
                f"{'udp' if endpoint.startswith('stun') else 'tcp'}://"
                f"{lab.address_of(host)}:{endpoint.rsplit(':', 1)[1]}")
    assert finding["endpoint"] == expected
    assert f"[{method}]: hop 2 ({A.CENSOR_DOWN})" in stderr


@pytest.mark.slow
def test_nothing_blocked_nothing_located(lab: Lab) -> None:
    code, findings, stderr = locate_json(lab, *(s[2] for s in SCENARIOS.values()))
    assert code == 0, stderr
    assert [f["hop"] for f in findings] == [None] * len(SCENARIOS), stderr
    assert not any(f["injected"] for f in findings)


def test_run_deep_locates_blocked_endpoints_and_keeps_the_verdicts(lab: Lab,
                                                                   tmp_path: Path) -> None:
    lab.apply("rst_injection", addresses=[lab.address_of("e1.whatsapp.net")], ports=[443])
    lab.apply("stun_dpi")
    out = voip_probe(lab, "run", "--deep", "--targets", str(lab_copy(lab, LOCATE_TARGETS)),
                     "--resolver", A.RESOLVER, "--timeout", "3", "--json",
                     "--network-type", "fixed", "--output", str(tmp_path))
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout)
    assert summary["services"]["whatsapp"]["functions"]["messaging"]["status"] == "blocked"
    assert summary["services"]["whatsapp"]["functions"]["registration"]["status"] == "ok"
    findings = summary["locate"]["findings"]
    assert summary["services"]["whatsapp"]["functions"]["calls"]["status"] == "blocked"
    assert sorted(findings, key=lambda f: f["function"]) == [
        {"service": "whatsapp", "function": "calls",
         "endpoint": f"udp://{lab.address_of('stun.whatsapp.lab')}:3478",
         "method": "stun_dpi", "hop": 2, "hop_address": A.CENSOR_DOWN, "injected": False},
        {"service": "whatsapp", "function": "messaging",
         "endpoint": f"tcp://{lab.address_of('e1.whatsapp.net')}:443",
         "method": "tcp_refused", "hop": 2, "hop_address": A.CENSOR_DOWN, "injected": True}]
    results = read_results(Path(summary["results_file"]))
    located = [r for r in results.measurements if r["test_name"] == "locate"]
    assert len(located) == 2
    keys = next(r for r in located if r["function"] == "messaging")["test_keys"]
    assert keys["failure"] is None and keys["hop"] == 2
    assert "ip_ttl_mismatch" in keys["injected_evidence"]  # forged RST: TTL 63, server's 61
    assert {p["ip_ttl"] for p in keys["baseline"]} == {61}
    # The verdicts recomputed from the file (locate records included) are the run's.
    assert summarize(results.measurements)["services"] == summary["services"]
    assert results.summary is not None
    assert results.summary["measurements"] == len(results.measurements)
    # The file, locate records included, is one the collector accepts.
    from probe.collector.validate import parse_upload

    upload = parse_upload(Path(summary["results_file"]).read_bytes())
    assert upload.report_id == summary["report_id"]


RESIDUAL_SNIPPET = r'''
import json, sys
from probe.locate.core import Settings, Target, locate
target = Target("whatsapp", "registration", "tls://v.whatsapp.net:443", "tls", sys.argv[1],
                443, "v.whatsapp.net")
finding = locate([target], Settings(wait_s=0.75))[0]
print(json.dumps({**finding.to_json(), **finding.location.to_json()}))
'''


def test_residual_blocking_rule_bites_on_its_own(lab: Lab) -> None:
    host, address = "v.whatsapp.net", lab.address_of("v.whatsapp.net")
    lab.apply("sni_residual", hosts=[host], seconds=30)
    assert lab.check("tls", host, address, 443, lab.ca_bundle, "example.com")["result"] == "ok"
    assert lab.check("tls", host, address, 443, lab.ca_bundle)["result"] == "connection_reset"
    # After the trigger even the decoy name is refused (RST answering the SYN).
    decoy = lab.check("tls", host, address, 443, lab.ca_bundle, "example.com")
    assert decoy["result"] == "connection_refused"


def test_locate_records_residual_blocking(lab: Lab) -> None:
    address = lab.address_of("v.whatsapp.net")
    lab.apply("sni_residual", hosts=["v.whatsapp.net"], seconds=30)
    out = lab.client_run([sys.executable, "-c", RESIDUAL_SNIPPET, address], check=False,
                         timeout_s=120)
    found = json.loads(out.stdout or "null")
    assert found is not None, out.stderr
    assert (found["hop"], found["hop_address"], found["injected"]) == (2, A.CENSOR_DOWN, True)
    assert found["residual_blocking"] is True
    assert [c["works"] for c in found["residual_checks"]] == [False, False]
    assert found["residual_checks"][0]["outcome"] == "connect_failed"


def test_no_residual_blocking_without_it(lab: Lab) -> None:
    address = lab.address_of("v.whatsapp.net")
    lab.apply("sni_reset", hosts=["v.whatsapp.net"])
    out = lab.client_run([sys.executable, "-c", RESIDUAL_SNIPPET, address], check=False,
                         timeout_s=120)
    found = json.loads(out.stdout or "null")
    assert found is not None, out.stderr
    assert found["hop"] == 2 and found["residual_blocking"] is False
    assert [c["works"] for c in found["residual_checks"]] == [True]
