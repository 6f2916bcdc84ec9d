"""Scenario and replay files (``configs/scenarios/*.toml``): load, validate strictly, apply.

A scenario names censor rules, where they apply, the verdicts the probe must reach, and
direct socket checks ("proofs") showing the rules bite on their own::

    [scenario]
    name = "stun-dpi"                 # must equal the file name without .toml
    description = "..."
    network_type = "mobile"           # optional: mobile | fixed | wifi | unknown

    [network]
    status = "online"                 # optional: the run summary's network status

    [[rules]]
    rule = "stun_dpi"                 # a name from probe.lab.censor.RULES
    at = "censor"                     # optional: censor | resolver (each rule allows one)
    service = "whatsapp"              # optional selection: service, function, hosts,
    function = "calls"                #   addresses, ports; plus the rule's own keys
                                      #   (proto, flavor, answer, percent, kbytes_per_s)
    [[expect]]
    service = "whatsapp"
    function = "calls"
    status = "blocked"                # ok | impaired | blocked | inconclusive
    methods = ["stun_dpi"]            # optional: each must be among the verdict's methods

    [[proof]]
    op = "stun"                       # probe.lab.sockcheck op: resolve dns tcp tls http stun udp
    target = "echo"                   # "service/function" (its first endpoint), a host
    port = 3478                       #   name, or "echo" (the lab echo host); port optional
    expect = "generic_timeout_error"  # result with the rules ("ok" without them, always)

A replay file holds ``[replay]`` (name, description) and ``[[phases]]`` (scenario,
network_type, date as an RFC 3339 UTC time). Unknown keys and bad values raise
:class:`ScenarioError` naming the file, the line and the reason.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from probe.hostnames import has_control_chars, is_ip_literal, valid_dns_name, valid_hostname
from probe.lab.censor import PARAM_CHOICES, RULES
from probe.model import METHODS, NETWORK_TYPES, REPORTED_FUNCTIONS, STATUSES

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "configs" / "scenarios"
SELECT_KEYS = {"service": str, "function": str, "hosts": list, "addresses": list, "ports": list}
PROOF_OPS = ("resolve", "dns", "tcp", "tls", "http", "stun", "udp", "loss")
NETWORK_STATUSES = ("online", "offline")


class ScenarioError(Exception):
    """A scenario or replay file is invalid: ``file:line: reason``."""


@dataclass(frozen=True)
class RuleUse:
    rule: str
    at: str
    select: dict[str, Any]
    params: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Expectation:
    service: str
    function: str
    status: str
    methods: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Proof:
    op: str
    target: str
    expect: str
    port: int | None = None
    flavor: str | None = None
    sni: str | None = None
    line: int = 0


@dataclass
class Scenario:
    name: str
    description: str
    path: Path
    network_type: str = "unknown"
    network_status: str | None = None
    rules: list[RuleUse] = field(default_factory=list)
    expect: list[Expectation] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    scenario: str
    network_type: str
    date: datetime
    line: int


@dataclass
class Replay:
    name: str
    description: str
    path: Path
    phases: list[Phase]


class _Lines:
    """Line numbers of ``[[table]]`` headers and keys in a TOML text (for messages)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def table(self, header: str, index: int) -> int:
        pattern = re.compile(rf"^\s*\[{{1,2}}\s*{re.escape(header)}\s*\]{{1,2}}")
        seen = -1
        for number, line in enumerate(self.lines, 1):
            if pattern.match(line):
                seen += 1
                if seen == index:
                    return number
        return 0

    def key(self, start: int, key: str) -> int:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(max(start, 1), len(self.lines) + 1):
            line = self.lines[number - 1]
            if number > start and start and line.lstrip().startswith("["):
                break
            if pattern.match(line):
                return number
        return start

    def error(self, line: int, reason: str) -> ScenarioError:
        return ScenarioError(f"{self.path}:{line}: {reason}")


def _check_keys(lines: _Lines, table: dict[str, Any], allowed: set[str], line: int,
                where: str) -> None:
    for key in table:
        if key not in allowed:
            raise lines.error(lines.key(line, key),
                              f"unknown key {key!r} in {where} (allowed: "
                              f"{', '.join(sorted(allowed))})")


