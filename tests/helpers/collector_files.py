"""Results records that follow DESIGN.md "Results file" exactly, for the collector tests."""

from __future__ import annotations

from typing import Any

SERVICES = {
    "whatsapp": {"status": "blocked", "functions": {
        "messaging": {"status": "ok", "reachable": 2, "total": 2, "methods": []},
        "calls": {"status": "blocked", "reachable": 0, "total": 1, "methods": ["stun_dpi"]},
    }},
}


def measurement(report_id: str, *, service: str = "whatsapp", function: str = "messaging",
                start: str = "2016-11-04 09:30:00", asn: str = "AS36903", cc: str = "MA",
                failure: str | None = None, test_name: str = "tcp_connect",
                inp: str = "tcp://e1.whatsapp.net:443") -> dict[str, Any]:
    return {
        "measurement_start_time": start, "test_runtime": 0.12, "probe_asn": asn,
        "probe_cc": cc, "report_id": report_id, "software_name": "voip-probe",
        "software_version": "0.1.0", "input": inp, "annotations": {"network_type": "mobile"},
        "test_name": test_name, "test_keys": {"failure": failure},
        "service": service, "function": function, "pass": "main", "schema_version": 1,
    }


def summary(report_id: str, *, start: str = "2016-11-04 09:30:00", asn: str = "AS36903",
            cc: str = "MA", network_type: str = "mobile",
            services: dict[str, Any] | None = None, results_file: str = "") -> dict[str, Any]:
    return {
        "record": "summary", "schema_version": 1, "report_id": report_id,
        "measurement_start_time": start, "probe_asn": asn, "probe_cc": cc,
        "network": {"status": "online", "asn": asn, "cc": cc, "type": network_type},
        "services": SERVICES if services is None else services,
        "results_file": results_file,
    }
