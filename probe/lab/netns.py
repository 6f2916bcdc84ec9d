"""Thin wrappers over ``ip netns``, ``ip link`` and process control for the lab.

Everything the lab creates lives inside network namespaces it owns: veth pairs are
created directly inside their namespaces (``ip -n A link add ... peer ... netns B``), so
no interface ever appears in the root namespace and two labs can use the same interface
names and addresses at once. Processes are started inside a namespace with
``ip netns exec`` in their own session, so they outlive the command that started them
(``lab up`` then ``lab down``) and can be found again with ``ip netns pids``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


class LabError(Exception):
    """The lab cannot be built or a command inside it failed (message says which)."""


def sh(args: Sequence[str], *, check: bool = True, input_text: str | None = None,
       timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; raise :class:`LabError` naming it on failure."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, input=input_text,
                              timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]} is not installed (see .ci/run for the packages)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(args)} did not finish within {timeout_s:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"{' '.join(args)} failed ({proc.returncode}): {detail}")
    return proc


def ns_exec(ns: str, args: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace ``ns``."""
    return sh(["ip", "netns", "exec", ns, *args], **kwargs)  # type: ignore[arg-type]


def list_namespaces() -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespace(ns: str) -> None:
    if ns not in list_namespaces():
        sh(["ip", "netns", "add", ns])
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])


def namespace_pids(ns: str) -> list[int]:
    out = sh(["ip", "netns", "pids", ns], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def kill_pids(pids: Sequence[int], grace_s: float = 2.0) -> None:
    """SIGTERM the given processes, then SIGKILL those still alive after ``grace_s``."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        # Reap our own children so they do not linger as zombies (which still "exist").
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def delete_namespace(ns: str) -> None:
    """Kill every process in ``ns``, delete it and its ``/etc/netns/<ns>`` directory."""
    if ns in list_namespaces():
        kill_pids(namespace_pids(ns))
        sh(["ip", "netns", "delete", ns], check=False)
    etc = NETNS_ETC / ns
    if etc.exists():
        for child in etc.iterdir():
            child.unlink()
        etc.rmdir()


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """Create a veth pair with one end in each namespace (never in the root namespace)."""
    sh(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b,
        "netns", ns_b])
    sh(["ip", "-n", ns_a, "link", "set", if_a, "up"])
    sh(["ip", "-n", ns_b, "link", "set", if_b, "up"])


def sysctl(ns: str, settings: dict[str, str]) -> None:
    args = []
    for key, value in settings.items():
        args += [f"{key}={value}"]
    ns_exec(ns, ["sysctl", "-q", "-w", *args])


def spawn(ns: str, args: Sequence[str], log_path: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running process inside ``ns`` in its own session, logging to a file."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    finally:
        log.close()
