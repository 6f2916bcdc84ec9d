"""DNS on the wire: one question to one server over UDP (TCP when truncated).

Queries are built with dnspython and sent through the network seam (:mod:`probe.net`), so
that NXDOMAIN, SERVFAIL, REFUSED, silence, malformed replies and ICMP errors are told
apart (getaddrinfo would fold them together). Retransmission: the same query again after
1 s, 2 s, 4 s ... within the budget; a reply with the wrong ID or question is ignored
(recorded: the first few, the latest and how many, :func:`probe.results.note_event`) and
the exchange keeps waiting. A truncated reply is retried over TCP. After
the first valid reply the exchange keeps listening a little longer (Hold-On): an on-path
injector cannot suppress the real answer, so a second, *different* reply to a query sent
once is injection (``dns_injected_reply``). Records follow OONI df-002 (``queries[]``
with ``answers[]``, ``rcode``, ``failure``).

Two hooks serve the run's resolver (:mod:`probe.resolve.resolver`): ``pace``, a semaphore
held while a query is outstanding (from its first send until its first valid reply, or
the end of the exchange), keeps a burst of lookups from flooding a small router's DNS
proxy; ``on_answer`` gets the record as it stands at the first valid reply, so checks
using the host can start while the exchange still listens for late duplicates.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from probe import failures
from probe.results import note_event

if TYPE_CHECKING:
    from probe.net import Network

FIRST_RTO_S = 1.0
# Listening for late duplicates after the first reply: 4x its round trip, within bounds
# (and at most a tenth of the budget left).
DUPLICATE_MIN_S = 0.3
DUPLICATE_MAX_S = 1.0
DUPLICATE_RTT_FACTOR = 4.0
DUPLICATE_BUDGET_SHARE = 0.1

_RCODE_FAILURE = {
    "NXDOMAIN": failures.DNS_NXDOMAIN,
    "SERVFAIL": failures.DNS_SERVFAIL,
    "REFUSED": failures.DNS_REFUSED,
}

AnswerHook = Callable[[dict[str, Any]], None]


async def query(net: Network, server_ip: str, port: int, qname: str, rdtype: str,
                deadline: float, duplicates: bool = True, *,
                pace: asyncio.Semaphore | None = None,
                on_answer: AnswerHook | None = None) -> dict[str, Any]:
    """One question to one server, with retransmission; a df-002 query record.
    ``duplicates=False`` returns at the first valid reply (lookups that measure nothing).
    ``pace`` and ``on_answer``: see the module docstring."""
    import dns.flags
    import dns.message
    import dns.rdatatype

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    q.flags |= dns.flags.RD
    wire = q.to_wire()
    record: dict[str, Any] = {
        "query_type": rdtype, "hostname": qname, "engine": "udp",
        "resolver_address": f"{server_ip}:{port}", "transaction_id": q.id,
        "answers": [], "addresses": [], "rcode": None, "failure": None,
        "attempts": 0, "ignored_replies": [], "late_replies": [], "t0": 0.0, "t": 0.0,
    }
    try:
        reply, differing = await _udp_exchange(net, server_ip, port, q, wire, deadline,
                                               record, duplicates, pace, on_answer)
        if reply is not None and reply.flags & dns.flags.TC:
            record["engine"] = "tcp"
            reply = await _tcp_exchange(net, server_ip, port, q, wire, deadline, record)
    except Exception as exc:  # network failures are data
        record["failure"] = failures.classify(exc)
        record["t"] = round(loop.time() - t0, 4)
        return record
    record["t"] = round(loop.time() - t0, 4)
    if reply is None:
        # No valid reply: say why, if something did come back (garbage, wrong ID).
        ignored = record["ignored_replies"]
        record["failure"] = ignored[-1]["reason"] if ignored else failures.GENERIC_TIMEOUT
        return record
    fill_answers(record, reply, rdtype)
    if differing and record["attempts"] == 1:
        # Differing replies to a query sent once: one of them was injected.
        record["injected_first"] = _reply_summary(reply, rdtype)
        record["failure"] = failures.DNS_INJECTED
    return record


def _reply_summary(reply: Any, rdtype: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"answers": [], "addresses": [], "rcode": None, "failure": None}
    fill_answers(entry, reply, rdtype)
    return {"rcode": entry["rcode"], "addresses": sorted(entry["addresses"])}


async def _udp_exchange(net: Network, ip: str, port: int, q: Any, wire: bytes,
                        deadline: float, record: dict[str, Any], duplicates: bool = True,
                        pace: asyncio.Semaphore | None = None,
                        on_answer: AnswerHook | None = None) -> tuple[Any, bool]:
    """(the first valid reply or None, whether a later valid reply differed from it),
    judged as they arrive: the record keeps only some of the late replies."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rdatatype

    loop = asyncio.get_running_loop()
    if pace is not None:
        try:
            await asyncio.wait_for(pace.acquire(), max(deadline - loop.time(), 0.0))
        except TimeoutError:
            return None, False  # never sent: the budget ran out waiting for a slot
    paced = pace
    t0 = loop.time()
    first: Any = None
    first_summary: dict[str, Any] = {}
    differing = False
    rdtype = dns.rdatatype.to_text(q.question[0].rdtype)
    listen_until = deadline
    try:
        flow = await net.udp_open(ip, port)
    except BaseException:
        if paced is not None:
            paced.release()
        raise
    try:
        rto = FIRST_RTO_S
        next_send = loop.time()
        while True:
            now = loop.time()
            if now >= listen_until:
                return first, differing
            if first is None and now >= next_send:
                await flow.send(wire)
                record["attempts"] += 1
                next_send = now + rto
                rto *= 2
            wait = (listen_until if first is not None else min(next_send, deadline)) \
                - loop.time()
            try:
                data = await flow.recv(max(wait, 0.0))
            except TimeoutError:
                continue
            except OSError:
                if first is not None:  # an ICMP error after the answer changes nothing
                    return first, differing
                raise
            try:
                reply = dns.message.from_wire(data)
            except dns.exception.DNSException as exc:
                note_event(record, "ignored_replies",
                           {"reason": failures.DNS_SERVER_MISBEHAVING,
                            "detail": f"{type(exc).__name__}", "num_bytes": len(data)})
                continue
            if not q.is_response(reply):
                note_event(record, "ignored_replies",
                           {"reason": failures.DNS_WRONG_QUERY_ID, "num_bytes": len(data)})
                continue
            if first is not None:
                late = _reply_summary(reply, rdtype)
                differing = differing or late != first_summary
                note_event(record, "late_replies", {**late, "t": round(loop.time() - t0, 4)})
                continue
            first = reply
            if paced is not None:  # answered: no longer outstanding
                paced.release()
                paced = None
            first_summary = _reply_summary(reply, rdtype)
            if reply.flags & dns.flags.TC or not duplicates:
                return first, differing
            if on_answer is not None:
                early = {**record, "answers": [], "addresses": []}
                fill_answers(early, reply, rdtype)
                early["t"] = round(loop.time() - t0, 4)
                on_answer(early)
            now = loop.time()
            # Never more than a tenth of what is left: every check using the host waits.
            window = min(max(DUPLICATE_MIN_S, DUPLICATE_RTT_FACTOR * (now - t0)),
                         DUPLICATE_MAX_S, DUPLICATE_BUDGET_SHARE * (deadline - now))
            listen_until = min(now + window, deadline)
    finally:
        if paced is not None:
            paced.release()
        flow.close()


