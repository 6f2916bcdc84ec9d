"""The bogon list follows OONI's, and a target's expected networks are exempt.

Public-looking addresses below are only compared, never contacted."""

from __future__ import annotations

from probe.bogons import is_bogon


def test_bogon_list_follows_ooni_and_expected_networks_exempt() -> None:
    for bogon in ("10.10.34.35", "127.0.0.1", "198.19.10.10", "192.168.1.1", "0.0.0.0",
                  "169.254.1.1", "100.64.0.1", "224.0.0.1", "::1", "fe80::1", "fd00::1",
                  "2001:db8::1"):
        assert is_bogon(bogon), bogon
    for public in ("157.240.1.1", "2a03:2880:f000::1", "31.13.64.1"):
        assert not is_bogon(public), public
    # The lab's servers sit in 198.19.0.0/16: a bogon, unless the target expects it there.
    assert not is_bogon("198.19.10.10", ["198.19.10.0/24"])
    assert is_bogon("198.18.200.200", ["198.19.10.0/24"])
