"""Target files: the shipped ones are valid, and every kind of mistake is reported with
file, line and reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from probe.hostnames import is_ip_literal
from probe.targets import TargetsError, load_file, load_plan, shipped_target_files


def test_shipped_files_load_and_cover_the_services() -> None:
    plan = load_plan()
    ids = {s.id for s in plan.services}
    assert {"whatsapp", "skype", "viber", "duo", "controls"} <= ids
    assert plan.service("controls").is_control
    wa = plan.service("whatsapp")
    chat = {e.input for e in wa.endpoints if e.function == "messaging" and e.check == "tcp"}
    for n in range(1, 17):
        for port in (443, 5222):
            assert f"tcp://e{n}.whatsapp.net:{port}" in chat


def test_shipped_files_name_hosts_never_addresses() -> None:
    for path in shipped_target_files():
        for svc in load_file(path):
            for ep in svc.endpoints:
                host = ep.target_host
                if host is None and ep.check in ("udp", "differential", "stream", "call"):
                    continue  # these go to the reflector the user gives (--reflector)
                assert host is not None and not is_ip_literal(host), f"{ep.source}: {host}"


def test_no_shipped_file_holds_a_literal_address_not_even_in_a_comment() -> None:
    """Names only (DESIGN.md): the shipped targets and identity config may cite where an
    address was seen, but never write one down, lest it be copied into a target."""
    config = Path(__file__).resolve().parents[1] / "configs"
    files = [*shipped_target_files(), config / "identity.toml"]
    assert len(files) >= 6
    token = re.compile(r"[0-9A-Fa-f:.]*[.:][0-9A-Fa-f:.]+(?:/\d+)?")
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for found in token.findall(line):
                bare = found.split("/")[0]
                for candidate in (bare, bare.strip(".:"), bare.rstrip(".")):
                    assert not is_ip_literal(candidate), f"{path}:{number}: {found}"


def test_every_service_has_calls_endpoints_that_need_no_reflector() -> None:
    """A plain run (no --reflector) still judges every service's calls: each has a calls
    endpoint with a host of its own; Skype/Teams also has the TCP/TLS relay fallback."""
    plan = load_plan()
    for service in ("whatsapp", "skype", "viber", "duo"):
        hosted = [e for e in plan.service(service).endpoints
                  if e.function == "calls" and e.host is not None]
        assert hosted, service
    skype = {e.check for e in plan.service("skype").endpoints if e.function == "calls"}
    assert {"turn", "turn_tcp", "turn_tls"} <= skype


def test_every_shipped_endpoint_table_has_a_source_comment() -> None:
    for path in shipped_target_files():
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\[\[(services\.)?endpoints\]\]", line):
                assert lines[i - 1].startswith("#"), f"{path}:{i + 1}: no source comment"


def test_every_public_module_of_checks_is_a_check_with_its_whole_contract() -> None:
    import pkgutil

    import probe.checks
    from probe.checks import CheckSpec, check_names, check_specs, get_check

    modules = [m.name for m in pkgutil.iter_modules(probe.checks.__path__)]
    assert sorted(m for m in modules if not m.startswith("_")) == list(check_names())
    assert set(check_names()) >= {"dns", "tcp", "tls", "https", "stun", "turn", "udp",
                                  "differential", "stream", "quic"}
    for name in check_names():
        module = get_check(name)
        assert module.NAME == name
        assert isinstance(module.VERSION, str) and module.VERSION.count(".") == 2
        assert isinstance(module.SPEC, CheckSpec) and module.SPEC.doc
        assert callable(module.run) and callable(module.methods)
    assert set(check_specs()) == set(check_names())


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


GOOD = """\
[service]
id = "hush"
name = "Hushline"

