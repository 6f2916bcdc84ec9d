"""The lab's infrastructure: up/down idempotent, two labs at once, nothing left behind
after a failure, no route out of the lab, the censor at the documented hop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from probe.lab import addresses as A
from probe.lab.lab import Lab, cleanup_stale
from probe.lab.labtargets import LabTargetsError
from probe.lab.netns import list_namespaces, sh

MINI = Path(__file__).with_name("mini_targets.toml")
pytestmark = pytest.mark.lab


def _peer_namespaces(ns: str) -> set[str]:
    """Names of the namespaces the veth peers of ``ns``'s interfaces live in."""
    out = sh(["ip", "-n", ns, "netns", "list-id"]).stdout
    ids = {}
    for line in out.splitlines():
        match = re.match(r"nsid (\d+) \(iproute2 netns name: (\S+)\)", line)
        if match:
            ids[int(match.group(1))] = match.group(2)
    links = json.loads(sh(["ip", "-n", ns, "-j", "link", "show"]).stdout)
    return {ids.get(link["link_netnsid"], f"nsid {link['link_netnsid']}")
            for link in links if "link_netnsid" in link}


def _assert_gone(lab: Lab, pids: list[int]) -> None:
    assert lab.leftovers() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", pid


def test_up_down_idempotent_and_leaves_nothing() -> None:
    lab = Lab(targets=[MINI])
    try:
        lab.up()
        lab.up()  # rebuilding over a running lab works
        pids = list(lab._pids.values())
        assert len(pids) >= 3  # servers, dnsmasq, coturn
        assert lab.check("tcp", lab.address_of("e1.whatsapp.net"), 443)["result"] == "ok"
        for ns in lab.ns.values():  # every veth peer is in a lab namespace, never the root
            assert _peer_namespaces(ns) <= set(lab.ns.values()), ns
    finally:
        lab.down()
        lab.down()
    _assert_gone(lab, pids)


def test_two_labs_at_once_are_isolated() -> None:
    with Lab(targets=[MINI]) as one, Lab(targets=[MINI]) as two:
        assert one.prefix != two.prefix
        address = one.address_of("e1.whatsapp.net")
        assert address == two.address_of("e1.whatsapp.net")  # same plan, separate worlds
        one.apply("offline")
        assert one.check("tcp", address, 443)["result"] == "generic_timeout_error"
        assert two.check("tcp", address, 443)["result"] == "ok"
        assert two.check("resolve", "e1.whatsapp.net") == {"result": "ok",
                                                          "addresses": [address]}


def test_teardown_after_a_failing_test_leaves_nothing() -> None:
    lab = Lab(targets=[MINI])
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="test failed"):
        with lab:
            lab.apply("dns_injection", hosts=["e1.whatsapp.net"])  # an injector process
            lab.apply("sni_reset", hosts=["v.whatsapp.net"])        # iptables state
            pids = list(lab._pids.values())
            raise RuntimeError("test failed")
    assert len(pids) >= 4
    _assert_gone(lab, pids)


def test_failed_up_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[services]\n")
    lab = Lab(targets=[bad])
    with pytest.raises(LabTargetsError, match=r"bad\.toml"):
        with lab:
            pass
    assert lab.leftovers() == []


def test_down_of_a_lab_another_process_started() -> None:
    lab = Lab(targets=[MINI]).up()
    try:
        attached = Lab.attach(lab.prefix)
        assert attached.address_of("e1.whatsapp.net") == lab.address_of("e1.whatsapp.net")
        pids = list(attached._pids.values())
        attached.down()
        _assert_gone(lab, pids)
    finally:
        lab.down()


def test_no_route_out_of_the_lab(lab_module: Lab) -> None:
    lab = lab_module
    for role, ns in lab.ns.items():
        routes = json.loads(sh(["ip", "-n", ns, "-j", "route", "show"]).stdout)
        assert routes, role
        for route in routes:
            assert route["dst"] != "default", (role, route)
            net = route["dst"] if "/" in route["dst"] else route["dst"] + "/32"
            assert A.in_lab(net.split("/")[0]), (role, route)
        for link in json.loads(sh(["ip", "-n", ns, "-j", "link", "show"]).stdout):
            assert link["ifname"] in {"lo", "eth0", "down0", "up0"}, (role, link["ifname"])
    # An address outside the lab is unreachable from the client (ENETUNREACH, nothing sent).
    outside = lab.check("tcp", "192.0.2.1", 80)
    assert outside["result"] == "network_unreachable"
    assert f"{lab.prefix}-client" in list_namespaces()
    resolv = Path(f"/etc/netns/{lab.ns['client']}/resolv.conf").read_text()
    assert resolv.startswith(f"nameserver {A.RESOLVER}")


