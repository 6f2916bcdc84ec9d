"""Load and validate target files (TOML) into a :class:`~probe.model.Plan`.

Format: DESIGN.md "Targets file". A file holds either one ``[service]`` table with
``[[endpoints]]`` tables, or several ``[[services]]`` tables each with
``[[services.endpoints]]``. Every problem is reported as ``file:line: reason`` and
raises :class:`TargetsError`; nothing is silently ignored (unknown keys included).

Each check declares which keys it needs and which extra options it accepts in its own
module (``SPEC``, :mod:`probe.checks`); the loader asks the check registry.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from probe.checks import check_specs
from probe.hostnames import has_control_chars, valid_hostname
from probe.model import FUNCTIONS, Endpoint, Plan, Service


class TargetsError(Exception):
    """A target file is missing, malformed or invalid. The message names file and line."""


COMMON_KEYS = {"function", "check", "hosts", "ports", "urls", "pool", "expected_networks"}
SERVICE_KEYS = {"id", "name", "endpoints"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


# --- locating tables and keys in the source text ------------------------------------

_HEADER_RE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\s\"]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(slots=True)
class _Table:
    name: str
    start: int  # 1-based line of the header
    end: int  # last line (inclusive)


class _Source:
    """The raw text of a file, to turn table/key positions into line numbers."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.tables: list[_Table] = []
        for i, line in enumerate(self.lines, 1):
            m = _HEADER_RE.match(line)
            if m and not line.lstrip().startswith("#"):
                if self.tables:
                    self.tables[-1].end = i - 1
                self.tables.append(_Table(re.sub(r"\s+", "", m.group(1)), i, len(self.lines)))

    def nth(self, name: str, index: int) -> _Table | None:
        found = [t for t in self.tables if t.name == name]
        return found[index] if index < len(found) else None

    def key_line(self, table: _Table | None, key: str) -> int:
        if table is None:
            return 1
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(table.start, table.end + 1):
            if pat.match(self.lines[i - 1]):
                return i
        return table.start

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


# --- loading ------------------------------------------------------------------------


def shipped_targets_dir() -> Path:
    """The folder of the target files shipped with the package."""
    return Path(str(resources.files("probe") / "configs" / "targets"))


def shipped_target_files() -> list[Path]:
    return sorted(shipped_targets_dir().glob("*.toml"))


def load_plan(paths: Sequence[Path] | None = None, services: Iterable[str] | None = None) -> Plan:
    """Load target files (default: the shipped ones) and keep the selected services.

    Control services (every endpoint ``function = "control"``) are always kept when
    ``services`` filters, because they decide between blocked and inconclusive.
    """
    files = list(paths) if paths else shipped_target_files()
    if not files:
        raise TargetsError("no target files given and none shipped with the package")
    loaded: list[Service] = []
    seen: dict[str, str] = {}
    for path in files:
        for svc in load_file(Path(path)):
            if svc.id in seen:
                raise TargetsError(
                    f"{svc.source}: service {svc.id!r} is already defined at {seen[svc.id]}"
                )
            seen[svc.id] = svc.source
            loaded.append(svc)
    if services is not None:
        wanted = [s.strip() for s in services if s.strip()]
        unknown = sorted(set(wanted) - set(seen))
        if unknown:
            raise TargetsError(
                f"unknown service(s) {', '.join(unknown)}; known: {', '.join(sorted(seen))}"
            )
        loaded = [s for s in loaded if s.id in wanted or s.is_control]
    return Plan(tuple(loaded))


