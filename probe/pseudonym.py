"""The probe's pseudonym: tells probes on one network apart without linking a person.

The collector confirms an event when independent probes agree
(:mod:`probe.analysis.crowd`), so it must tell two runs of one device from runs of two
devices. The results files carry, in every measurement's ``annotations``,
``"probe_pseudonym"``: 16 characters (80 random bits, base32) that

- are drawn at random by the probe (``os.urandom``), never derived from the address,
  the ASN, the device or anything else, so nobody can compute or guess them;
- differ per network (ASN, country and network type): the same phone's mobile and home
  runs carry unrelated pseudonyms, so they cannot be linked by it;
- rotate: each is valid for one rotation period (:data:`ROTATION_S`, 28 days) of a
  calendar shared by every probe (periods start at multiples of 28 days since
  1970-01-01 UTC). Every probe changes pseudonym at the same instant, so on a network
  with several probes the old and new pseudonyms of one device cannot be paired by when
  one stopped and the other started.

What it reveals to whoever reads the collector's data: which runs on one network within
one period came from the same device (so how often and at what times of day that device
ran, and how many devices measure that network). What it does not: the address, the
device, the person, or any link to runs on another network or in another period.
Timing can still hint (a device that switches between two networks at the same hours);
on a network with a single probe, that probe's runs are linkable over time anyway by
being the only ones.

Kept in ``$XDG_DATA_HOME/voip-probe/pseudonyms.json`` (mode 0600): only the current
period's pseudonyms; a new period empties it, so it never lists the networks of earlier
periods. If the file cannot be read or written, the run gets a fresh pseudonym that is
used once: such runs never confirm each other (a probe's change needs two runs).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROTATION_S = 28 * 86400
ANNOTATION = "probe_pseudonym"
PATTERN = r"^[a-z2-7]{16}$"
FILE_NAME = "pseudonyms.json"


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "voip-probe" / FILE_NAME


def new_pseudonym() -> str:
    return base64.b32encode(os.urandom(10)).decode("ascii").lower()


def period(now_s: float) -> int:
    """The rotation period that ``now_s`` (epoch seconds) falls in."""
    return int(now_s // ROTATION_S)


def network_key(asn: str, cc: str, network_type: str) -> str:
    return f"{asn} {cc} {network_type}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialises runs that start at once (``watch`` and ``run``), so one device never
    gets two pseudonyms for one network in one period."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; the atomic rename still keeps the file whole
        yield
        return
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable or damaged: start afresh (the old one is replaced)
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".pseudonyms-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pseudonym_for(asn: str, cc: str, network_type: str, *, path: Path | None = None,
                  now_s: float | None = None) -> tuple[str, str | None]:
    """This device's pseudonym on that network for the current period, and a note when
    it could not be kept (then it is used once)."""
    path = path or default_path()
    current = period(time.time() if now_s is None else now_s)
    key = network_key(asn, cc, network_type)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            data = _read(path)
            names = data.get("pseudonyms")
            if data.get("period") != current or not isinstance(names, dict):
                names = {}
            found = names.get(key)
            if isinstance(found, str) and len(found) == 16:
                return found, None
            names[key] = new_pseudonym()
            _write(path, {"period": current, "pseudonyms": names})
            return str(names[key]), None
    except OSError as exc:
        # The note goes into every measurement: the file's name, never its folder (the
        # user's home) nor the exception's text (which may quote the path).
        why = exc.strerror or type(exc).__name__
        return new_pseudonym(), f"pseudonym not kept ({path.name}: {why})"
