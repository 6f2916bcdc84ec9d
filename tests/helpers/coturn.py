"""A real coturn (``turnserver``) on a loopback address, for unit-level interop tests.

Loopback only (127.0.0.x), never another address. Skips where coturn is not installed,
but fails under CI=true, where .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
REALM = "lab.example"


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _binding_answered(host: str, port: int) -> bool:
    from probe import stun

    req = stun.binding_request().encode(fingerprint=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(req, (host, port))
            s.recvfrom(2048)
            return True
        except OSError:
            return False


def free_tcp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def coturn(host: str | None = None, tls: bool = False) -> Iterator[tuple[str, int]]:
    """Run turnserver on ``host``; yield its (address, UDP port). It takes TURN over TCP
    on the same port too, and with ``tls`` over TLS as well (coturn tells TLS from plain
    TCP by the first bytes), with a certificate for ``relay.test`` from a throwaway CA.

    The default address differs per pytest-xdist worker (127.0.0.77 + worker number), so
    parallel coturns never compete for the same relay ports."""
    if host is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        host = f"127.0.0.{77 + (int(worker) if worker.isdigit() else 0) % 100}"
    binary = shutil.which("turnserver")
    if binary is None:
        if IN_CI:
            pytest.fail("turnserver (coturn) is not installed; .ci/run installs it")
        pytest.skip("turnserver (coturn) is not installed")
    port = free_udp_port(host)
    workdir = tempfile.mkdtemp(prefix="coturn-")
    cmd = [
        binary, "-n", f"--listening-ip={host}", f"--listening-port={port}",
        f"--relay-ip={host}", f"--realm={REALM}", "--no-tls", "--no-dtls", "--no-cli",
        "--fingerprint", "--lt-cred-mech", "--user=u:p", "--log-file=stdout",
        "--simple-log", f"--pidfile={workdir}/turn.pid", f"--userdb={workdir}/turndb",
        "--min-port=49152", "--max-port=49200",
    ]
    if tls:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("relay.test")
        leaf.cert_chain_pems[0].write_to_path(f"{workdir}/cert.pem")
        leaf.private_key_pem.write_to_path(f"{workdir}/key.pem")
        cmd.remove("--no-tls")
        cmd += [f"--cert={workdir}/cert.pem", f"--pkey={workdir}/key.pem",
                f"--tls-listening-port={free_tcp_port(host)}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _binding_answered(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"coturn did not start on {host}:{port}: {' '.join(cmd)}")
            time.sleep(0.1)
        yield host, port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
