"""Where the censor sits: TTL-limited test/control probes and injection fingerprints.

For a blocked endpoint, the same path is probed hop by hop (IP TTL 1, 2, ...) with a
*test* payload that triggers the blocking and a *control* payload that does not:

* DNS: a query for the blocked name vs a query for a control name, to the same resolver;
* UDP/STUN: a STUN Binding request (app-flavoured when the endpoint is) vs random bytes
  of the same length, to the same address and port; when the server does not answer the
  control (it blocks that address, or the server ignores random bytes), the control goes
  to the reflector on the same port (``control_address``), which echoes it: the two share
  the path up to the censor, so the hop where they part is still found, even when the
  blocked server is the first hop past the censor;
* TCP: a SYN to the blocked address and port vs a traceroute datagram to the same address;
* TLS: after a full-TTL TCP handshake, the ClientHello with the real SNI vs one with a
  decoy SNI (OONI ``tlsmiddlebox``, ts-037).

Below the censor both get ICMP time exceeded from the same routers; the first hop where
they differ places it (CenTrace). If the test packet still reached that hop's router
(its time exceeded came back) and something answered anyway, an on-path device at that
hop answered (injection): the censor is at that hop. If the test died silently or was
answered without reaching that router, an in-path device after the previous router
dropped or rejected it: the censor is the previous hop, the last one that answered the
test. ``hop`` counts from the probe (1 = first router, DESIGN.md "Locate").

Injection fingerprints (Weaver/Sommer/Paxson; Hold-On): a RST or DNS answer whose IP TTL
(off by more than one) or IP ID pattern differs from the genuine server's packets, seen
in a control exchange with the same server, is flagged ``injected``; so is an answer to a
probe whose TTL could not reach the server. Residual blocking is recorded: after a
full-TTL trigger, the control exchange is repeated; failing now when it worked before
means the censor keeps blocking that host for a while (GFW-style).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probe import failures, reflector
from probe.locate.ttl import FULL_TTL, Observer, Packet, ProbeResult
from probe.model import Record

KINDS = ("dns", "udp", "tcp", "tls")
REFLECTOR_BASELINE_PORT = 443  # where a reflector surely listens (its cookie is for all)
TEST_NAME = "locate"
DEFAULT_CONTROL_NAME = "example.com"
DEFAULT_DECOY_SNI = "example.com"
TRACEROUTE_PORT = 33434
REACHED = ("reply", "rst", "unreachable")
RESIDUAL_RECHECK_S = 2.0

Log = Callable[[str], None]


@dataclass(slots=True)
class Target:
    """One endpoint to locate, and how to probe it."""

    service: str
    function: str
    input: str
    kind: str  # dns | udp | tcp | tls
    address: str
    port: int
    host: str | None = None  # the name queried (dns) or sent as SNI (tls)
    method: str | None = None
    flavor: str | None = None  # app-flavoured STUN (e.g. "whatsapp")
    control_name: str = DEFAULT_CONTROL_NAME
    decoy_sni: str = DEFAULT_DECOY_SNI
    at_reflector: bool = False  # the project's reflector: it answers only with its cookie
    reflector_cookie: bytes | None = None
    control_address: str | None = None  # udp: the reflector, for a control it echoes
    control_cookie: bytes | None = None  # the reflector's cookie, for that control

    @property
    def endpoint(self) -> str:
        scheme = "tcp" if self.kind in ("tcp", "tls") else "udp"
        return f"{scheme}://{self.address}:{self.port}"

    def probe_key(self) -> tuple[Any, ...]:
        return (self.kind, self.address, self.port, self.host, self.flavor)


@dataclass(slots=True)
class Hop:
    ttl: int
    control: ProbeResult
    test: ProbeResult

    def to_json(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "control": self.control.to_json(),
                "test": self.test.to_json()}


@dataclass(slots=True)
class Location:
    """What locating one target found (the finding plus the evidence)."""

    hop: int | None = None
    hop_address: str | None = None
    diverged_at: int | None = None
    test_outcome: str | None = None
    injected: bool = False
    injected_evidence: list[str] = field(default_factory=list)
    residual_blocking: bool | None = None
    residual_checks: list[dict[str, Any]] = field(default_factory=list)
    control_address: str | None = None  # where the hop loop's controls went, if not the server
    hops: list[Hop] = field(default_factory=list)
    baseline: list[Packet] = field(default_factory=list)
    suspects: list[Packet] = field(default_factory=list)
    failure: str | None = None  # why it could not run (e.g. no address)
    runtime_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "hop": self.hop, "hop_address": self.hop_address,
            "diverged_at": self.diverged_at, "test_outcome": self.test_outcome,
            "injected": self.injected, "injected_evidence": list(self.injected_evidence),
            "residual_blocking": self.residual_blocking,
            "residual_checks": list(self.residual_checks),
            "control_address": self.control_address,
            "baseline": [p.to_json() for p in self.baseline],
            "suspects": [p.to_json() for p in self.suspects],
            "hops": [h.to_json() for h in self.hops],
        }


@dataclass(frozen=True, slots=True)
class Settings:
    max_hops: int = 30
    wait_s: float = 1.0  # how long one probe waits for an answer
    connect_timeout_s: float = 5.0  # full-TTL TCP handshakes (TLS probes)
    silent_hops: int = 3  # stop after this many hops where nothing answers


# --- probes per kind -------------------------------------------------------------------


class Prober:
    """Test and control probes for one target, at any TTL."""

    def __init__(self, target: Target, obs: Observer, settings: Settings) -> None:
        self.t = target
        self.obs = obs
        self.s = settings
        self._hello: dict[str, bytes] = {}
        self.control_to = target.address  # udp controls: the server, or the reflector

    def test(self, ttl: int) -> ProbeResult:
        return self._probe(ttl, control=False)

    def control(self, ttl: int) -> ProbeResult:
        return self._probe(ttl, control=True)

    def _probe(self, ttl: int, control: bool) -> ProbeResult:
        from probe.locate import ttl as tp

        t, w = self.t, self.s.wait_s
        if t.kind == "dns":
            name = t.control_name if control else (t.host or "")
            return tp.udp_probe(self.obs, t.address, t.port, dns_query(name), ttl, w)
        if t.kind == "udp":
            payload = stun_payload(t.flavor)
            if control:
                payload = random_bytes_like(payload)
                if self.control_to != t.address:  # the reflector: with its token
                    if t.control_cookie is not None:
                        payload = reflector.with_token(payload, t.control_cookie, "random")
                    return tp.udp_probe(self.obs, self.control_to, t.port, payload, ttl, w)
            if t.reflector_cookie is not None:  # a token where DPI does not look
                payload = reflector.with_token(payload, t.reflector_cookie,
                                               "random" if control else "stun")
            return tp.udp_probe(self.obs, t.address, t.port, payload, ttl, w)
        if t.kind == "tcp":
            if control:
                return tp.udp_probe(self.obs, t.address, TRACEROUTE_PORT, b"\x00" * 12, ttl, w)
            return tp.tcp_syn_probe(self.obs, t.address, t.port, ttl, w)
        if t.kind == "tls":
            sni = t.decoy_sni if control else (t.host or "")
            if sni not in self._hello:
                self._hello[sni] = tp.client_hello(sni)
            return tp.tcp_payload_probe(self.obs, t.address, t.port, self._hello[sni], ttl, w,
                                        self.s.connect_timeout_s)
        raise ValueError(f"no probe for kind {t.kind!r}")


def dns_query(name: str) -> bytes:
    import dns.flags
    import dns.message

    q = dns.message.make_query(name, "A")
    q.flags |= dns.flags.RD
    return bytes(q.to_wire())


def stun_payload(flavor: str | None) -> bytes:
    from probe import stun

    if flavor == "whatsapp":
        msg = stun.binding_request(msg_type=stun.WHATSAPP_TYPES[0], software=None,
                                   extra=[(stun.WHATSAPP_ATTRS[0], b"\x00\x00\x00\x01")])
    else:
        msg = stun.binding_request()
    return msg.encode(fingerprint=flavor is None)


def random_bytes_like(payload: bytes) -> bytes:
    """Random bytes of the same length that cannot pass for STUN (first bits, cookie)."""
    while True:
        data = bytes([0x80 | (os.urandom(1)[0] & 0x3F)]) + os.urandom(len(payload) - 1)
        if data[4:8] != b"\x21\x12\xa4\x42":
            return data


# --- the hop loop and its reading -------------------------------------------------------


def diverges(control: ProbeResult, test: ProbeResult) -> bool:
    """Test and control differ the way blocking makes them differ: the control crossed
    this hop (time exceeded) or reached the server, and the test got something else
    (nothing, a RST, an ICMP error, or an answer before the server could be reached)."""
    c, t = control.outcome, test.outcome
    if c not in ("time_exceeded", "reply"):
        return False
    return t not in (c, "time_exceeded", "connect_failed")


def trace(prober: Prober, settings: Settings, log: Log | None = None) -> Location:
    """Probe hop by hop until test and control differ, the server is reached, or the
    path goes silent; then place the censor."""
    loc = Location()
    silent = 0
    for ttl in range(1, settings.max_hops + 1):
        control = prober.control(ttl)
        if control.outcome == "none":  # one loss is no evidence: try once more
            control = prober.control(ttl)
        test = prober.test(ttl)
        if test.outcome == "none" and control.outcome != "none":
            again = prober.test(ttl)
            if again.outcome != "none":
                test = again
        loc.hops.append(Hop(ttl, control, test))
        if log:
            log(f"  ttl {ttl}: control {control.outcome} "
                f"{control.time_exceeded_from or ''} / test {test.outcome} "
                f"{test.time_exceeded_from or ''}".rstrip())
        if diverges(control, test):
            _place(loc, ttl)
            return loc
        if control.outcome in (*REACHED, "connect_failed") or test.outcome in REACHED \
                or control.time_exceeded_from in {prober.t.address,
                                                  getattr(prober, "control_to", prober.t.address)}:
            return loc
        silent = silent + 1 if control.outcome == test.outcome == "none" else 0
        if silent >= settings.silent_hops:
            return loc
    return loc


def _place(loc: Location, ttl: int) -> None:
    hop = loc.hops[-1]
    loc.diverged_at = ttl
    loc.test_outcome = hop.test.outcome
    if hop.test.time_exceeded_from is not None:
        # The test reached this hop's router and was answered anyway: an on-path device
        # at this hop saw it.
        loc.hop = ttl
        loc.hop_address = hop.control.time_exceeded_from or hop.test.time_exceeded_from
        return
    # Dropped or answered without reaching this router: the device sits after the last
    # router that answered the test.
    if ttl == 1:
        loc.hop, loc.hop_address = 1, hop.control.time_exceeded_from
        return
    before = loc.hops[-2]
    loc.hop = ttl - 1
    loc.hop_address = before.test.time_exceeded_from or before.control.time_exceeded_from


def _from_server(result: ProbeResult, address: str) -> list[Packet]:
    return [p for p in result.packets if p.src == address
            and p.kind in ("tcp", "udp", "unreachable")]


def _works(result: ProbeResult, target: Target) -> bool:
    """The control exchange reached the server and got its answer."""
    if target.kind == "tcp":  # the traceroute datagram: port unreachable from the server
        return bool(_from_server(result, target.address))
    return result.outcome == "reply"


def _suspects(results: Iterable[ProbeResult]) -> list[Packet]:
    return [p for r in results for p in r.packets
            if p.kind == "udp" or (p.kind == "tcp" and "R" in p.flags)]


def fingerprint(suspects: Sequence[Packet], baseline: Sequence[Packet]) -> list[str]:
    """Evidence that suspect answers were not sent by the server: IP TTL off by more
    than one from every genuine packet, or IP IDs where the server sends none (zero)."""
    evidence: list[str] = []
    if not suspects or not baseline:
        return evidence
    ttls = {p.ip_ttl for p in baseline}
    genuine_zero_id = all(p.ip_id == 0 for p in baseline)
    for s in suspects:
        if all(abs(s.ip_ttl - g) > 1 for g in ttls) and "ip_ttl_mismatch" not in evidence:
            evidence.append("ip_ttl_mismatch")
        if genuine_zero_id and s.ip_id != 0 and "ip_id_mismatch" not in evidence:
            evidence.append("ip_id_mismatch")
    return evidence


def locate_target(target: Target, obs: Observer, settings: Settings,
                  log: Log | None = None) -> Location:
    """Locate one target: baseline, hop loop, full-TTL trigger, residual check."""
    prober = Prober(target, obs, settings)
    before = prober.control(FULL_TTL)
    baseline = _from_server(before, target.address)
    reflected = (target.kind == "udp" and target.control_address is not None
                 and target.control_address != target.address and not _works(before, target))
    if reflected:
        prober.control_to = str(target.control_address)
    loc = trace(prober, settings, log)
    prober.control_to = target.address  # the residual checks are the server's
    if reflected:
        loc.control_address = target.control_address
    loc.baseline = baseline
    trigger = prober.test(FULL_TTL)
    limited = [loc.hops[-1].test] if loc.diverged_at is not None else []
    loc.suspects = _suspects([*limited, trigger])
    evidence = fingerprint(loc.suspects, baseline)
    if limited and loc.test_outcome in ("reply", "rst") \
            and loc.hops[-1].control.outcome == "time_exceeded":
        evidence.insert(0, "answer_before_server")
    if target.kind == "dns" and len({p.payload[2:] for p in trigger.packets
                                     if p.kind == "udp"}) > 1:
        evidence.append("differing_answers")
    loc.injected = bool(evidence)
    loc.injected_evidence = evidence
    if _works(before, target):
        after = prober.control(FULL_TTL)
        loc.residual_checks.append({"after_s": 0.0, "outcome": after.outcome,
                                    "works": _works(after, target)})
        if not _works(after, target):
            time.sleep(RESIDUAL_RECHECK_S)
            later = prober.control(FULL_TTL)
            loc.residual_checks.append({"after_s": RESIDUAL_RECHECK_S,
                                        "outcome": later.outcome,
                                        "works": _works(later, target)})
        loc.residual_blocking = not loc.residual_checks[0]["works"]
    return loc


# --- running it -------------------------------------------------------------------------


@dataclass(slots=True)
class Finding:
    target: Target
    location: Location

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md "Locate" finding, exactly."""
        t, loc = self.target, self.location
        return {"service": t.service, "function": t.function, "endpoint": t.endpoint,
                "method": t.method or observed_method(t, loc), "hop": loc.hop,
                "hop_address": loc.hop_address, "injected": loc.injected}


