"""The run summary for people: the table and the line explaining each method shown."""

from __future__ import annotations

import io

from rich.console import Console

from probe.cli.render import METHOD_TEXT, render_summary
from probe.model import METHODS


def render(summary: dict) -> str:
    out = io.StringIO()
    render_summary(Console(file=out, width=100, color_system=None), summary)
    return out.getvalue()


def fv(status: str, methods: list[str]) -> dict:
    return {"status": status, "reachable": 0 if methods else 1, "total": 1,
            "methods": methods}


def test_every_method_has_words() -> None:
    assert set(METHOD_TEXT) == set(METHODS)
    assert all(len(text) > 10 for text in METHOD_TEXT.values())


def test_methods_shown_are_explained_once_and_others_not() -> None:
    summary = {
        "network": {"status": "online", "asn": "AS36925", "cc": "MA", "type": "mobile",
                    "controls": {"reachable": 8, "total": 8}},
        "services": {
            "whatsapp": {"status": "blocked", "functions": {
                "messaging": fv("ok", []), "calls": fv("blocked", ["stun_dpi"]),
                "web": fv("blocked", ["tls_sni"])}},
            "viber": {"status": "blocked", "functions": {
                "calls": fv("blocked", ["stun_dpi", "udp_blocked"])}},
        },
        "results_file": "results/x.jsonl",
    }
    text = render(summary)
    for method in ("stun_dpi", "tls_sni", "udp_blocked"):
        assert text.count(f"{method}: {METHOD_TEXT[method]}") == 1
    assert METHOD_TEXT["dns_nxdomain"] not in text
    assert "network: online (AS36925, MA, mobile); controls reachable 8/8" in text


def test_nothing_blocked_no_legend() -> None:
    summary = {"network": {"status": "online", "asn": "AS0", "cc": "ZZ", "type": "fixed",
                           "controls": {"reachable": 2, "total": 2}},
               "services": {"duo": {"status": "ok", "functions": {"calls": fv("ok", [])}}},
               "results_file": "r.jsonl"}
    text = render(summary)
    assert not any(t in text for t in METHOD_TEXT.values())
