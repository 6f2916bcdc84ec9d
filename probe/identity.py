"""Who the probe is on the network: public IP (only to scrub it), ASN, country, network name.

Sources, all named by host in ``configs/identity.toml`` (no literal address is shipped) or
given on the command line (``--stun-server``, ``--asn-db``):

1. The public IP: a STUN Binding request (RFC 8489, XOR-MAPPED-ADDRESS; retransmitted at
   500 ms, doubling) to each STUN server in turn, then DNS "what is my address" names
   asked of a named server (OpenDNS's ``myip.opendns.com`` at ``resolver1.opendns.com``).
2. ASN, country and name: a local database file (``--asn-db``: CSV or TSV lines
   ``prefix,asn,cc,name``, longest prefix wins) or DNS TXT lookups in Team Cymru's style:
   ``<reversed IPv4>.origin.asn.cymru.com`` (``<reversed nibbles>.origin6...`` for IPv6)
   answers ``"ASN | prefix | CC | registry | date"`` and ``AS<n>.asn.cymru.com`` answers
   ``"ASN | CC | registry | date | NAME"``.

Every lookup goes through the network seam, within :data:`IDENTITY_BUDGET_S`. What cannot
be learnt stays unknown, as OONI writes it (``AS0``, ``ZZ``), with a note saying why (an
offline machine fails fast: its resolver answers NXDOMAIN). The IP is returned only so
that :mod:`probe.session` can scrub it from everything written (unless ``--include-ip``).
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.model import Identity, RunConfig
from probe.net import split_host_port
from probe.privacy import learned_own_address

if TYPE_CHECKING:
    from probe.net import Network

IDENTITY_BUDGET_S = 6.0
STUN_FIRST_RTO_S = 0.5


class IdentityConfigError(Exception):
    """The identity configuration or the ASN database is invalid (file:line: reason)."""


@dataclass(frozen=True)
class DnsIpSource:
    name: str
    server: str
    rdtype: str = "A"


@dataclass(frozen=True)
class IdentityConfig:
    stun_servers: tuple[str, ...] = ()
    dns_ip: tuple[DnsIpSource, ...] = ()
    origin_zone: str = "origin.asn.cymru.com"
    origin6_zone: str = "origin6.asn.cymru.com"
    asn_zone: str = "asn.cymru.com"
    source: str = ""


def shipped_config() -> Path:
    return Path(str(resources.files("probe") / "configs" / "identity.toml"))


def load_config(path: Path | None = None) -> IdentityConfig:
    path = path or shipped_config()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IdentityConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise IdentityConfigError(f"{path}: invalid TOML: {exc}") from None
    table = doc.get("identity")
    if not isinstance(table, dict):
        raise IdentityConfigError(f"{path}:1: missing [identity] table")
    known = {"stun_servers", "dns_ip", "origin_zone", "origin6_zone", "asn_zone"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise IdentityConfigError(f"{path}: unknown key {unknown[0]!r} in [identity] "
                                  f"(allowed: {', '.join(sorted(known))})")
    dns_ip = []
    for item in table.get("dns_ip", []):
        if not isinstance(item, dict) or not {"name", "server"} <= set(item):
            raise IdentityConfigError(f"{path}: each [[identity.dns_ip]] needs name and server")
        dns_ip.append(DnsIpSource(str(item["name"]), str(item["server"]),
                                  str(item.get("type", "A"))))
    return IdentityConfig(
        stun_servers=tuple(str(s) for s in table.get("stun_servers", [])),
        dns_ip=tuple(dns_ip),
        origin_zone=str(table.get("origin_zone", "origin.asn.cymru.com")),
        origin6_zone=str(table.get("origin6_zone", "origin6.asn.cymru.com")),
        asn_zone=str(table.get("asn_zone", "asn.cymru.com")),
        source=str(path))


# --- the ASN database file ---------------------------------------------------------------


@dataclass
class AsnDatabase:
    rows: list[tuple[Any, str, str, str]] = field(default_factory=list)

    def lookup(self, ip: str) -> tuple[str, str, str] | None:
        address = ipaddress.ip_address(ip)
        best = None
        for net, asn, cc, name in self.rows:
            if address.version == net.version and address in net and (
                    best is None or net.prefixlen > best[0].prefixlen):
                best = (net, asn, cc, name)
        return None if best is None else best[1:]


def load_asn_db(path: Path) -> AsnDatabase:
    """CSV or TSV ``prefix,asn,cc,name`` (``#`` comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IdentityConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise IdentityConfigError(f"{path}: not UTF-8 text") from None
    db = AsnDatabase()
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    for lineno, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise IdentityConfigError(f"{path}:{lineno}: expected prefix,asn,cc[,name]")
        prefix, asn, cc = (c.strip() for c in row[:3])
        name = row[3].strip() if len(row) > 3 else ""
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise IdentityConfigError(f"{path}:{lineno}: {prefix!r} is not a prefix") from None
        number = asn.upper().removeprefix("AS")
        if not number.isdigit():
            raise IdentityConfigError(f"{path}:{lineno}: {asn!r} is not an AS number")
        if len(cc) != 2 or not cc.isalpha():
            raise IdentityConfigError(f"{path}:{lineno}: {cc!r} is not a country code")
        db.rows.append((net, number, cc.upper(), name))
    return db


# --- lookups ----------------------------------------------------------------------------


async def lookup(cfg: RunConfig, net: Network) -> Identity:
    """The probe's identity; never raises for network trouble (a bad file does raise)."""
    conf = load_config(Path(cfg.identity_config) if cfg.identity_config else None)
    db = load_asn_db(Path(cfg.asn_db)) if cfg.asn_db else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(IDENTITY_BUDGET_S, max(cfg.timeout_s, 1.0))
    stun_servers = tuple(cfg.stun_servers) or conf.stun_servers
    tried: list[str] = []
    ip, ip_source = await _public_ip(net, cfg, conf, stun_servers, deadline, tried)
    if ip is None:
        return Identity(source="unknown", note="public address unknown (" + "; ".join(tried)
                        + "): network identity left as AS0/ZZ")
    if db is not None and cfg.asn_db:
        found = db.lookup(ip)
        if found is None:
            # The file's name only: its folder may name the volunteer (/home/<user>/...).
            return Identity(ip=ip, source=f"{ip_source}; asn-db",
                            note=f"address not in the ASN database {Path(cfg.asn_db).name}")
        asn, cc, name = found
        return Identity(asn=f"AS{asn}", cc=cc, network_name=name or None, ip=ip,
                        source=f"{ip_source}; asn-db")
    origin, why = await cymru_origin(net, cfg, conf, ip, deadline)
    if origin is None:
        return Identity(ip=ip, source=ip_source, note=f"ASN lookup failed ({why})")
    asn, cc = origin
    as_name, _ = await cymru_name(net, cfg, conf, asn, deadline)
    return Identity(asn=f"AS{asn}", cc=cc or "ZZ", network_name=as_name, ip=ip,
                    source=f"{ip_source}; dns-txt {conf.origin_zone}")


async def _public_ip(net: Network, cfg: RunConfig, conf: IdentityConfig,
                     stun_servers: tuple[str, ...], deadline: float,
                     tried: list[str]) -> tuple[str | None, str]:
    for server in stun_servers:
        host, port = split_host_port(server, 3478)
        ip, why = await stun_public_ip(net, cfg, host, port, deadline)
        if ip is not None:
            return ip, f"stun {server}"
        tried.append(f"stun {server}: {why}")
    for source in conf.dns_ip:
        ip, why = await dns_public_ip(net, cfg, source, deadline)
        if ip is not None:
            return ip, f"dns {source.name}"
        tried.append(f"dns {source.name}: {why}")
    if not stun_servers and not conf.dns_ip:
        tried.append("no source configured")
    return None, ""


async def _resolve(net: Network, cfg: RunConfig, host: str, deadline: float,
                   rdtype: str = "A") -> tuple[list[str], str | None, list[dict[str, Any]]]:
    """A lookup through the run's resolver; returns (addresses, failure, answers)."""
    from probe.resolve import HostResolver, query

    try:
        ipaddress.ip_address(host)
        return [host], None, []
    except ValueError:
        pass
    server = HostResolver(net, cfg).server()
    if server is None:
        return [], failures.DNS_NO_RESOLVER, []
    # Identity measures nothing about the path: no listening for late duplicates.
    record = await query(net, server[0], server[1], host, rdtype, deadline, duplicates=False)
    return record["addresses"], record["failure"], record["answers"]


async def stun_public_ip(net: Network, cfg: RunConfig, host: str, port: int,
                         deadline: float) -> tuple[str | None, str]:
    """The XOR-MAPPED-ADDRESS a STUN server reports, or (None, failure)."""
    from probe import stun

    addresses, failure, _ = await _resolve(net, cfg, host, deadline)
    v4 = [a for a in addresses if ":" not in a]
    if not v4:
        return None, failure or failures.DNS_NO_ANSWER
    loop = asyncio.get_running_loop()
    request = stun.binding_request()
    wire = request.encode(fingerprint=True)
    try:
        flow = await net.udp_open(v4[0], port)
    except Exception as exc:  # network failures are data
        return None, failures.classify(exc)
    try:
        rto, next_send = STUN_FIRST_RTO_S, loop.time()
        while (now := loop.time()) < deadline:
            if now >= next_send:
                await flow.send(wire)
                next_send, rto = now + rto, rto * 2
            try:
                data = await flow.recv(min(next_send, deadline) - loop.time())
            except TimeoutError:
                continue
            try:
                reply = stun.parse(data)
            except stun.StunParseError:
                continue
            if reply.transaction_id != request.transaction_id or \
                    reply.msg_type != stun.BINDING_SUCCESS:
                continue
            mapped = reply.xor_mapped_address or reply.mapped_address
            if mapped is None:
                return None, failures.STUN_MALFORMED_REPLY
            plain = reply.mapped_address
            learned_own_address(mapped.host, plain.host if plain is not None else None)
            return mapped.host, ""
        return None, failures.GENERIC_TIMEOUT
    except Exception as exc:  # network failures are data
        return None, failures.classify(exc)
    finally:
        flow.close()


async def dns_public_ip(net: Network, cfg: RunConfig, source: DnsIpSource,
                        deadline: float) -> tuple[str | None, str]:
    """Ask ``source.server`` (resolved by name) for ``source.name``: it answers with the
    address it sees the query come from."""
    from probe.resolve import query

    servers, failure, _ = await _resolve(net, cfg, source.server, deadline)
    if not servers:
        return None, failure or failures.DNS_NO_ANSWER
    record = await query(net, servers[0], 53, source.name, source.rdtype, deadline,
                         duplicates=False)
    learned_own_address(*record["addresses"])  # all of them are this probe's
    if record["addresses"]:
        return record["addresses"][0], ""
    for answer in record["answers"]:
        text = str(answer.get("data", "")).strip('"')
        try:
            found = str(ipaddress.ip_address(text))
        except ValueError:
            continue
        learned_own_address(found)
        return found, ""
    return None, record["failure"] or failures.DNS_NO_ANSWER


def origin_name(ip: str, conf: IdentityConfig) -> str:
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return ".".join(reversed(ip.split("."))) + "." + conf.origin_zone
    nibbles = address.exploded.replace(":", "")
    return ".".join(reversed(nibbles)) + "." + conf.origin6_zone


async def _txt(net: Network, cfg: RunConfig, name: str, deadline: float
               ) -> tuple[list[str], str | None]:
    _, failure, answers = await _resolve(net, cfg, name, deadline, "TXT")
    texts = [_unquote(str(a.get("data", ""))) for a in answers if a.get("answer_type") == "TXT"]
    return texts, None if texts else (failure or failures.DNS_NO_ANSWER)


def _unquote(text: str) -> str:
    # dnspython writes TXT rdata as one or more quoted strings: join them.
    parts = [p for p in text.split('"') if p.strip()]
    return "".join(parts) if parts else text


async def cymru_origin(net: Network, cfg: RunConfig, conf: IdentityConfig, ip: str,
                       deadline: float) -> tuple[tuple[str, str] | None, str]:
    """(ASN, CC) from ``ASN | prefix | CC | registry | date``."""
    texts, failure = await _txt(net, cfg, origin_name(ip, conf), deadline)
    for text in texts:
        fields = [f.strip() for f in text.split("|")]
        asn = fields[0].split()[0] if fields and fields[0] else ""
        # ASCII only: the ASN and country go into the report id and the file name, and an
        # answer is network input ("١٢٣".isdigit() is true too).
        if asn.isascii() and asn.isdigit() and len(asn) <= 10:
            code = fields[2] if len(fields) > 2 else ""
            cc = code.upper() if len(code) == 2 and code.isascii() and code.isalpha() else "ZZ"
            return (asn, cc), ""
    return None, failure or "malformed TXT answer"


async def cymru_name(net: Network, cfg: RunConfig, conf: IdentityConfig, asn: str,
                     deadline: float) -> tuple[str | None, str]:
    """The AS name from ``ASN | CC | registry | date | NAME``."""
    texts, failure = await _txt(net, cfg, f"AS{asn}.{conf.asn_zone}", deadline)
    for text in texts:
        fields = [f.strip() for f in text.split("|")]
        if len(fields) >= 5 and fields[4]:
            return fields[4], ""
    return None, failure or "malformed TXT answer"