def locate(targets: Sequence[Target], settings: Settings | None = None,
           log: Log | None = None) -> list[Finding]:
    """Locate every target (each distinct probe once); one finding per target."""
    settings = settings or Settings()
    done: dict[tuple[Any, ...], Location] = {}
    findings: list[Finding] = []
    watch = {a for t in targets for a in (t.address, t.control_address) if a}
    cookies: dict[str, bytes | None] = {}

    def cookie(address: str, port: int) -> bytes | None:
        if address not in cookies:
            cookies[address] = reflector.fetch_cookie(
                address, dict.fromkeys((REFLECTOR_BASELINE_PORT, port)))
        return cookies[address]

    with Observer(watch) as obs:
        for target in targets:
            if target.at_reflector and target.address and cannot_locate(target) is None:
                target.reflector_cookie = cookie(target.address, target.port)
            if target.control_address and target.address and cannot_locate(target) is None:
                target.control_cookie = cookie(target.control_address, target.port)
            key = target.probe_key()
            if key not in done:
                why = cannot_locate(target)
                if why is not None:
                    done[key] = Location(failure=f"{failures.NOT_APPLICABLE}: {why}")
                    if log:
                        log(f"cannot locate {target.input}: {why}")
                else:
                    if log:
                        log(f"locating {target.service} {target.function} {target.input} "
                            f"({target.kind} {target.endpoint})")
                    t0 = time.monotonic()
                    done[key] = locate_target(target, obs, settings, log)
                    done[key].runtime_s = time.monotonic() - t0
                    if log:
                        log(f"  {describe(done[key])}")
            findings.append(Finding(target, done[key]))
    return findings


