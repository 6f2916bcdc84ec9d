"""Sending results files to a collector (DESIGN.md "Collector"), with a spool for later.

- Identity is the file's SHA-256: sending a file again is harmless (the collector
  answers "already stored"), and the id the collector returns is checked against ours.
- A crashed run's file (torn last line, no summary line) is sent without its torn line,
  as a partial upload (``?partial=true``).
- Every file first goes to the spool folder (``$XDG_DATA_HOME/voip-probe/spool``); it is
  removed only once the collector acknowledged it. Transient failures (no network,
  timeouts, 5xx such as 503 "database down", 429) are retried with exponential backoff
  and jitter, then left in the spool for ``voip-probe upload --pending``. A file the
  collector refuses (4xx) is moved to ``spool/rejected/`` with the reason, never retried
  and never silently deleted.
- The collector URL comes from ``--collector`` or ``collector = "..."`` in
  ``$XDG_CONFIG_HOME/voip-probe/config.toml``.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import os
import random
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from probe import __version__

if TYPE_CHECKING:
    import httpx

RESULTS_PATH = "/api/v1/results"
Status = Literal["stored", "already_stored", "spooled", "rejected"]


class UploadError(Exception):
    """Bad configuration or a file that cannot be read (reported before sending)."""


# -- user folders and configuration ------------------------------------------------------

def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "voip-probe" / "config.toml"


def default_spool_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "voip-probe" / "spool"


def load_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UploadError(f"{path}: cannot read the configuration: {exc}") from None


def collector_url(option: str | None, config: dict[str, Any] | None = None) -> str:
    """The collector's base URL from the option, else the user configuration."""
    url = option
    if not url:
        cfg = load_config() if config is None else config
        value = cfg.get("collector")
        if value is not None and not isinstance(value, str):
            raise UploadError(f"{config_path()}: 'collector' must be a string (a URL)")
        url = value
    if not url:
        raise UploadError(
            f"no collector: pass --collector URL or put collector = \"https://...\" in "
            f"{config_path()}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UploadError(f"collector URL {url!r} must start with http:// or https://")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise UploadError(f"collector URL {url!r}: plain http:// is refused (anyone on the "
                          "path, a censor included, could read the results): use https://, "
                          "or http:// only to this machine (localhost, 127.0.0.1, ::1)")
    return url.rstrip("/")


def is_loopback_host(host: str | None) -> bool:
    """Whether a URL's host is this machine: ``localhost`` or a loopback address."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- preparing a file --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Prepared:
    name: str
    data: bytes
    sha256: str
    partial: bool  # no summary line (a crashed run)
    dropped_torn_line: bool


def prepare(path: Path) -> Prepared:
    """Read a results file (plain or .gz) and make the exact bytes to send."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UploadError(f"{path}: cannot read: {exc}") from None
    dropped = False
    if raw and not raw.endswith(b"\n"):  # torn last line of a crashed run
        raw = raw[: raw.rfind(b"\n") + 1]
        dropped = True
    if not raw.strip():
        raise UploadError(f"{path}: no complete line to upload")
    last = raw.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        partial = json.loads(last).get("record") != "summary"
    except (ValueError, AttributeError):
        partial = True  # the collector will say what is wrong with it
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return Prepared(name, raw, hashlib.sha256(raw).hexdigest(), partial, dropped)


# -- the spool ---------------------------------------------------------------------------

