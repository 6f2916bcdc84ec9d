"""The collector's settings (``voip-probe serve`` options), DESIGN.md "Collector"."""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.collector.validate import MAX_BYTES_DEFAULT, MAX_LINES_DEFAULT

DAILY_QUOTA_DEFAULT = 256 * 1024 * 1024
# Bodies inflated and validated at once (each costs a few lines of memory and a core).
MAX_INFLATING_DEFAULT = 4
# A page of GET /api/v1/measurements stops growing past this many bytes of records.
PAGE_BYTES_DEFAULT = 8 * 1024 * 1024


@dataclass(slots=True)
class CollectorConfig:
    max_bytes: int = MAX_BYTES_DEFAULT  # inflated results file
    max_lines: int = MAX_LINES_DEFAULT
    # What one file may take on disk: the file plus the indexed copy of its records
    # (None: twice max_bytes).
    max_stored_bytes: int | None = None
    # Bytes of new files one client may have stored per UTC day (0: no quota).
    daily_quota_bytes: int = DAILY_QUOTA_DEFAULT
    max_inflating: int = MAX_INFLATING_DEFAULT
    page_bytes: int = PAGE_BYTES_DEFAULT
    admin_token: str | None = None
    rate_limit_per_min: float = 600.0
    # Rate limits and quotas in the database (probe.collector.shared_limits), so that they
    # hold across collectors sharing it; None: so with PostgreSQL, in memory with SQLite.
    shared_limits: bool | None = None
    # Also run the reflector (probe.reflector) in the same process, on these UDP ports.
    reflector_host: str = "127.0.0.1"
    reflector_ports: list[int] = field(default_factory=list)
    # The reflector's name as GET /api/v1/reflector gives it; None: the host the client
    # used to reach the collector (the reflector runs on the same machine).
    reflector_name: str | None = None
    # The status page: a page is rendered again at most this often (an upload batch).
    page_cache_s: float = 5.0

    @property
    def stored_limit(self) -> int:
        return self.max_stored_bytes if self.max_stored_bytes is not None \
            else 2 * self.max_bytes