def cannot_locate(target: Target) -> str | None:
    import ipaddress

    if not target.address:
        return "no address to probe"
    if target.kind not in KINDS:
        return f"no TTL-limited probe for {target.input}"
    if ipaddress.ip_address(target.address).is_loopback:
        return (f"{target.address} is on this machine (a local DNS stub?); give --resolver "
                "the network's resolver")
    return None


def describe(loc: Location) -> str:
    """One line for people: where, whether forged, whether residual."""
    where = (f"hop {loc.hop} ({loc.hop_address or 'address unknown'})" if loc.hop is not None
             else "not located (test and control were never treated differently)")
    parts = [where]
    if loc.injected:
        parts.append(f"injected ({', '.join(loc.injected_evidence)})")
    if loc.residual_blocking is not None:
        parts.append("residual blocking" if loc.residual_blocking else "no residual blocking")
    return "; ".join(parts)


def observed_method(target: Target, loc: Location) -> str | None:
    """The blocking method the probes themselves show (for endpoints given by hand)."""
    if loc.diverged_at is None:
        return None
    outcome = loc.test_outcome
    if target.kind == "dns":
        return "dns_injection" if outcome == "reply" else "dns_timeout"
    if target.kind == "udp":
        return "app_stun_dpi" if target.flavor else "stun_dpi"
    if target.kind == "tls":
        return "tls_sni"
    return "tcp_reset" if outcome == "rst" else "tcp_timeout"


def finding_record(base: Record, finding: Finding) -> Record:
    """A results-file line for one finding (test_name ``locate``; not a check, so the
    verdicts leave it out)."""
    from probe.runner import ooni_time

    t, loc = finding.target, finding.location
    rec = dict(base)
    rec.update({
        "measurement_start_time": ooni_time(datetime.now(UTC)),
        "test_runtime": round(loc.runtime_s, 3),
        "input": t.input,
        "test_name": TEST_NAME,
        "service": t.service,
        "function": t.function,
        "pass": TEST_NAME,
        "test_keys": {"failure": loc.failure, **finding.to_json(), "kind": t.kind,
                      "host": t.host, **loc.to_json()},
    })
    return rec
