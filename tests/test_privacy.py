"""privacy.scrub: the probe's address is replaced in every form it is written in, and only
where it is a whole address (other hosts' addresses are data)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from probe.privacy import SCRUBBED, scrub


def test_ipv4_in_every_form_and_only_whole() -> None:
    out = scrub({"mapped": "10.0.0.1:5000", "peer": "10.0.0.12", "other": "110.0.0.1",
                 "query": "1.0.0.10.origin.asn.cymru.com", "text": "from 10.0.0.1.",
                 "10.0.0.1": ["(10.0.0.1)", 7]}, ["10.0.0.1"])
    assert out == {"mapped": f"{SCRUBBED}:5000", "peer": "10.0.0.12", "other": "110.0.0.1",
                   "query": f"{SCRUBBED}.origin.asn.cymru.com", "text": f"from {SCRUBBED}.",
                   SCRUBBED: [f"({SCRUBBED})", 7]}


def test_ipv6_compressed_exploded_upper_and_nibbles() -> None:
    ip = "2001:db8::1"
    nibbles = ipaddress.ip_address(ip).reverse_pointer.removesuffix(".ip6.arpa")
    out = scrub(["[2001:db8::1]:443", "2001:0db8:0000:0000:0000:0000:0000:0001",
                 "2001:DB8::1", f"{nibbles}.origin6.asn.cymru.com", "2001:db8::12",
                 "2001:db8::1:5"], [ip])
    assert out == [f"[{SCRUBBED}]:443", SCRUBBED, SCRUBBED,
                   f"{SCRUBBED}.origin6.asn.cymru.com", "2001:db8::12", "2001:db8::1:5"]


def test_no_secret_leaves_everything_as_it_was() -> None:
    record = {"a": ["1.2.3.4"], "b": 3}
    assert scrub(record, []) is record
    assert scrub(record, ["", ""]) is record


def test_a_secret_that_is_not_an_address_is_replaced_anywhere() -> None:
    assert scrub("token=abc123xyz", ["abc123"]) == f"token={SCRUBBED}xyz"


SEPARATORS = st.sampled_from([" ", ":", "/", "=", ",", "[", "]", "(", ")", " at ", "\n"])


@given(secret=st.ip_addresses(v=4), others=st.lists(st.ip_addresses(v=4), max_size=6),
       seps=st.lists(SEPARATORS, min_size=8, max_size=8), positions=st.sets(
           st.integers(0, 6), max_size=3))
def test_ipv4_tokens_property(secret: ipaddress.IPv4Address,
                              others: list[ipaddress.IPv4Address], seps: list[str],
                              positions: set[int]) -> None:
    tokens = [str(o) for o in others if o != secret]
    for p in sorted(positions):
        tokens.insert(min(p, len(tokens)), str(secret))
    text = "".join(t + seps[i % len(seps)] for i, t in enumerate(tokens))
    expected = "".join((SCRUBBED if t == str(secret) else t) + seps[i % len(seps)]
                       for i, t in enumerate(tokens))
    assert scrub(text, [str(secret)]) == expected


@given(secret=st.ip_addresses(v=6), others=st.lists(st.ip_addresses(v=6), max_size=4),
       seps=st.lists(st.sampled_from([" ", "/", "=", ",", "[", "]", " at "]), min_size=6,
                     max_size=6), exploded=st.booleans())
def test_ipv6_tokens_property(secret: ipaddress.IPv6Address,
                              others: list[ipaddress.IPv6Address], seps: list[str],
                              exploded: bool) -> None:
    form = secret.exploded if exploded else secret.compressed
    tokens = [o.compressed for o in others if o != secret] + [form]
    text = "".join(t + seps[i % len(seps)] for i, t in enumerate(tokens))
    expected = "".join((SCRUBBED if t == form else t) + seps[i % len(seps)]
                       for i, t in enumerate(tokens))
    assert scrub(text, [secret.compressed]) == expected
