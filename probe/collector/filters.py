"""The one filter of the collector's queries: country, network, service, function, time.

``GET /api/v1/measurements`` and ``/summary`` read the index tables (``probe_asn``,
``probe_cc``), the status page and ``/api/v1/events`` read the ``status_*`` tables (``asn``,
``cc``); both are filtered by the same values, written once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Column names of the filtered keys in the index tables and in the status tables.
INDEX_COLUMNS = ("probe_asn", "probe_cc")
STATUS_COLUMNS = ("asn", "cc")


@dataclass(frozen=True, slots=True)
class Filters:
    asn: str | None = None
    cc: str | None = None
    service: str | None = None
    function: str | None = None
    since: str | None = None  # "YYYY-MM-DD HH:MM:SS", inclusive
    until: str | None = None  # inclusive
    network_type: str | None = None  # mobile, fixed, wifi, unknown

    def where(self, time_column: str | None = "measurement_start_time",
              columns: tuple[str, str] = INDEX_COLUMNS) -> tuple[str, list[Any]]:
        """SQL condition and parameters (``?`` placeholders). ``time_column`` None leaves
        the time range out; against a ``day`` column the bounds are compared as dates."""
        asn_column, cc_column = columns
        parts: list[str] = []
        params: list[Any] = []
        for column, value in ((asn_column, self.asn), (cc_column, self.cc),
                              ("service", self.service), ("function", self.function),
                              ("network_type", self.network_type)):
            if value is not None:
                parts.append(f"{column} = ?")
                params.append(value)
        for op, bound in ((">=", self.since), ("<=", self.until)):
            if time_column is not None and bound is not None:
                parts.append(f"{time_column} {op} ?")
                params.append(bound[:10] if time_column == "day" else bound)
        return (" AND ".join(parts) or "1 = 1"), params
