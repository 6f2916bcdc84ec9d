"""The real network seam's client SSL contexts: shared, yet never stale."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from probe.net import make_ssl_context


def test_contexts_are_shared_per_bundle_and_verify_mode(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    a = make_ssl_context(str(bundle))
    assert make_ssl_context(str(bundle)) is a
    assert make_ssl_context(None) is not a
    loose = make_ssl_context(str(bundle), verify=False)
    assert loose is not a and loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    assert a.verify_mode == ssl.CERT_REQUIRED and a.check_hostname
    h2 = make_ssl_context(str(bundle), alpn=("h2",))
    assert h2 is not a and make_ssl_context(str(bundle), alpn=["h2"]) is h2


def test_a_rewritten_bundle_gets_a_fresh_context(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    first, second = trustme.CA(), trustme.CA()
    first.cert_pem.write_to_path(str(bundle))
    old = make_ssl_context(str(bundle))
    second.cert_pem.write_to_path(str(bundle))
    st = bundle.stat()
    os.utime(bundle, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = make_ssl_context(str(bundle))
    assert new is not old
    def serials(ctx: ssl.SSLContext) -> set[str]:
        return {str(c["serialNumber"]) for c in ctx.get_ca_certs()}

    assert serials(new) != serials(old)  # the second CA, not the first


def test_a_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError):
        make_ssl_context(str(missing))
