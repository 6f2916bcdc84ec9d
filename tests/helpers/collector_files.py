"""Results records that follow DESIGN.md "Results file" exactly, for the collector tests."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
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


PSEUDONYMS = {"a": "aaaaaaaaaaaaaaaa", "b": "bbbbbbbbbbbbbbbb", "c": "cccccccccccccccc"}
LETTERS = {"u": "ok", "d": "blocked", "i": "inconclusive", "m": "impaired"}


def run_file(probe: str | None, start: str, calls: str, *, asn: str = "AS36903",
             cc: str = "MA", network_type: str = "mobile", service: str = "whatsapp") -> bytes:
    """One run's results file from probe ``probe`` (a key of PSEUDONYMS; None: no
    pseudonym): messaging ok, calls as given."""
    rid = f"{start.replace(' ', 'T')}_{probe}_{asn}_{network_type}_{random.getrandbits(40):x}"
    verdicts = {"messaging": {"status": "ok", "reachable": 2, "total": 2, "methods": []},
                "calls": {"status": calls, "reachable": 0 if calls == "blocked" else 1,
                          "total": 1, "methods": ["stun_dpi"] if calls == "blocked" else []}}
    lines = []
    for function in ("messaging", "calls"):
        rec = measurement(rid, service=service, function=function, start=start, asn=asn,
                          cc=cc)
        rec["annotations"] = {"network_type": network_type}
        if probe is not None:
            rec["annotations"]["probe_pseudonym"] = PSEUDONYMS[probe]
        lines.append(rec)
    lines.append(summary(rid, start=start, asn=asn, cc=cc, network_type=network_type,
                         services={service: {"status": "ok", "functions": verdicts}}))
    return "".join(json.dumps(r) + "\n" for r in lines).encode()


def hourly_files(probe: str | None, start: str, pattern: str, **kw: Any) -> list[bytes]:
    """One run an hour; each letter of ``pattern`` is the calls status (LETTERS)."""
    t = datetime.fromisoformat(start)
    out = []
    for letter in pattern:
        out.append(run_file(probe, f"{t:%Y-%m-%d %H:%M:%S}", LETTERS[letter], **kw))
        t += timedelta(hours=1)
    return out
