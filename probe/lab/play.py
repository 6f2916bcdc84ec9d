"""Playing scenarios in a lab: apply the rules, run the proofs, run the real probe inside
the client namespace, and compare its verdicts with the scenario's expectations."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from probe.lab import addresses as A
from probe.lab.lab import Lab
from probe.lab.labtargets import STUN_CHECKS, TCP_CHECKS
from probe.lab.netns import LabError
from probe.lab.scenarios import Proof, Scenario

DEFAULT_PORTS = {"tcp": 443, "tls": 443, "http": 443, "stun": 3478, "udp": 3478,
                 "loss": 3478}


def apply_scenario(lab: Lab, scenario: Scenario) -> None:
    """Clear every rule, then apply the scenario's rules in order."""
    lab.clear_rules()
    for use in scenario.rules:
        lab.apply(use.rule, **use.select, **use.params)


def _endpoint_for(lab: Lab, proof: Proof) -> tuple[str, int | None]:
    service, function = proof.target.split("/", 1)
    kinds = (TCP_CHECKS if proof.op in ("tcp", "tls", "http") else
             STUN_CHECKS | {"udp"} if proof.op in ("stun", "udp", "loss") else None)
    for endpoint in lab.targets.endpoints:
        if endpoint["service"] != service or endpoint.get("function") != function:
            continue
        if kinds is not None and endpoint.get("check") not in kinds:
            continue
        if endpoint.get("urls"):
            parts = urlsplit(endpoint["urls"][0])
            return str(parts.hostname), parts.port or 443
        ports = endpoint.get("ports") or [None]
        return str(endpoint["hosts"][0]).lower(), ports[0]
    raise LabError(f"proof line {proof.line}: no {proof.op} endpoint for {proof.target}")


def proof_command(lab: Lab, proof: Proof) -> list[str]:
    """The :mod:`probe.lab.sockcheck` arguments a proof runs."""
    port: int | None
    if proof.target == "echo":
        host, address, port = "echo.lab.example", A.ECHO, None
    elif "/" in proof.target:
        host, port = _endpoint_for(lab, proof)
        address = lab.address_of(host)
    else:
        host, port = proof.target, None
        address = lab.address_of(host)
    port = proof.port or port or DEFAULT_PORTS.get(proof.op)
    op = proof.op
    if op == "resolve":
        return [op, host]
    if op == "dns":
        return [op, host, A.RESOLVER, address]
    if op == "tls":
        return [op, host, address, str(port), str(lab.ca_bundle), *_optional(proof.sni)]
    if op == "http":
        return [op, address, str(port), "/bytes/64000"]
    if op == "stun":
        return [op, address, str(port), *_optional(proof.flavor)]
    return [op, address, str(port)]


def _optional(value: str | None) -> list[str]:
    return [value] if value else []


def run_proof(lab: Lab, proof: Proof) -> dict[str, Any]:
    args = proof_command(lab, proof)
    result = lab.check(*args)
    result["command"] = " ".join(args)
    return result


def proof_holds(proof: Proof, result: dict[str, Any], rules_on: bool) -> bool:
    """With the rules: the result is ``expect``; without: "ok" (throttling: fast)."""
    if proof.op == "http" and proof.expect == "throttled":
        rate = float(result.get("bytes_per_s", 0.0)) if result["result"] == "ok" else 0.0
        return (rate < 200_000) if rules_on else (rate > 1_000_000)
    return bool(result["result"] == (proof.expect if rules_on else "ok"))


# --- running the real probe ----------------------------------------------------------

@dataclass
class ProbeRun:
    exit_code: int
    summary: dict[str, Any] | None
    stderr: str
    command: list[str]


def run_probe(lab: Lab, output: Path, network_type: str = "unknown",
              timeout_s: float | None = None, extra: list[str] | None = None,
              reflector: bool = True) -> ProbeRun:
    """``voip-probe run`` inside the client namespace with the lab copies of the targets,
    with the lab's reflector unless ``reflector`` is false (a volunteer's plain run)."""
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "probe", "run"]
    for path in lab.target_files:
        args += ["--targets", str(path)]
    args += ["--ca-bundle", str(lab.ca_bundle), "--output", str(output), "--json",
             "--network-type", network_type]
    if lab.reflector and reflector:
        args += ["--reflector", lab.reflector]
    args += ["--doh", lab.doh_url]
    if timeout_s is not None:
        args += ["--timeout", str(timeout_s)]
    args += extra or []
    command = ["ip", "netns", "exec", lab.ns["client"], *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    summary = None
    try:
        summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        summary = None
    return ProbeRun(proc.returncode, summary, proc.stderr, command)


@dataclass(frozen=True)
class Row:
    service: str
    function: str
    expected: str
    actual: str
    expected_methods: tuple[str, ...]
    actual_methods: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.expected == self.actual and set(self.expected_methods) <= set(
            self.actual_methods)

    @property
    def extra_methods(self) -> tuple[str, ...]:
        """Methods the probe reported beyond those expected: right ones the scenario did
        not list (a ``stun_dpi`` rule also silences an app's STUN), or a check misreading
        what it met. The row still passes; a reader should look."""
        if not self.expected_methods:
            return ()
        return tuple(m for m in self.actual_methods if m not in self.expected_methods)


def compare(summary: dict[str, Any], scenario: Scenario) -> list[Row]:
    """One row per expected verdict (``function = "*"``: every function of the service)."""
    rows = []
    services = summary.get("services", {})
    if scenario.network_status is not None:
        actual = summary.get("network", {}).get("status", "missing")
        rows.append(Row("(network)", "status", scenario.network_status, str(actual), (), ()))
    for item in scenario.expect:
        functions = services.get(item.service, {}).get("functions", {})
        names = sorted(functions) if item.function == "*" else [item.function]
        if not names:
            rows.append(Row(item.service, item.function, item.status, "missing",
                            item.methods, ()))
        for name in names:
            verdict = functions.get(name)
            actual = verdict.get("status", "missing") if verdict else "missing"
            methods = tuple(verdict.get("methods", [])) if verdict else ()
            rows.append(Row(item.service, name, item.status, actual, item.methods, methods))
    return rows