async def _tcp_exchange(net: Network, ip: str, port: int, q: Any, wire: bytes,
                        deadline: float, record: dict[str, Any]) -> Any:
    import dns.message

    loop = asyncio.get_running_loop()
    stream = await net.tcp_connect(ip, port, max(deadline - loop.time(), 0.0))
    try:
        await stream.write(struct.pack("!H", len(wire)) + wire)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            chunk = await stream.read(65535, max(deadline - loop.time(), 0.0))
            if not chunk:
                raise EOFError("DNS over TCP: connection closed before the reply")
            buf += chunk
        reply = dns.message.from_wire(buf[2:2 + struct.unpack("!H", buf[:2])[0]])
        if not q.is_response(reply):
            note_event(record, "ignored_replies",
                       {"reason": failures.DNS_WRONG_QUERY_ID, "num_bytes": len(buf)})
            return None
        return reply
    finally:
        await stream.close()


def fill_answers(record: dict[str, Any], reply: Any, rdtype: str) -> None:
    import dns.rcode
    import dns.rdatatype

    rcode = dns.rcode.to_text(reply.rcode())
    record["rcode"] = rcode
    for rrset in reply.answer:
        for rdata in rrset:
            kind = dns.rdatatype.to_text(rdata.rdtype)
            entry: dict[str, Any] = {"answer_type": kind, "ttl": rrset.ttl}
            if kind == "A":
                entry["ipv4"] = rdata.address
            elif kind == "AAAA":
                entry["ipv6"] = rdata.address
            elif kind == "CNAME":
                entry["hostname"] = str(rdata.target)
            else:
                entry["data"] = rdata.to_text()[:200]
            record["answers"].append(entry)
            if kind == rdtype and kind in ("A", "AAAA"):
                record["addresses"].append(rdata.address)
    if rcode in _RCODE_FAILURE:
        record["failure"] = _RCODE_FAILURE[rcode]
    elif rcode != "NOERROR":
        record["failure"] = failures.DNS_SERVER_MISBEHAVING
    elif not any(a["answer_type"] == rdtype for a in record["answers"]):
        record["failure"] = failures.DNS_NO_ANSWER
