"""DNS tampering evidence beyond the lookup itself: a DoH control and injection probes.

Two signals, each as OONI or the literature defines it (research/techniques.md 4.1);
the third, bogon answers, is :mod:`probe.bogons`:

* **Control resolver** (``--doh URL``, RFC 8484 POST ``application/dns-message``): an answer
  outside the target's ``expected_networks`` is only *suspicious* (vendors move); it is
  tampering only when the control resolver disagrees, i.e. shares no address with the
  system resolver and answers inside the expected networks.
* **Injection.** An A query sent to an address that runs no DNS server (one of the
  target's own resolved, non-bogon addresses): any DNS reply to it was forged on the path
  (OONI's retired ``dns_injection``, ts-012). The probe listens until the window ends or
  an ICMP error says the query reached the host (an on-path injector answers while the
  query passes, so nothing more can come). Late duplicates on the system resolver
  (Hold-On) are detected in :func:`probe.resolve.wire.query`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.bogons import in_expected, is_bogon
from probe.resolve.wire import fill_answers
from probe.results import note_event

if TYPE_CHECKING:
    import httpx

    from probe.net import Network

# How long an injection probe waits for a forged reply (bounded by the check's budget).
INJECTION_WAIT_S = 2.0


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
                    ca_bundle: str | None = None,
                    client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """One RFC 8484 POST to ``url``; a df-002 query record with ``engine = "doh"``.
    ``client``: a client shared by the pass's queries (its connections are reused, a
    TLS handshake each saved); without one, a client of its own."""
    import dns.message
    import dns.rdatatype

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    q.id = 0  # RFC 8484 section 4.1: cache friendly
    record: dict[str, Any] = {
        "query_type": rdtype, "hostname": qname, "engine": "doh", "resolver_address": url,
        "answers": [], "addresses": [], "rcode": None, "failure": None, "t": 0.0,
    }
    body, headers = q.to_wire(), {"content-type": "application/dns-message",
                                  "accept": "application/dns-message"}
    try:
        if client is not None:
            response = await client.post(url, content=body, headers=headers,
                                         timeout=max(deadline - t0, 0.01))
        else:
            async with net.http_client(timeout_s=max(deadline - t0, 0.01),
                                       ca_bundle=ca_bundle) as own:
                response = await own.post(url, content=body, headers=headers)
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
                         ca_bundle: str | None = None,
                         client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """A and AAAA for ``host`` through the control resolver."""
    a, aaaa = await asyncio.gather(
        doh_query(net, url, host, "A", deadline, ca_bundle, client),
        doh_query(net, url, host, "AAAA", deadline, ca_bundle, client))
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
                note_event(record, "replies", {"valid": False, "num_bytes": len(data),
                                          "t": round(loop.time() - t0, 4)})
                continue
            if not q.is_response(reply):
                note_event(record, "replies", {"valid": False, "num_bytes": len(data),
                                          "reason": failures.DNS_WRONG_QUERY_ID,
                                          "t": round(loop.time() - t0, 4)})
                continue
            entry: dict[str, Any] = {"query_type": "A", "answers": [], "addresses": [],
                                     "rcode": None, "failure": None}
            fill_answers(entry, reply, "A")
            note_event(record, "replies", {"valid": True, "rcode": entry["rcode"],
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
