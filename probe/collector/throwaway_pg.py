"""A throwaway PostgreSQL server for the collector's tests and benchmarks.

Runs Debian's ``initdb``/``pg_ctl`` (package ``postgresql``) in a fresh temporary folder,
listening on a unix socket only (no TCP port, so nothing outside can reach it and
parallel runs cannot collide). As root, the server runs as the ``postgres`` user (initdb
refuses root). Nothing here is used by the collector itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PORT = 5432  # only names the socket file inside our private folder

# Runs beside the server: if the process that started it dies without cleaning up (a test
# run killed by a timeout or SIGKILL), stop the server and remove its folder. Ends by
# itself once the folder is gone (normal cleanup).
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, root, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while os.path.isdir(root):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
                       timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        break
    time.sleep(0.5)
"""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, or ``pg_config``'s."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def unavailable_reason() -> str | None:
    if find_bin_dir() is None:
        return "PostgreSQL server binaries not found (Debian package 'postgresql')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server"
    return None


class ThrowawayPostgres:
    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="voip-probe-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.sock.mkdir()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.running = False
        self._watchdog: subprocess.Popen[bytes] | None = None

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return cmd

    def _run(self, *args: str) -> None:
        cmd = self._cmd(*args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> str:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C")
        opts = (f"-k {self.sock} -p {PORT} -c listen_addresses='' -c max_connections=200 "
                "-c shared_buffers=64MB")
        if self._watchdog is None:
            stop = self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.root), *stop],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start")
        self.running = True
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
            self.running = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.sock}&port={PORT}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self._watchdog is not None:
                self._watchdog.wait(10)  # it ends once the folder is gone

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
