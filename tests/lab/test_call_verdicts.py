"""Call-path verdicts in the censorship lab: the real probe (`voip-probe run` in the
client namespace, shipped targets, the lab's reflector) against real packet filtering on
the censor. Each blocking method of the calls function is told apart from the others and
from ok, for every service, while messaging stays ok.

``relay_unreachable`` is shown for WhatsApp and Google Duo/Meet, whose call servers the
rule cuts; the others must stay ok then. Skype/Teams keeps its relay fallback over TCP/TLS
443 when UDP calls are cut: impaired, with the method of the UDP block (the both-paths
case is tests/lab/test_call_fallback.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab
from tests.helpers.lab_results import failed_calls

pytestmark = pytest.mark.lab
SERVICES = ("whatsapp", "skype", "viber", "duo")
CALL_PORTS = [3478, 3479, 3480, 3481, *range(19302, 19310), 7985, 7987, 5242, 5243, 4244]
TIMEOUT_S = "6"  # per check; the lab shares a small CI machine with coturn and dnsmasq


def stun_dpi(lab: Lab) -> None:
    lab.apply("stun_dpi")


def app_stun_dpi(lab: Lab) -> None:
    for flavor in ("whatsapp", "teams", "viber", "google"):
        lab.apply("app_stun_dpi", flavor=flavor)


def udp_blocked(lab: Lab) -> None:
    lab.apply("drop_udp_ports", ports=CALL_PORTS)


def relay_unreachable(lab: Lab) -> None:
    for service in ("whatsapp", "duo"):
        lab.apply("drop_endpoint", service=service, function="calls", proto="udp")


def throttled(lab: Lab) -> None:
    # The same rate as configs/scenarios/throttled.toml: at 8 kB/s shared by all four
    # services' streams, Duo's stream sometimes still fit under the limit.
    lab.apply("throttle_udp_ports", ports=CALL_PORTS, kbytes_per_s=4)


def morocco_mobile(lab: Lab) -> None:
    lab.apply("stun_dpi")
    lab.apply("app_stun_dpi", flavor="whatsapp")


def lossy(lab: Lab) -> None:
    lab.apply("random_loss", percent=10)


def clean(lab: Lab) -> None:
    pass


Expect = dict[str, tuple[str, list[str]]]  # service -> (calls status, methods)


def every(status: str, methods: list[str]) -> Expect:
    return {s: (status, methods) for s in SERVICES}


def udp_cut(methods: list[str]) -> Expect:
    """UDP calls cut for every service: blocked, except Skype/Teams, whose relay fallback
    over TCP/TLS 443 still works (impaired, with the same methods)."""
    return {**every("blocked", methods), "skype": ("impaired", methods)}


SCENARIOS: list[tuple[str, Callable[[Lab], None], Expect]] = [
    ("clean", clean, every("ok", [])),
    ("stun_dpi", stun_dpi, udp_cut(["stun_dpi"])),
    ("app_stun_dpi", app_stun_dpi, udp_cut(["app_stun_dpi"])),
    ("udp_blocked", udp_blocked, udp_cut(["udp_blocked"])),
    ("relay_unreachable", relay_unreachable,
     {"whatsapp": ("impaired", ["relay_unreachable"]), "duo": ("impaired", ["relay_unreachable"]),
      "skype": ("ok", []), "viber": ("ok", [])}),
    ("throttled", throttled, every("impaired", ["throttled"])),
    # Morocco 2016 on mobile: calls cut (STUN and WhatsApp's call STUN dropped), messaging works.
    ("morocco_mobile_ban", morocco_mobile, udp_cut(["stun_dpi"])),
    ("lossy_10_percent", lossy, every("ok", [])),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        assert lab.reflector == A.REFLECTOR, "the lab must run voip-probe reflector"
        yield lab


def run_probe(lab: Lab, out: Path) -> dict[str, Any]:
    args = [sys.executable, "-m", "probe", "run", "--json", "--timeout", TIMEOUT_S,
            "--reflector", A.REFLECTOR, "--network-type", "mobile", "--output", str(out)]
    for f in lab.target_files:
        args += ["--targets", str(f)]
    proc = lab.client_run(args, timeout_s=300, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


@pytest.mark.parametrize(("name", "setup", "expect"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_calls_verdicts(lab: Lab, tmp_path: Path, name: str, setup: Callable[[Lab], None],
                        expect: Expect) -> None:
    lab.clear_rules()
    subprocess.run(["ip", "netns", "exec", lab.ns["censor"], "iptables", "-F", "FORWARD"],
                   check=False, capture_output=True)
    setup(lab)
    summary = run_probe(lab, tmp_path)
    assert summary["network"]["status"] == "online"
    got = {}
    for service in SERVICES:
        functions = summary["services"][service]["functions"]
        calls = functions["calls"]
        got[service] = (calls["status"], calls["methods"])
        assert functions["messaging"]["status"] == "ok", (service, functions["messaging"])
    assert got == expect, failed_calls(summary)
    if name != "clean":
        assert any(packets for _, packets in lab.rule_counters()), "no censor rule matched"
