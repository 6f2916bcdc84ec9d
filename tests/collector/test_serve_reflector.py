"""``voip-probe serve --reflector-ports`` runs the reflector beside the collector."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from probe import stun


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_reflector_answers_stun_and_echoes(collector_process: Any) -> None:
    """The collector's reflector is the reflector (probe.reflector): a cookie for a cookie
    request, an echo only for a datagram carrying its token, a Binding success."""
    from probe import reflector
    from probe.checks._payloads import random_bytes
    from probe.checks._reflector import ReflectorCookie

    port = free_udp_port()
    server = collector_process(extra=("--reflector-ports", str(port)))
    health = httpx.get(server.url + "/api/v1/health", timeout=60).json()
    assert health["reflector_ports"] == [port]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        request = stun.binding_request()
        s.send(request.encode(fingerprint=True))
        reply = stun.parse(s.recv(2048))
        assert reply.msg_type == stun.BINDING_SUCCESS
        assert reply.transaction_id == request.transaction_id
        mapped = stun.decode_xor_address(reply.get(stun.ATTR_XOR_MAPPED_ADDRESS) or b"",
                                         request.transaction_id)
        assert (mapped.host, mapped.port) == s.getsockname()
        unproven = random_bytes(64)
        s.send(unproven)  # no token: no echo (the cookie reply below comes first)
        s.send(reflector.hello())
        parsed = reflector.parse_cookie_reply(s.recv(2048))
        assert parsed is not None
        cookie = ReflectorCookie("127.0.0.1", parsed[1], parsed[0], 0.0, port)
        data = cookie.with_cookie(random_bytes(64), "random")
        s.send(data)
        assert s.recv(2048) == data


def test_serve_refuses_bad_reflector_ports(tmp_path: Any) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "probe", "serve", "--data-dir",
                        str(tmp_path), "--reflector-ports", "70000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--reflector-ports" in r.stderr


def test_client_addresses_are_neither_logged_nor_stored(
        collector_process: Any, make_results: Any, tmp_path: Any) -> None:
    from pathlib import Path

    server = collector_process(extra=("--log-level", "info"))
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as client:
        for _ in range(2):
            r = client.post(server.url + "/api/v1/results",
                            content=Path(make_results(2)).read_bytes())
            assert r.status_code == 201
        assert client.post(server.url + "/api/v1/results", content=b"x\n").status_code == 400
        assert client.get(server.url + "/api/v1/summary").status_code == 200
    server.stop()
    log = Path(server.log.name).read_bytes()
    assert b"POST /api/v1/results 201" in log  # requests are logged ...
    assert b"127.0.0.2" not in log  # ... without the client's address
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert b"127.0.0.2" not in path.read_bytes(), path


def test_serve_with_an_unreachable_database_says_so(tmp_path: Any) -> None:
    import subprocess
    import sys

    url = f"postgresql://postgres@/nodb?host={tmp_path}/no-socket-here&port=5432"
    r = subprocess.run([sys.executable, "-m", "probe", "serve", "--data-dir",
                        str(tmp_path / "d"), "--database-url", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot open the database" in r.stderr and "Traceback" not in r.stderr
    bad = subprocess.run([sys.executable, "-m", "probe", "serve", "--data-dir",
                          str(tmp_path / "d"), "--database-url", "mysql://x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unsupported --database-url" in bad.stderr


def test_the_collector_advertises_the_reflector_it_runs(collector_process: Any) -> None:
    from probe.reflector_choice import advertised_reflector, choose_reflector

    port = free_udp_port()
    server = collector_process(extra=("--reflector-ports", str(port)))
    body = httpx.get(server.url + "/api/v1/reflector", timeout=60).json()
    # the host the client used to reach the collector: the reflector is on that machine
    assert body == {"reflector": {"host": "127.0.0.1", "ports": [port]}}
    assert advertised_reflector(server.url) == ("127.0.0.1", None)
    choice = choose_reflector(None, {"collector": server.url}, "config.toml", server.url)
    assert (choice.host, choice.source) == ("127.0.0.1", "collector")
    # the option and the configuration come first, and the collector is not asked then
    assert choose_reflector("198.18.0.7", {}, "c", server.url).source == "option"
    configured = choose_reflector(None, {"reflector": "refl.example.org"}, "c", server.url)
    assert (configured.host, configured.source) == ("refl.example.org", "config")
    doc = httpx.get(server.url + "/openapi.json", timeout=60).json()
    assert "/api/v1/reflector" in doc["paths"]


def test_the_advertised_name_can_be_set_and_none_is_said_without_a_reflector(
        collector_process: Any, tmp_path: Any) -> None:
    import pytest

    from probe.reflector_choice import (
        ReflectorConfigError,
        advertised_reflector,
        choose_reflector,
    )

    port = free_udp_port()
    named = collector_process(data_dir=tmp_path / "a", extra=(
        "--reflector-ports", str(port), "--reflector-name", "refl.lab.example"))
    assert advertised_reflector(named.url) == ("refl.lab.example", None)
    named.stop()
    plain = collector_process(data_dir=tmp_path / "b")
    assert httpx.get(plain.url + "/api/v1/reflector", timeout=60).json() == {"reflector": None}
    choice = choose_reflector(None, {}, "c", plain.url)
    assert choice.host is None and choice.note == "the collector runs no reflector"
    plain.stop()
    # a collector that cannot be reached: no reflector, and why
    gone = choose_reflector(None, {}, "c", plain.url)
    assert gone.host is None and gone.note is not None and "could not be asked" in gone.note
    with pytest.raises(ReflectorConfigError, match="'reflector' must be a host name"):
        choose_reflector(None, {"reflector": "not a host!"}, "config.toml", None)
