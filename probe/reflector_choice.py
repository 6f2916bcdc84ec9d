"""Which reflector a run uses, one setting away: ``--reflector``, else ``reflector = "host"``
in the user configuration (``config.toml``, beside ``collector``), else the reflector the
configured collector advertises (``GET /api/v1/reflector``, DESIGN.md "Collector").

So a volunteer configures one URL (the collector) and gets the reflector-based evidence
(UDP port test, payload differential, call stream, the same-port control of silent STUN
and TURN servers) without knowing that a reflector exists. Asking the collector is one
HTTPS request with a short timeout before the run; when it fails, the run goes on without
a reflector and the reason is kept for the summary's note. The reflector's name is the
only thing read from the answer, and it must be a host name or an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFLECTOR_PATH = "/api/v1/reflector"
ASK_TIMEOUT_S = 3.0


class ReflectorConfigError(ValueError):
    """``reflector`` in the configuration is not a host name or an address."""


@dataclass(frozen=True, slots=True)
class ReflectorChoice:
    host: str | None
    source: str | None  # "option" | "config" | "collector", None without a reflector
    note: str | None = None  # why the collector gave none (no reflector only)


def _valid_host(value: str) -> bool:
    from probe.hostnames import valid_hostname

    return valid_hostname(value)


def configured_reflector(config: dict[str, Any], where: str) -> str | None:
    """``reflector = "host"`` from the user configuration, validated."""
    value = config.get("reflector")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _valid_host(value.strip()):
        raise ReflectorConfigError(f"{where}: 'reflector' must be a host name or an "
                                   f"address (got {value!r})")
    return value.strip()


def advertised_reflector(collector: str, timeout_s: float = ASK_TIMEOUT_S,
                         ) -> tuple[str | None, str | None]:
    """(host, None) when the collector at ``collector`` runs a reflector, else (None, why)."""
    import httpx

    url = collector.rstrip("/") + REFLECTOR_PATH
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False) as client:
            resp = client.get(url, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        from probe import failures

        return None, f"the collector could not be asked ({failures.classify(exc)})"
    if resp.status_code != 200:
        return None, f"the collector answered {resp.status_code} to {REFLECTOR_PATH}"
    try:
        body = resp.json()
    except ValueError:
        return None, "the collector's answer is not JSON"
    refl = body.get("reflector") if isinstance(body, dict) else None
    if refl is None:
        return None, "the collector runs no reflector"
    host = refl.get("host") if isinstance(refl, dict) else None
    if not isinstance(host, str) or not _valid_host(host):
        return None, "the collector advertised an invalid reflector name"
    return host, None


def choose_reflector(option: str | None, config: dict[str, Any], where: str,
                     collector: str | None) -> ReflectorChoice:
    """The reflector for a run: the option, the configuration, then the collector."""
    if option:
        return ReflectorChoice(option, "option")
    configured = configured_reflector(config, where)
    if configured:
        return ReflectorChoice(configured, "config")
    if not collector:
        return ReflectorChoice(None, None)
    host, why = advertised_reflector(collector)
    if host is None:
        return ReflectorChoice(None, None, why)
    return ReflectorChoice(host, "collector")
