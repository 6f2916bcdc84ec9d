"""The collector's settings (``voip-probe serve`` options), DESIGN.md "Collector"."""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.collector.validate import MAX_BYTES_DEFAULT, MAX_LINES_DEFAULT


@dataclass(slots=True)
class CollectorConfig:
    max_bytes: int = MAX_BYTES_DEFAULT  # inflated results file
    max_lines: int = MAX_LINES_DEFAULT
    admin_token: str | None = None
    rate_limit_per_min: float = 600.0
    # Also run the reflector (probe.reflector) in the same process, on these UDP ports.
    reflector_host: str = "127.0.0.1"
    reflector_ports: list[int] = field(default_factory=list)
    # The reflector's name as GET /api/v1/reflector gives it; None: the host the client
    # used to reach the collector (the reflector runs on the same machine).
    reflector_name: str | None = None
    # The status page: a page is rendered again at most this often (an upload batch).
    page_cache_s: float = 5.0
