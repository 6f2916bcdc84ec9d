"""DNS tampering evidence: bogon answers, a DNS-over-HTTPS control, injection probes.

Used by :mod:`probe.checks.dns` (the lookups themselves live there). Three signals, each
as OONI or the literature defines it (research/techniques.md section 4.1):

* **Bogons.** An answer inside OONI's bogon list (``netxlite/bogon.go``, taken from
  ipinfo.io/bogon) is a forged answer (``dns_bogon_error``), unless it lies inside the
  target's ``expected_networks``: the censorship lab lives in 198.18.0.0/15, itself a bogon.
* **Control resolver** (``--doh URL``, RFC 8484 POST ``application/dns-message``): an answer
  outside the target's ``expected_networks`` is only *suspicious* (vendors move); it is
  tampering only when the control resolver disagrees, i.e. shares no address with the
  system resolver and answers inside the expected networks.
* **Injection.** An A query sent to an address that runs no DNS server (one of the
  target's own resolved, non-bogon addresses): any DNS reply to it was forged on the path
  (OONI's retired ``dns_injection``, ts-012). The probe listens until the window ends or
  an ICMP error says the query reached the host (an on-path injector answers while the
  query passes, so nothing more can come). Late duplicates on the system resolver
  (Hold-On) are detected in :func:`probe.checks.dns.query`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from probe import failures

if TYPE_CHECKING:
    from probe.net import Network

# How long an injection probe waits for a forged reply (bounded by the check's budget).
INJECTION_WAIT_S = 2.0

# OONI netxlite bogon list (ipinfo.io/bogon), IPv4 then IPv6.
BOGON_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "127.0.53.53/32",
    "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "::/96", "100::/64", "2001:10::/28",
    "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    # 6to4 and Teredo addresses that embed an IPv4 bogon.
    "2002::/24", "2002:a00::/24", "2002:7f00::/24", "2002:a9fe::/32", "2002:ac10::/28",
    "2002:c000::/40", "2002:c000:200::/40", "2002:c0a8::/32", "2002:c612::/31",
    "2002:c633:6400::/40", "2002:cb00:7100::/40", "2002:e000::/20", "2002:f000::/20",
    "2002:ffff:ffff::/48", "2001::/40", "2001:0:a00::/40", "2001:0:7f00::/40",
    "2001:0:a9fe::/48", "2001:0:ac10::/44", "2001:0:c000::/56", "2001:0:c000:200::/56",
    "2001:0:c0a8::/48", "2001:0:c612::/47", "2001:0:c633:6400::/56",
    "2001:0:cb00:7100::/56", "2001:0:e000::/36", "2001:0:f000::/36",
    "2001:0:ffff:ffff::/64",
)

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1)
def _bogons() -> tuple[Net, ...]:
    return tuple(ipaddress.ip_network(n) for n in BOGON_NETWORKS)


@lru_cache(maxsize=512)
def _networks(expected: tuple[str, ...]) -> tuple[Net, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in expected)


def _inside(address: str, nets: Iterable[Net]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def in_expected(address: str, expected: Sequence[str]) -> bool:
    return _inside(address, _networks(tuple(expected)))


def is_bogon(address: str, expected: Sequence[str] = ()) -> bool:
    """True for an address in the bogon list, unless it is inside ``expected``."""
    if expected and in_expected(address, expected):
        return False
    return _inside(address, _bogons())


def outside_expected(addresses: Iterable[str], expected: Sequence[str]) -> list[str]:
    """The addresses outside ``expected`` (none when no networks are expected)."""
    if not expected:
        return []
    return [a for a in addresses if not in_expected(a, expected)]


def control_disagrees(system: Sequence[str], control: Sequence[str],
                      expected: Sequence[str]) -> bool:
    """The control resolver contradicts answers outside ``expected``: it shares no address
    with them and answers inside the expected networks itself."""
    if not system or not control or set(system) & set(control):
        return False
    return any(in_expected(a, expected) for a in control)


# --- DNS over HTTPS (the control resolver) ----------------------------------------------


async def doh_query(net: Network, url: str, qname: str, rdtype: str, deadline: float,
                    ca_bundle: str | None = None) -> dict[str, Any]:
    """One RFC 8484 POST to ``url``; a df-002 query record with ``engine = "doh"``."""
    import dns.message
    import dns.rdatatype

    from probe.checks.dns import fill_answers

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    q.id = 0  # RFC 8484 section 4.1: cache friendly
    record: dict[str, Any] = {
        "query_type": rdtype, "hostname": qname, "engine": "doh", "resolver_address": url,
        "answers": [], "addresses": [], "rcode": None, "failure": None, "t": 0.0,
    }
    try:
        async with net.http_client(timeout_s=max(deadline - t0, 0.01),
                                   ca_bundle=ca_bundle) as client:
            response = await client.post(
                url, content=q.to_wire(),
                headers={"content-type": "application/dns-message",
                         "accept": "application/dns-message"})
        record["status_code"] = response.status_code
        if response.status_code != 200:
            record["failure"] = failures.HTTP_UNEXPECTED_STATUS
        else:
            reply = dns.message.from_wire(response.content)
            if not q.is_response(reply):
                record["failure"] = failures.DNS_WRONG_QUERY_ID
            else:
                fill_answers(record, reply, rdtype)
    except Exception as exc:  # network failures are data
        record["failure"] = failures.classify(exc)
    record["t"] = round(loop.time() - t0, 4)
    return record


async def control_lookup(net: Network, url: str, host: str, deadline: float,
                         ca_bundle: str | None = None) -> dict[str, Any]:
    """A and AAAA for ``host`` through the control resolver."""
    a, aaaa = await asyncio.gather(doh_query(net, url, host, "A", deadline, ca_bundle),
                                   doh_query(net, url, host, "AAAA", deadline, ca_bundle))
    addresses = [*a["addresses"], *aaaa["addresses"]]
    failure = None
    if not addresses:
        failure = a["failure"] if a["failure"] not in (None, failures.DNS_NO_ANSWER) \
            else (aaaa["failure"] or failures.DNS_NO_ANSWER)
    return {"resolver": url, "failure": failure, "addresses": addresses, "queries": [a, aaaa]}


# --- injection probe -------------------------------------------------------------------


async def injection_probe(net: Network, target_ip: str, qname: str, deadline: float,
                          wait_s: float = INJECTION_WAIT_S, port: int = 53) -> dict[str, Any]:
    """Send an A query for ``qname`` to ``target_ip``:``port``, where no DNS server runs,
    and record every DNS reply that comes back (each one was injected on the path)."""
    import dns.exception
    import dns.message

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end = min(t0 + wait_s, deadline)
    q = dns.message.make_query(qname, "A")
    record: dict[str, Any] = {"target": f"{target_ip}:{port}", "hostname": qname,
                              "injected": False, "replies": [], "ended_by": "window",
                              "failure": None, "t": 0.0}
    try:
        flow = await net.udp_open(target_ip, port)
    except Exception as exc:  # network failures are data
        record["failure"] = failures.classify(exc)
        record["ended_by"] = "error"
        return record
    try:
        await flow.send(q.to_wire())
        while (remaining := end - loop.time()) > 0:
            try:
                data = await flow.recv(remaining)
            except TimeoutError:
                break
            except OSError as exc:
                # ICMP error: the query reached (or was refused near) the host; an on-path
                # injector would have answered while it passed.
                record["failure"] = failures.classify(exc)
                record["ended_by"] = "icmp_error"
                break
            try:
                reply = dns.message.from_wire(data)
            except dns.exception.DNSException:
                record["replies"].append({"valid": False, "num_bytes": len(data),
                                          "t": round(loop.time() - t0, 4)})
                continue
            if not q.is_response(reply):
                record["replies"].append({"valid": False, "num_bytes": len(data),
                                          "reason": failures.DNS_WRONG_QUERY_ID,
                                          "t": round(loop.time() - t0, 4)})
                continue
            entry: dict[str, Any] = {"query_type": "A", "answers": [], "addresses": [],
                                     "rcode": None, "failure": None}
            from probe.checks.dns import fill_answers

            fill_answers(entry, reply, "A")
            record["replies"].append({"valid": True, "rcode": entry["rcode"],
                                      "addresses": entry["addresses"],
                                      "t": round(loop.time() - t0, 4)})
            record["injected"] = True
    except Exception as exc:  # network failures are data
        record["failure"] = failures.classify(exc)
        record["ended_by"] = "error"
    finally:
        flow.close()
    record["t"] = round(loop.time() - t0, 4)
    return record


def probe_target(addresses: Sequence[str], expected: Sequence[str]) -> str | None:
    """The address an injection probe goes to: a resolved IPv4 address that is no bogon
    (never a forged private address), preferring one inside the expected networks."""
    v4 = [a for a in addresses if ":" not in a and not is_bogon(a, expected)]
    inside = [a for a in v4 if expected and in_expected(a, expected)]
    chosen = inside or v4
    return chosen[0] if chosen else None
