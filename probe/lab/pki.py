"""The lab CA and server certificate, made with the ``openssl`` command at lab-up.

One CA per lab (``ca.pem``, handed to the probe as ``--ca-bundle``) signs one server
certificate whose subjectAltName lists every lab host name, so any TLS server in the fake
internet proves the name the probe asked for. Keys are EC P-256 (fast to generate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probe.lab.netns import sh


@dataclass(frozen=True)
class LabPki:
    ca_cert: Path
    server_cert: Path   # leaf followed by nothing: the CA is not part of the chain sent
    server_key: Path


def make_pki(directory: Path, hostnames: list[str]) -> LabPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert),
        "-days", "30", "-subj", "/CN=voip-probe lab CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    names = sorted({h.lower().rstrip(".") for h in hostnames} | {"lab.example"})
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join('DNS:' + n for n in names)}\n"
    )
    sh(["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=lab.example"])
    sh(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "30", "-extfile", str(ext)])
    return LabPki(ca_cert=ca_cert, server_cert=cert, server_key=key)
