"""Each scenario's rules bite on their own: its direct socket checks ("proofs") succeed
with no rule in place and give the scenario's expected failure once its rules are
applied. So a passing probe verdict can never come from a rule that never matched. The
app-flavoured STUN rules drop exactly the datagrams the fake network's censor drops."""

from __future__ import annotations

import sys

import pytest

from probe import stun
from probe.checks._payloads import plain_stun, random_bytes
from probe.lab import addresses as A
from probe.lab.censor import APP_STUN
from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, proof_holds, run_proof
from probe.lab.scenarios import all_scenarios

pytestmark = pytest.mark.lab
WITH_RULES = [s for s in all_scenarios() if s.rules]


def test_every_scenario_with_rules_has_proofs() -> None:
    assert len(WITH_RULES) >= 14
    assert all(s.proofs for s in WITH_RULES)


@pytest.mark.parametrize("scenario", WITH_RULES, ids=lambda s: s.name)
def test_rules_bite(lab: Lab, scenario) -> None:  # type: ignore[no-untyped-def]
    for proof in scenario.proofs:
        result = run_proof(lab, proof)
        assert proof_holds(proof, result, rules_on=False), (
            f"{scenario.name} proof line {proof.line} fails without rules: {result}")
    apply_scenario(lab, scenario)
    for proof in scenario.proofs:
        result = run_proof(lab, proof)
        assert proof_holds(proof, result, rules_on=True), (
            f"{scenario.name} proof line {proof.line}: expected {proof.expect}, got {result}")
    assert any(packets for _, packets in lab.rule_counters()) or not any(
        u.at == "censor" and u.rule not in ("sni_reset", "app_stun_dpi")
        for u in scenario.rules), "no nftables rule of the censor matched a packet"


# The fake network's app_stun_dpi (probe.testing) decides with AppStun.matches; here the
# lab's nftables/iptables rules built from the same APP_STUN decide on the same datagrams.
_ECHOED = """
import socket, sys
seen = ""
for line in sys.stdin.read().split():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((sys.argv[1], 3478))
    sock.settimeout(0.3)
    for _ in range(3):
        sock.send(bytes.fromhex(line))
        try:
            sock.recv(4096)
        except TimeoutError:
            continue
        seen += "1"
        break
    else:
        seen += "0"
print(seen)
"""


def _marker_payloads() -> dict[str, bytes]:
    def binding(*attrs: tuple[int, bytes]) -> bytes:
        return stun.binding_request(software=None, extra=attrs).encode(fingerprint=True)

    made = {f"app:{f}": stun.app_flavoured(f).encode(fingerprint=True) for f in stun.FLAVORS}
    return {**made,
            "plain": plain_stun(64).encode(fingerprint=True),
            "random": random_bytes(64),
            "first attribute 0x4007": binding((0x4007, b"\0" * 4)),
            "first attribute 0x4008": binding((0x4008, b"\0" * 4)),
            "type 0x0802": stun.binding_request(msg_type=0x0802).encode(),
            "MS attribute second": binding((stun.ATTR_SOFTWARE, b"x" * 4), (0x8054, b"\0" * 4)),
            "realms without the cookie": b"\x00\x01\x00\x00\x00\x00\x00\x00"
                                         b"viber google.com signal.org 0x0800",
            "type 0x0800 without the cookie": b"\x08\x00\x00\x00" + bytes(16)}


def test_app_stun_markers_drop_what_the_fake_drops(lab: Lab) -> None:
    payloads = _marker_payloads()
    stdin = "\n".join(p.hex() for p in payloads.values())

    def dropped() -> set[str]:
        seen = lab.client_run([sys.executable, "-c", _ECHOED, A.ECHO], input_text=stdin,
                              timeout_s=60).stdout.strip()
        return {name for name, ok in zip(payloads, seen, strict=True) if ok == "0"}

    assert dropped() == set()  # the echo host answers every one without a rule
    for flavor, marker in APP_STUN.items():
        lab.apply("app_stun_dpi", flavor=flavor)
        want = {name for name, data in payloads.items() if marker.matches(data)}
        assert f"app:{flavor}" in want
        assert dropped() == want, flavor
        lab.clear_rules()