class Spool:
    """Files waiting for the collector: ``<sha256>.jsonl`` plus ``<sha256>.json`` (metadata)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_spool_dir()

    def add(self, item: Prepared) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        data_path = self.root / f"{item.sha256}.jsonl"
        meta = {"name": item.name, "partial": item.partial, "sha256": item.sha256}
        _atomic_write(self.root / f"{item.sha256}.json", json.dumps(meta).encode())
        if not data_path.exists():
            _atomic_write(data_path, item.data)
        return data_path

    def pending(self) -> list[Prepared]:
        if not self.root.is_dir():
            return []
        items = []
        for data_path in sorted(self.root.glob("*.jsonl")):
            try:
                meta = json.loads((data_path.with_suffix(".json")).read_text())
            except (OSError, ValueError):
                meta = {}
            data = data_path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            items.append(Prepared(str(meta.get("name") or data_path.name), data, sha,
                                  bool(meta.get("partial", False)), False))
        return items

    def remove(self, item: Prepared) -> None:
        for suffix in (".jsonl", ".json"):
            (self.root / f"{item.sha256}{suffix}").unlink(missing_ok=True)

    def reject(self, item: Prepared, reason: str) -> Path:
        target = self.root / "rejected"
        target.mkdir(parents=True, exist_ok=True)
        dest = target / f"{item.sha256}.jsonl"
        src = self.root / f"{item.sha256}.jsonl"
        if src.exists():
            os.replace(src, dest)
        else:
            _atomic_write(dest, item.data)
        _atomic_write(target / f"{item.sha256}.json",
                      json.dumps({"name": item.name, "reason": reason}).encode())
        (self.root / f"{item.sha256}.json").unlink(missing_ok=True)
        return dest


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- sending -----------------------------------------------------------------------------

@dataclass(slots=True)
class Outcome:
    file: str
    status: Status
    message: str
    id: str | None = None
    measurements: int | None = None
    http_status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Uploader:
    """POSTs prepared files to one collector, retrying transient failures with backoff."""

    def __init__(self, base_url: str, *, attempts: int = 4, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, timeout_s: float = 30.0,
                 client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.url = base_url.rstrip("/") + RESULTS_PATH
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self._httpx = httpx
        self.client = client or httpx.Client(
            timeout=timeout_s, headers={"User-Agent": f"voip-probe/{__version__}"})

    def close(self) -> None:
        self.client.close()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.strip().isdigit():
            return min(self.max_backoff_s, float(retry_after))
        base: float = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return base * random.uniform(0.5, 1.0)

    def send(self, item: Prepared) -> Outcome:
        body = gzip.compress(item.data, compresslevel=6)
        params = {"filename": item.name} if _plain_name(item.name) else {}
        if item.partial:
            params["partial"] = "true"
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}
        last_problem = "not sent"
        for attempt in range(self.attempts):
            retry_after = None
            try:
                resp = self.client.post(self.url, content=body, params=params, headers=headers)
            except self._httpx.HTTPError as exc:
                last_problem = f"collector unreachable ({type(exc).__name__}: {exc})"
            else:
                message = _error_text(resp)
                if resp.status_code in (200, 201):
                    return self._acknowledged(item, resp)
                if resp.status_code == 429 or resp.status_code >= 500:
                    last_problem = f"HTTP {resp.status_code}: {message}"
                    retry_after = resp.headers.get("retry-after")
                else:
                    return Outcome(item.name, "rejected", message, item.sha256,
                                   http_status=resp.status_code)
            if attempt + 1 < self.attempts:
                self.sleep(self._delay(attempt, retry_after))
        return Outcome(item.name, "spooled", f"kept in the spool: {last_problem}", item.sha256)

    def _acknowledged(self, item: Prepared, resp: httpx.Response) -> Outcome:
        try:
            body = resp.json()
            got, count = str(body["id"]), int(body["measurements"])
        except (ValueError, KeyError, TypeError):
            return Outcome(item.name, "spooled", "kept in the spool: the collector's answer "
                           "is not the documented JSON", item.sha256, http_status=resp.status_code)
        if got != item.sha256:
            return Outcome(item.name, "spooled",
                           f"kept in the spool: the collector stored id {got}, expected "
                           f"{item.sha256} (file altered in transit?)", item.sha256,
                           http_status=resp.status_code)
        new = resp.status_code == 201
        return Outcome(item.name, "stored" if new else "already_stored",
                       f"{count} measurements " + ("stored" if new else "were already stored"),
                       got, count, resp.status_code)


def _plain_name(name: str) -> bool:
    return 0 < len(name) <= 200 and all(c.isalnum() or c in "._+-" for c in name) \
        and name.isascii() and name[0].isalnum() and ".." not in name


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])
    except ValueError:
        pass
    return resp.reason_phrase or f"HTTP {resp.status_code}"


Progress = Callable[[Outcome], None]


def deliver(items: list[Prepared], uploader: Uploader, spool: Spool,
            progress: Progress | None = None) -> list[Outcome]:
    """Spool each item, send it, and settle the spool by the outcome."""
    outcomes = []
    for item in items:
        try:
            spool.add(item)
        except OSError as exc:
            raise UploadError(f"{spool.root}: cannot write to the spool folder: {exc}") from None
        outcome = uploader.send(item)
        if outcome.status in ("stored", "already_stored"):
            spool.remove(item)
        elif outcome.status == "rejected":
            spool.reject(item, outcome.message)
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return outcomes