[[endpoints]]
function = "messaging"
check = "tcp"
hosts = ["chat.hush.example"]
ports = [443]
"""


@pytest.mark.parametrize(("text", "line", "reason"), [
    (GOOD.replace('ports = [443]', 'ports = [443]\ncolour = "blue"'), 10, "unknown key 'colour'"),
    (GOOD.replace("[443]", "[70000]"), 9, "out of range"),
    (GOOD.replace("[443]", '["443"]'), 9, "items must be ints"),
    (GOOD.replace('"chat.hush.example"', '"bad host!"'), 8, "not a valid host name"),
    (GOOD.replace('"messaging"', '"gossip"'), 6, "'function' must be one of"),
    (GOOD.replace('"tcp"', '"carrier-pigeon"'), 7, "'check' must be one of"),
    (GOOD.replace('hosts = ["chat.hush.example"]\n', ""), 5, "missing 'hosts'"),
    (GOOD.replace('id = "hush"', 'id = "Hush Line"'), 2, "service 'id'"),
    (GOOD.replace('ports = [443]', 'ports = [443]\npool = "some"'), 10, "'pool' must be"),
    (GOOD.replace('ports = [443]', 'ports = [443]\nexpected_networks = ["nope"]'), 10,
     "not a network"),
    (GOOD.replace("ports = [443]", "ports = [443"), 9, "invalid TOML"),
    (GOOD + "\n[extra]\nx = 1\n", 11, "unknown top-level key 'extra'"),
    ("[service]\nid = \"x\"\n", 1, "has no endpoints"),
    # A newline (or another control character) in any name: the lab writes hosts into a
    # root daemon's configuration, and the results and the terminal show them.
    (GOOD.replace('"chat.hush.example"', '"chat.hush.example\\n"'), 8, "holds a newline"),
    (GOOD.replace('"chat.hush.example"', '"a.example\\nconf-file=/tmp/x"'), 8,
     "holds a newline"),
    (GOOD.replace('"chat.hush.example"', '"1.2.3.4\\n"'), 8, "holds a newline"),
    (GOOD.replace('"chat.hush.example"', '"fe80::1%eth0,x"'), 8, "not a valid host name"),
    (GOOD.replace('id = "hush"', 'id = "hush\\n"'), 2, "holds a newline"),
    (GOOD.replace('name = "Hushline"', 'name = "Hush\\u2028line"'), 3, "holds a newline"),
    (GOOD.replace('name = "Hushline"', 'name = "Hush\\u202eline"'), 3, "control character"),
    (GOOD.replace('"tcp"', '"https"').replace('hosts = ["chat.hush.example"]\nports = [443]',
                                             'urls = ["https://a.example/\\n"]'), 8,
     "holds a newline"),
    (GOOD.replace('"tcp"', '"tls"').replace('ports = [443]', 'ports = [443]\n'
                                             'sni = "a.example\\tb"'), 10, "holds a newline"),
])
def test_errors_name_file_line_and_reason(tmp_path: Path, text: str, line: int,
                                          reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TargetsError) as err:
        load_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert reason in message


def test_several_services_in_one_file(tmp_path: Path) -> None:
    text = """\
[[services]]
id = "hushline"
name = "Hushline"
[[services.endpoints]]
function = "messaging"
check = "tcp"
hosts = ["chat1.hushline.example"]
ports = [443]

[[services]]
id = "murmur"
[[services.endpoints]]
function = "web"
check = "tcp"
hosts = ["murmur.example"]
ports = [443, 8443]
[[services.endpoints]]
function = "messaging"
check = "tcp"
hosts = ["m.murmur.example"]
ports = [70000]
"""
    path = write(tmp_path, text)
    with pytest.raises(TargetsError, match=rf"^{re.escape(str(path))}:21: port 70000"):
        load_file(path)
    services = load_file(write(tmp_path, text.replace("70000", "5000")))
    assert [s.id for s in services] == ["hushline", "murmur"]
    assert [e.input for e in services[1].endpoints] == [
        "tcp://murmur.example:443", "tcp://murmur.example:8443", "tcp://m.murmur.example:5000"]


def test_duplicate_service_across_files_and_unknown_service(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text(GOOD)
    b.write_text(GOOD)
    with pytest.raises(TargetsError, match="already defined"):
        load_plan([a, b])
    with pytest.raises(TargetsError, match="unknown service"):
        load_plan([a], ["nope"])


def test_service_filter_keeps_controls() -> None:
    plan = load_plan(None, ["viber"])
    assert {s.id for s in plan.services} == {"viber", "controls"}


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match="no such target file"):
        load_file(tmp_path / "missing.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe[service]")
    with pytest.raises(TargetsError, match="not UTF-8"):
        load_file(p)