def _typed(lines: _Lines, table: dict[str, Any], key: str, kind: type, line: int,
           required: bool = False, choices: tuple[Any, ...] | None = None) -> Any:
    if key not in table:
        if required:
            raise lines.error(line, f"missing required key {key!r}")
        return None
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise lines.error(lines.key(line, key),
                          f"{key} must be a {kind.__name__}, not {type(value).__name__}")
    # Values reach the configuration of root daemons (dnsmasq) and firewall rules, where a
    # newline would start a directive of its own.
    for text in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        if isinstance(text, str) and has_control_chars(text):
            raise lines.error(lines.key(line, key),
                              f"{key} holds a newline or another control character ({text!r})")
    if choices is not None and value not in choices:
        raise lines.error(lines.key(line, key),
                          f"{key} = {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def _read(path: Path) -> tuple[dict[str, Any], _Lines]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _toml_error_line(str(exc))
        raise ScenarioError(f"{path}:{line}: invalid TOML: {exc}") from exc
    return doc, _Lines(path, text)


def _toml_error_line(message: str) -> int:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else 0


def load_scenario(path: Path) -> Scenario:
    doc, lines = _read(path)
    _check_keys(lines, doc, {"scenario", "network", "rules", "expect", "proof"}, 1, "the file")
    if not isinstance(doc.get("scenario"), dict):
        raise lines.error(1, "missing [scenario] table")
    head = doc["scenario"]
    hline = lines.table("scenario", 0)
    _check_keys(lines, head, {"name", "description", "network_type"}, hline,
                "[scenario]")
    name = _typed(lines, head, "name", str, hline, required=True)
    if name != path.stem:
        raise lines.error(lines.key(hline, "name"),
                          f"name {name!r} must equal the file name {path.stem!r}")
    scenario = Scenario(
        name=name, path=path,
        description=_typed(lines, head, "description", str, hline, required=True),
        network_type=_typed(lines, head, "network_type", str, hline, choices=NETWORK_TYPES)
        or "unknown",
    )
    network = doc.get("network", {})
    if not isinstance(network, dict):
        raise lines.error(lines.table("network", 0), "[network] must be a table")
    nline = lines.table("network", 0)
    _check_keys(lines, network, {"status"}, nline, "[network]")
    scenario.network_status = _typed(lines, network, "status", str, nline,
                                     choices=NETWORK_STATUSES)
    for index, table in enumerate(_array(lines, doc, "rules")):
        scenario.rules.append(_rule(lines, table, lines.table("rules", index)))
    for index, table in enumerate(_array(lines, doc, "expect")):
        scenario.expect.append(_expectation(lines, table, lines.table("expect", index)))
    for index, table in enumerate(_array(lines, doc, "proof")):
        scenario.proofs.append(_proof(lines, table, lines.table("proof", index)))
    if scenario.rules and not scenario.proofs:
        raise lines.error(1, "a scenario with rules needs at least one [[proof]] showing "
                             "they bite")
    seen: set[tuple[str, str]] = set()
    for item in scenario.expect:
        if (item.service, item.function) in seen:
            raise lines.error(item.line, f"{item.service}/{item.function} expected twice")
        seen.add((item.service, item.function))
    return scenario


def _array(lines: _Lines, doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise lines.error(lines.key(1, key), f"{key} must be written as [[{key}]] tables")
    return value


def _strings(lines: _Lines, table: dict[str, Any], key: str, line: int) -> list[str]:
    value = _typed(lines, table, key, list, line) or []
    if not all(isinstance(v, str) for v in value):
        raise lines.error(lines.key(line, key), f"{key} must be a list of strings")
    return value


def _rule(lines: _Lines, table: dict[str, Any], line: int) -> RuleUse:
    name = _typed(lines, table, "rule", str, line, required=True, choices=tuple(sorted(RULES)))
    spec = RULES[name]
    allowed = {"rule", "at", *SELECT_KEYS, *spec.params}
    _check_keys(lines, table, allowed, line, f"rule {name}")
    at = _typed(lines, table, "at", str, line, choices=spec.at) or spec.at[0]
    select: dict[str, Any] = {}
    for key, select_kind in SELECT_KEYS.items():
        value = _typed(lines, table, key, select_kind, line)
        if value is None:
            continue
        if key == "ports" and not all(isinstance(p, int) and 0 < p < 65536 for p in value):
            raise lines.error(lines.key(line, key), "ports must be integers 1-65535")
        if key in ("hosts", "addresses") and not all(isinstance(v, str) for v in value):
            raise lines.error(lines.key(line, key), f"{key} must be a list of strings")
        for v in value if key == "hosts" else ():
            if not valid_dns_name(v):
                raise lines.error(lines.key(line, key), f"{v!r} is not a host name")
        for v in value if key == "addresses" else ():
            if not _is_address(v):
                raise lines.error(lines.key(line, key), f"{v!r} is not an IP address")
        if key == "function" and value not in (*REPORTED_FUNCTIONS, "control"):
            raise lines.error(lines.key(line, key), f"unknown function {value!r}")
        select[key] = value
    params = {}
    for key, kind in spec.params.items():
        value = _typed(lines, table, key, kind, line, choices=PARAM_CHOICES.get(key))
        if value is not None:
            if key == "percent" and not 0 < value <= 100:
                raise lines.error(lines.key(line, key), "percent must be 1-100")
            if key == "answer" and not _is_address(value):
                raise lines.error(lines.key(line, key), f"answer {value!r} is not an IP address")
            params[key] = value
    if spec.needs == "addresses" and not ({"service", "hosts", "addresses"} & select.keys()):
        raise lines.error(line, f"rule {name} needs service, hosts or addresses")
    if spec.needs == "hosts" and not ({"service", "hosts"} & select.keys()):
        raise lines.error(line, f"rule {name} needs service or hosts")
    return RuleUse(rule=name, at=at, select=select, params=params, line=line)


def _is_address(value: str) -> bool:
    """An IPv4 or IPv6 address, written plainly (no scope id)."""
    return is_ip_literal(value) and "%" not in value


def _expectation(lines: _Lines, table: dict[str, Any], line: int) -> Expectation:
    _check_keys(lines, table, {"service", "function", "status", "methods"}, line, "[[expect]]")
    service = _typed(lines, table, "service", str, line, required=True)
    function = _typed(lines, table, "function", str, line, required=True,
                      choices=("*", *REPORTED_FUNCTIONS))
    status = _typed(lines, table, "status", str, line, required=True, choices=STATUSES)
    methods = _strings(lines, table, "methods", line)
    for method in methods:
        if method not in METHODS:
            raise lines.error(lines.key(line, "methods"), f"unknown method {method!r}")
    return Expectation(service, function, status, tuple(methods), line)


def _proof(lines: _Lines, table: dict[str, Any], line: int) -> Proof:
    _check_keys(lines, table, {"op", "target", "port", "flavor", "sni", "expect"}, line,
                "[[proof]]")
    port = _typed(lines, table, "port", int, line)
    if port is not None and not 0 < port < 65536:
        raise lines.error(lines.key(line, "port"), "port must be 1-65535")
    target = _typed(lines, table, "target", str, line, required=True)
    service, slash, function = target.partition("/")
    if target != "echo" and not (re.fullmatch(r"[a-z0-9][a-z0-9_-]*", service) and slash
                                 and re.fullmatch(r"[a-z]+", function)) \
            and not valid_hostname(target):
        raise lines.error(lines.key(line, "target"), f"target {target!r} is not echo, "
                          "service/function, a host name or an address")
    sni = _typed(lines, table, "sni", str, line)
    if sni is not None and not valid_dns_name(sni):
        raise lines.error(lines.key(line, "sni"), f"sni {sni!r} is not a host name")
    return Proof(op=_typed(lines, table, "op", str, line, required=True, choices=PROOF_OPS),
                 target=target,
                 expect=_typed(lines, table, "expect", str, line, required=True),
                 port=port, flavor=_typed(lines, table, "flavor", str, line),
                 sni=sni, line=line)


def load_replay(path: Path) -> Replay:
    doc, lines = _read(path)
    _check_keys(lines, doc, {"replay", "phases"}, 1, "the file")
    if not isinstance(doc.get("replay"), dict):
        raise lines.error(1, "missing [replay] table")
    rline = lines.table("replay", 0)
    _check_keys(lines, doc["replay"], {"name", "description"}, rline, "[replay]")
    name = _typed(lines, doc["replay"], "name", str, rline, required=True)
    if name != path.stem:
        raise lines.error(lines.key(rline, "name"), f"name must equal {path.stem!r}")
    phases = []
    for index, table in enumerate(_array(lines, doc, "phases")):
        line = lines.table("phases", index)
        _check_keys(lines, table, {"scenario", "network_type", "date"}, line, "[[phases]]")
        scenario = _typed(lines, table, "scenario", str, line, required=True)
        if not (path.parent / f"{scenario}.toml").exists():
            raise lines.error(lines.key(line, "scenario"), f"no scenario file {scenario}.toml")
        network_type = _typed(lines, table, "network_type", str, line, required=True,
                              choices=NETWORK_TYPES)
        date = table.get("date")
        if not isinstance(date, datetime) or date.tzinfo is None:
            raise lines.error(lines.key(line, "date"),
                              "date must be an RFC 3339 time with a zone, e.g. "
                              "2016-01-08T10:00:00Z")
        phases.append(Phase(scenario, network_type, date, line))
    if not phases:
        raise lines.error(1, "a replay needs at least one [[phases]] table")
    if [p.date for p in phases] != sorted(p.date for p in phases):
        raise lines.error(phases[0].line, "phases must be in date order")
    return Replay(name, _typed(lines, doc["replay"], "description", str, rline) or "", path,
                  phases)


def is_replay(path: Path) -> bool:
    try:
        return "replay" in tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False


def scenario_path(name: str, directory: Path = SCENARIO_DIR) -> Path:
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        return path
    candidate = directory / f"{name}.toml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.toml")))
        raise ScenarioError(f"no scenario {name!r} in {directory} (known: {known})")
    return candidate


def all_scenarios(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    return [load_scenario(p) for p in sorted(directory.glob("*.toml")) if not is_replay(p)]
