"""The lab's ``ndpi_block`` censor rule: :func:`probe.lab.censor.ndpi_block` starts the nDPI
censor (:mod:`probe.lab.dpi.nfq`) in the censor namespace and sends the forwarded UDP there
through an NFQUEUE; it is re-exported here with the reader of its decisions.

The censor's decisions are in its log (``<lab dir>/logs/ndpi-<n>.log``, one JSON object a
line, see :func:`decisions`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.lab.censor import NDPI_PREFIX as PROCESS_PREFIX
from probe.lab.censor import ndpi_block

__all__ = ["PROCESS_PREFIX", "decisions", "ndpi_block"]


def decisions(log: Path) -> list[dict[str, Any]]:
    """The censor's decisions so far (the JSON lines of its log)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