def test_censor_is_at_the_documented_hop(lab_module: Lab) -> None:
    lab = lab_module
    target = lab.address_of("e1.whatsapp.net")
    seen = {hop: lab.check("ttl", target, 33434, hop)["from"] for hop in (1, 2, 3)}
    assert seen == A.ROUTER_HOPS
    assert seen[lab.censor_hop] == lab.censor_address
    last = lab.check("ttl", target, 33434, 4)
    assert (last["from"], last["icmp_type"]) == (target, 3)  # port unreachable: arrived


def test_resolver_serves_the_lab_zone_and_txt_records(lab: Lab) -> None:
    assert lab.check("resolve", "e2.whatsapp.net")["addresses"] == [
        lab.address_of("e2.whatsapp.net")]
    assert lab.check("resolve", "www.google.com")["result"] == "dns_nxdomain_error"
    lab.add_txt_record("10.10.19.198.origin.asn.cymru.com", "64500 | 198.19.10.0/24 | ZZ")
    out = lab.exec("client", [sys.executable, "-c",
                              "import dns.resolver;print([r.to_text() for r in "
                              "dns.resolver.resolve('10.10.19.198.origin.asn.cymru.com','TXT')])"],
                   check=False)
    assert "64500 | 198.19.10.0/24 | ZZ" in out.stdout, out.stderr


def test_tls_servers_use_the_lab_ca(lab: Lab) -> None:
    host = "v.whatsapp.net"
    ok = lab.check("tls", host, lab.address_of(host), 443, lab.ca_bundle)
    assert ok["result"] == "ok"
    system_ca = "/etc/ssl/certs/ca-certificates.crt"
    if Path(system_ca).exists():
        bad = lab.check("tls", host, lab.address_of(host), 443, system_ca)
        assert bad["result"] == "ssl_unknown_authority"


def test_lab_of_a_killed_process_is_removed_by_cleanup_stale() -> None:
    code = ("import os, signal, sys; from pathlib import Path; from probe.lab.lab import Lab; "
            f"lab = Lab(targets=[Path({str(MINI)!r})]).up(); print(lab.prefix, flush=True); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    prefix = res.stdout.strip()
    assert res.returncode == -9 and prefix, res.stderr
    lab = Lab.attach(prefix)
    pids = list(lab._pids.values())
    assert len(pids) >= 3 and all(Path(f"/proc/{pid}").exists() for pid in pids)
    assert lab.leftovers()  # its servers outlived it: this is what cleanup_stale is for
    assert prefix in cleanup_stale()
    _assert_gone(lab, pids)


def test_cleanup_stale_leaves_live_and_persistent_labs_alone() -> None:
    with Lab(targets=[MINI]) as mine:
        persistent = Lab(targets=[MINI], persistent=True).up()
        try:
            removed = cleanup_stale()
            assert mine.prefix not in removed and persistent.prefix not in removed
            assert mine.check("tcp", mine.address_of("e1.whatsapp.net"), 443)["result"] == "ok"
            assert persistent.leftovers()
        finally:
            persistent.down()


def test_doh_control_resolver_answers_the_truthful_zone(lab: Lab) -> None:
    lab.apply("dns_nxdomain", hosts=["e1.whatsapp.net"])
    assert lab.check("resolve", "e1.whatsapp.net")["result"] == "dns_nxdomain_error"
    code = ("import base64, json, ssl, sys, urllib.request, dns.message; "
            "q = dns.message.make_query(sys.argv[1], 'A'); "
            "ctx = ssl.create_default_context(cafile=sys.argv[3]); "
            "req = urllib.request.Request(sys.argv[2], data=q.to_wire(), "
            "headers={'Content-Type': 'application/dns-message'}); "
            "body = urllib.request.urlopen(req, context=ctx, timeout=5).read(); "
            "r = dns.message.from_wire(body); "
            "print(json.dumps([rr.address for rrset in r.answer for rr in rrset]))")
    out = lab.exec("client", [sys.executable, "-c", code, "e1.whatsapp.net", lab.doh_url,
                              str(lab.ca_bundle)])
    assert json.loads(out.stdout) == [lab.address_of("e1.whatsapp.net")]