def load_file(path: Path) -> list[Service]:
    """Parse and validate one target file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TargetsError(f"{path}: no such target file") from None
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        if m:
            where = f"{path}:{m.group(1)}"
        else:  # "at end of document": the problem is on the last line
            where = f"{path}:{max(1, len(text.splitlines()))}"
        raise TargetsError(f"{where}: invalid TOML: {exc}") from None
    src = _Source(str(path), text)
    top_unknown = set(doc) - {"service", "endpoints", "services"}
    if top_unknown:
        key = sorted(top_unknown)[0]
        line = next((i for i, ln in enumerate(src.lines, 1)
                     if re.match(rf"^\s*\[*\s*{re.escape(key)}\b", ln)), 1)
        raise TargetsError(
            f"{src.where(line)}: unknown top-level key {key!r} "
            "(expected [service] + [[endpoints]], or [[services]])"
        )
    if "services" in doc:
        if "service" in doc or "endpoints" in doc:
            raise TargetsError(
                f"{path}: use either [service] with [[endpoints]] or [[services]] tables, not both"
            )
        if not isinstance(doc["services"], list):
            raise TargetsError(f"{src.where(src.key_line(None, 'services'))}: "
                               "'services' must be an array of tables [[services]]")
        out = []
        for i, table in enumerate(doc["services"]):
            header = src.nth("services", i)
            eps = table.get("endpoints", [])
            out.append(_service(src, table, header, eps, "services.endpoints",
                                _endpoint_offset(src, header)))
        return out
    if "service" not in doc:
        raise TargetsError(f"{path}:1: missing [service] table (or [[services]] tables)")
    if not isinstance(doc["service"], dict):
        raise TargetsError(f"{path}:1: 'service' must be a table [service]")
    header = src.nth("service", 0)
    return [_service(src, doc["service"], header, doc.get("endpoints", []), "endpoints", 0)]


def _endpoint_offset(src: _Source, header: _Table | None) -> int:
    """How many [[services.endpoints]] tables come before this [[services]] table."""
    if header is None:
        return 0
    return sum(1 for t in src.tables if t.name == "services.endpoints" and t.start < header.start)


def _service(src: _Source, table: dict[str, Any], header: _Table | None,
             endpoints: Any, ep_table: str, ep_offset: int) -> Service:
    where = src.where(header.start if header else 1)
    if not isinstance(table, dict):
        raise TargetsError(f"{where}: a service must be a table")
    unknown = set(table) - SERVICE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise TargetsError(f"{src.where(src.key_line(header, key))}: unknown key {key!r} in "
                           f"service (allowed: id, name)")
    for key, value in table.items():
        bad = _with_control_chars(value)
        if bad is not None:
            raise TargetsError(f"{src.where(src.key_line(header, key))}: {key!r} holds a "
                               f"newline or another control character ({bad!r})")
    sid = table.get("id")
    if not isinstance(sid, str) or not _ID_RE.fullmatch(sid):
        raise TargetsError(
            f"{src.where(src.key_line(header, 'id'))}: service 'id' must be lower-case letters, "
            f"digits, '-' or '_' (got {sid!r})"
        )
    name = table.get("name", sid)
    if not isinstance(name, str) or not name.strip():
        raise TargetsError(f"{src.where(src.key_line(header, 'name'))}: "
                           "service 'name' must be a non-empty string")
    if not isinstance(endpoints, list) or not endpoints:
        raise TargetsError(f"{where}: service {sid!r} has no endpoints "
                           f"(add [[{ep_table}]] tables)")
    eps: list[Endpoint] = []
    for i, ep in enumerate(endpoints):
        ep_header = src.nth(ep_table, ep_offset + i) or header
        eps.extend(_endpoints(src, sid, ep, ep_header))
    return Service(id=sid, name=name, endpoints=tuple(eps), source=where)


def _endpoints(src: _Source, sid: str, ep: Any, header: _Table | None) -> list[Endpoint]:
    def err(key: str | None, reason: str) -> TargetsError:
        line = src.key_line(header, key) if key else (header.start if header else 1)
        return TargetsError(f"{src.where(line)}: {reason}")

    if not isinstance(ep, dict):
        raise err(None, "an endpoint must be a table")
    for key, value in ep.items():
        bad = _with_control_chars(value)
        if bad is not None:
            raise err(key, f"{key!r} holds a newline or another control character ({bad!r})")
    check = ep.get("check")
    specs = check_specs()
    if check not in specs:
        raise err("check", f"'check' must be one of {', '.join(sorted(specs))} "
                           f"(got {check!r})")
    spec = specs[check]
    allowed = COMMON_KEYS | set(spec.options)
    for key in ep:
        if key not in allowed:
            extra = f"; {check} accepts also: {', '.join(sorted(spec.options))}" \
                if spec.options else ""
            raise err(key, f"unknown key {key!r} for a {check} endpoint{extra}")
    function = ep.get("function")
    if function not in FUNCTIONS:
        raise err("function", f"'function' must be one of {', '.join(FUNCTIONS)} "
                              f"(got {function!r})")
    pool = ep.get("pool", "any")
    if pool not in ("any", "all"):
        raise err("pool", f"'pool' must be 'any' or 'all' (got {pool!r})")

    hosts = _list_of(ep, "hosts", spec.hosts, str, err)
    for h in hosts:
        if not valid_hostname(h):
            raise err("hosts", f"{h!r} is not a valid host name or IP address")
    ports = _list_of(ep, "ports", spec.ports, int, err)
    for p in ports:
        if isinstance(p, bool) or not 1 <= p <= 65535:
            raise err("ports", f"port {p!r} is out of range (1-65535)")
    urls = _list_of(ep, "urls", spec.urls, str, err)
    for u in urls:
        if not re.fullmatch(r"https?://[^/\s:]+(:\d+)?(/\S*)?", u):
            raise err("urls", f"{u!r} is not an http(s) URL")
    nets = _list_of(ep, "expected_networks", "optional", str, err)
    for n in nets:
        try:
            ipaddress.ip_network(n, strict=False)
        except ValueError:
            raise err("expected_networks", f"{n!r} is not a network (e.g. 157.240.0.0/16)") \
                from None
    options: dict[str, Any] = {}
    for key, validate in spec.options.items():
        if key in ep:
            problem = validate(ep[key])
            if problem:
                raise err(key, f"{key!r} {problem}")
            options[key] = ep[key]

    source = src.where(header.start if header else 1)
    common = dict(service=sid, function=function, check=check, pool=pool,
                  expected_networks=tuple(nets), options=options, source=source)
    if urls:
        return [Endpoint(url=u, **common) for u in urls]
    if hosts and ports:
        return [Endpoint(host=h, port=p, **common) for h in hosts for p in ports]
    if hosts:
        return [Endpoint(host=h, **common) for h in hosts]
    return [Endpoint(port=p, **common) for p in ports]


def _with_control_chars(value: Any) -> str | None:
    """The first string in ``value`` (a string, or lists and tables of them) that holds a
    control character: names reach other programs' configuration files (the lab's DNS
    server, firewall rules) and the results, where a newline would start a new line."""
    if isinstance(value, str):
        return value if has_control_chars(value) else None
    items = value.values() if isinstance(value, dict) else value \
        if isinstance(value, list) else ()
    for item in items:
        found = _with_control_chars(item)
        if found is not None:
            return found
    return None


def _list_of(ep: dict[str, Any], key: str, need: str, typ: type,
             err: Callable[[str | None, str], TargetsError]) -> list[Any]:
    if key not in ep:
        if need == "required":
            raise err(None, f"missing {key!r} for a {ep.get('check')} endpoint")
        return []
    if need == "forbidden":
        raise err(key, f"{key!r} is not used by a {ep.get('check')} endpoint")
    value = ep[key]
    if not isinstance(value, list) or not value:
        raise err(key, f"{key!r} must be a non-empty list")
    for v in value:
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise err(key, f"{key!r} items must be {typ.__name__}s (got {v!r})")
    return list(value)
