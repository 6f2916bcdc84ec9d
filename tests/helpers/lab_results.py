"""Reading a lab run's results file for an assertion message."""

from __future__ import annotations

import json
from typing import Any


def failed_calls(summary: dict[str, Any]) -> list[str]:
    """Each failed ``calls`` measurement of the run whose summary this is, in one line:
    service, input, pass, failure, failed operation, outcome and the rest of its test keys
    (cut to 600 characters)."""
    rows = []
    with open(summary["results_file"], encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            tk = rec.get("test_keys") or {}
            if rec.get("function") == "calls" and tk.get("failure"):
                rest = {k: v for k, v in tk.items()
                        if k not in ("failure", "failed_operation", "outcome")}
                rows.append(f"{rec['service']} {rec['input']} {rec['pass']} {tk['failure']} "
                            f"{tk.get('failed_operation')} {tk.get('outcome', '')} "
                            f"{json.dumps(rest)[:600]}")
    return rows
