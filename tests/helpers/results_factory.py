"""Hand-built results files for the compare/timeline/report tests.

Files follow DESIGN.md "Results file": measurement lines with OONI base fields plus
``service``, ``function``, ``pass`` and ``schema_version``, then a summary line.
``crashed=True`` leaves the summary out and tears the last measurement line, like a run
killed mid-write.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from probe.results import results_filename

# (service, function) -> status, or (status, methods) or (status, methods, reachable, total)
Spec = dict[tuple[str, str], Any]

OK = "ok"
BLOCKED = "blocked"
INCONCLUSIVE = "inconclusive"


def _verdict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = (value,)
    status = value[0]
    methods = list(value[1]) if len(value) > 1 else (["stun_dpi"] if status == "blocked" else [])
    total = value[3] if len(value) > 3 else 3
    default_reachable = total if status == "ok" else (0 if status == "blocked" else 1)
    reachable = value[2] if len(value) > 2 else default_reachable
    if status == "inconclusive":
        reachable = 0
    return {"status": status, "reachable": reachable, "total": total, "methods": methods}


def _worst(statuses: list[str]) -> str:
    order = {"ok": 0, "inconclusive": 1, "impaired": 2, "blocked": 3}
    return max(statuses, key=order.__getitem__) if statuses else "ok"


def write_run(folder: Path, start: str, spec: Spec, *, asn: str = "AS36903",
              network_type: str = "mobile", cc: str = "MA", online: bool = True,
              crashed: bool = False, compress: bool = False,
              measurements_per_function: int = 2) -> Path:
    """Write one run's results file in ``folder``; ``start`` is "YYYY-MM-DD HH:MM:SS"."""
    report_id = uuid.uuid4().hex
    compact = datetime.strptime(start, "%Y-%m-%d %H:%M:%S").strftime("%Y%m%dT%H%M%SZ")
    name = results_filename(compact, asn, network_type, report_id[:8])
    path = folder / (name + (".gz" if compress else ""))
    base = {"measurement_start_time": start, "test_runtime": 0.5, "probe_asn": asn,
            "probe_cc": cc, "report_id": report_id, "software_name": "voip-probe",
            "software_version": "0.1.0", "annotations": {"network_type": network_type},
            "schema_version": 1}
    lines: list[str] = []
    services: dict[str, dict[str, Any]] = {}
    for (service, function), value in spec.items():
        verdict = _verdict(value)
        services.setdefault(service, {"status": "ok", "functions": {}})
        services[service]["functions"][function] = verdict
        for k in range(measurements_per_function):
            failed = verdict["status"] != "ok" and k >= verdict["reachable"]
            lines.append(json.dumps({
                **base, "input": f"udp://{service}.example:{3478 + k}",
                "test_name": "stun_binding", "service": service, "function": function,
                "pass": "main",
                "test_keys": {"failure": "generic_timeout_error" if failed else None}}))
    for sv in services.values():
        sv["status"] = _worst([f["status"] for f in sv["functions"].values()])
    summary = {"record": "summary", "schema_version": 1, "report_id": report_id,
               "measurement_start_time": start, "test_runtime": 12.5, "probe_asn": asn,
               "probe_cc": cc, "results_file": f"results/{name}",
               "network": {"status": "online" if online else "offline", "asn": asn, "cc": cc,
                           "type": network_type},
               "services": services}
    if crashed:
        text = "\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2]
    else:
        text = "\n".join([*lines, json.dumps(summary)]) + "\n"
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def times(first: str, count: int, step_min: int = 60) -> list[str]:
    """``count`` timestamps from ``first`` ("YYYY-MM-DD HH:MM:SS"), ``step_min`` apart."""
    t0 = datetime.strptime(first, "%Y-%m-%d %H:%M:%S")
    return [(t0 + timedelta(minutes=i * step_min)).strftime("%Y-%m-%d %H:%M:%S")
            for i in range(count)]
