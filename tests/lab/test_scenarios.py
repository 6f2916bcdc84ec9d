"""Scenario and replay files: every shipped file loads; bad files are refused with the
file, the line and the reason. No root needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probe.lab.replay import redate_results
from probe.lab.scenarios import (
    SCENARIO_DIR,
    ScenarioError,
    all_scenarios,
    load_replay,
    load_scenario,
    scenario_path,
)

REQUIRED = {"clean", "offline", "lossy-clean", "dns-nxdomain", "dns-bogon", "dns-injection",
            "dns-servfail", "tcp-reset", "tcp-drop", "sni-filter", "udp-ports-blocked",
            "stun-dpi", "app-stun-dpi", "throttled", "morocco-2016-before",
            "morocco-2016-mobile-ban", "morocco-2016-fixed-line-ban", "morocco-2016-after"}

GOOD = """\
[scenario]
name = "{name}"
description = "d"

[[rules]]
rule = "stun_dpi"

[[expect]]
service = "whatsapp"
function = "calls"
status = "blocked"
methods = ["stun_dpi"]

[[proof]]
op = "stun"
target = "echo"
expect = "generic_timeout_error"
"""


def _write(tmp_path: Path, text: str, name: str = "sample") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("{name}", name))
    return path


def test_every_shipped_scenario_loads_and_the_required_ones_exist() -> None:
    names = {s.name for s in all_scenarios()}
    assert names >= REQUIRED
    replay = load_replay(scenario_path("morocco-2016"))
    assert [p.network_type for p in replay.phases].count("mobile") >= 3
    assert {p.scenario for p in replay.phases} == {
        "morocco-2016-before", "morocco-2016-mobile-ban", "morocco-2016-fixed-line-ban",
        "morocco-2016-after"}
    ban = load_scenario(SCENARIO_DIR / "morocco-2016-mobile-ban.toml")
    statuses = {(e.service, e.function): e.status for e in ban.expect}
    assert statuses[("whatsapp", "calls")] == "blocked"
    assert statuses[("whatsapp", "messaging")] == "ok"


def test_good_file_loads(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, GOOD))
    assert scenario.rules[0].rule == "stun_dpi"
    assert scenario.expect[0].methods == ("stun_dpi",)


@pytest.mark.parametrize(("old", "new", "line", "reason"), [
    ('rule = "stun_dpi"', 'rule = "stun_dpi"\nbogus = 1', 7, "unknown key 'bogus'"),
    ('rule = "stun_dpi"', 'rule = "teleport"', 6, "rule = 'teleport' is not one of"),
    ('status = "blocked"', 'status = "sorta"', 11, "status = 'sorta' is not one of"),
    ('methods = ["stun_dpi"]', 'methods = ["magic"]', 12, "unknown method 'magic'"),
    ('op = "stun"', 'op = "ping"', 15, "op = 'ping' is not one of"),
    ('description = "d"', 'description = 3', 3, "description must be a str"),
    ('name = "{name}"', 'name = "other"', 2, "must equal the file name"),
    ('rule = "stun_dpi"', 'rule = "random_loss"\npercent = 300', 7, "percent must be 1-100"),
    ('rule = "stun_dpi"', 'rule = "reset_endpoint"', 5, "needs service, hosts or addresses"),
    ('rule = "stun_dpi"', 'rule = "dns_nxdomain"\nhosts = ["a"]\nat = "censor"', 8,
     "at = 'censor' is not one of"),
    # Values that would add directives to the root dnsmasq's configuration.
    ('rule = "stun_dpi"', 'rule = "dns_nxdomain"\nhosts = ["a.test/\\nconf-file=/tmp/x"]',
     7, "holds a newline"),
    ('rule = "stun_dpi"', 'rule = "dns_nxdomain"\nhosts = ["a.test\\n"]', 7,
     "holds a newline"),
    ('rule = "stun_dpi"', 'rule = "dns_nxdomain"\nhosts = ["a.test/#", "b.test"]', 7,
     "'a.test/#' is not a host name"),
    ('rule = "stun_dpi"', 'rule = "dns_nxdomain"\nhosts = ["198.18.0.1"]', 7,
     "is not a host name"),
    ('rule = "stun_dpi"', 'rule = "dns_bogon"\nhosts = ["a.test"]\n'
     'answer = "10.0.0.1\\nlog-facility=/etc/cron.d/x"', 8, "holds a newline"),
    ('rule = "stun_dpi"', 'rule = "dns_bogon"\nhosts = ["a.test"]\nanswer = "10.0.0.1,x"',
     8, "answer '10.0.0.1,x' is not an IP address"),
    ('rule = "stun_dpi"', 'rule = "dns_injection"\nhosts = ["a.test"]\nanswer = "a.test"',
     8, "is not an IP address"),
    ('rule = "stun_dpi"', 'rule = "reset_endpoint"\naddresses = ["198.18.0.1/24"]', 7,
     "'198.18.0.1/24' is not an IP address"),
    ('target = "echo"', 'target = "echo\\nx"', 16, "holds a newline"),
    ('target = "echo"', 'target = "a b"', 16, "is not echo, service/function"),
])
def test_bad_values_name_file_line_and_reason(tmp_path: Path, old: str, new: str, line: int,
                                              reason: str) -> None:
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert reason in str(info.value)


def test_invalid_toml_and_missing_proofs(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"sample\.toml:2: invalid TOML"):
        load_scenario(_write(tmp_path, "[scenario]\nname = \n"))
    no_proof = GOOD.split("[[proof]]")[0]
    with pytest.raises(ScenarioError, match="needs at least one"):
        load_scenario(_write(tmp_path, no_proof))


def test_replay_validation(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "phase-a")
    text = ('[replay]\nname = "r"\n\n[[phases]]\nscenario = "phase-a"\nnetwork_type = "mobile"\n'
            'date = 2016-01-08T10:00:00Z\n')
    assert load_replay(_write(tmp_path, text, "r")).phases[0].scenario == "phase-a"
    with pytest.raises(ScenarioError, match=r"r\.toml:5: no scenario file nope\.toml"):
        load_replay(_write(tmp_path, text.replace('"phase-a"', '"nope"'), "r"))
    with pytest.raises(ScenarioError, match=r"r\.toml:7: date must be"):
        load_replay(_write(tmp_path, text.replace("2016-01-08T10:00:00Z", '"soon"'), "r"))
    with pytest.raises(ScenarioError, match=r"r\.toml:6: network_type = 'boat'"):
        load_replay(_write(tmp_path, text.replace('"mobile"', '"boat"'), "r"))


def test_redate_results_shifts_every_time_and_renames(tmp_path: Path) -> None:
    source = tmp_path / "20261128T193000Z_AS0_mobile_abc123.jsonl"
    lines = [
        {"measurement_start_time": "2026-11-28 19:30:00", "test_runtime": 0.5,
         "test_keys": {"failure": None}},
        {"measurement_start_time": "2026-11-28 19:30:07", "test_keys": {"failure": None}},
        {"record": "summary", "measurement_start_time": "2026-11-28 19:30:00",
         "results_file": str(source), "services": {}},
    ]
    source.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = redate_results(source, datetime(2016, 1, 8, 10, 0, tzinfo=UTC), tmp_path / "out")
    assert out.name == "20160108T100000Z_AS0_mobile_abc123.jsonl"
    moved = [json.loads(x) for x in out.read_text().splitlines()]
    assert [m["measurement_start_time"] for m in moved] == [
        "2016-01-08 10:00:00", "2016-01-08 10:00:07", "2016-01-08 10:00:00"]
    assert moved[0]["test_runtime"] == 0.5
    assert moved[2]["results_file"] == out.name  # never the absolute path (a user name)


def test_dnsmasq_config_refuses_names_and_addresses_that_add_directives() -> None:
    """The last line of defence, where the root daemon's configuration is written."""
    from probe.lab.dns import DnsZone

    good = DnsZone(records={"chat.test": ["198.18.1.1"]}, txt={"_x.test": ['a "b"']})
    good.nxdomain.add("blocked.test")
    conf = good.dnsmasq_conf()
    assert "host-record=chat.test,198.18.1.1\n" in conf and "address=/blocked.test/\n" in conf
    attacks = [
        DnsZone(nxdomain={"x.test/\nconf-file=/tmp/evil"}),
        DnsZone(servfail={"x.test/1.2.3.4\nlog-facility=/tmp/evil"}),
        DnsZone(records={"x.test,1.1.1.1\nconf-file=/tmp/evil": ["198.18.1.1"]}),
        DnsZone(records={"x.test": ["198.18.1.1\nconf-file=/tmp/evil"]}),
        DnsZone(bogon={"x.test": "10.0.0.1\nlog-facility=/tmp/evil"}),
        DnsZone(bogon={"x.test": "fe80::1%eth0,x"}),
        DnsZone(txt={"x.test": ['"\nconf-file=/tmp/evil']}),
        DnsZone(txt={"x.test\u2028conf-file=/tmp/evil": ["t"]}),
    ]
    for zone in attacks:
        with pytest.raises(ValueError, match=r"refusing to write|control character"):
            zone.dnsmasq_conf()
