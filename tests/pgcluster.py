"""A private Postgres primary and one streaming replica, for tests of reads on replicas.

The shared test server refuses replication connections, so `Cluster` makes its own: `initdb` on a free port with
`wal_level=replica` and trust auth (replication included), then `pg_basebackup -R -X stream` into a second folder
and a hot standby on another free port. Postgres refuses to run as root: when the tests run as root, every server
binary runs through `runuser -u postgres --`, in folders owned by postgres. Everything is stopped
(`pg_ctl stop -m immediate`) and removed by `close()`, also after a failed start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

BIN_DIRS = [Path(p) for p in (os.environ.get("CARBONLEDGER_PG_BIN", ""), "/usr/lib/postgresql/16/bin",
                               "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/14/bin") if p]
_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl, pg_basebackup and postgres (or None: tests skip)."""
    for d in BIN_DIRS:
        if all((d / t).exists() for t in _TOOLS):
            return d
    found = shutil.which("pg_basebackup")
    if found and all(shutil.which(t) for t in _TOOLS):
        return Path(found).parent
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A primary and one hot standby streaming from it; `primary_url` and `replica_url` (database `postgres`)."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="cl-replica-"))
        os.chmod(self.root, 0o755)
        self.primary_dir, self.replica_dir = self.root / "primary", self.root / "replica"
        self.primary_port, self.replica_port = free_port(), free_port()
        while self.replica_port == self.primary_port:
            self.replica_port = free_port()
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.running: set[Path] = set()

    def url(self, port: int, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{db}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        got = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if got.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({got.returncode}): {(got.stderr or got.stdout)[-2000:]}")

    def _conf(self, data: Path, port: int, extra: str = "") -> None:
        with open(data / "postgresql.conf", "a") as f:
            f.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                    "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n"
                    "wal_receiver_status_interval = 1s\n" + extra)

    def start(self) -> "Cluster":
        """initdb, start the primary, base-backup it and start the standby; waits until both answer."""
        try:
            self._run("initdb", "-D", str(self.primary_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--locale=C")
            with open(self.primary_dir / "pg_hba.conf", "a") as f:
                f.write("\nhost replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n")
            self._conf(self.primary_dir, self.primary_port)
            self.start_server(self.primary_dir)
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                      "-D", str(self.replica_dir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
            self._conf(self.replica_dir, self.replica_port)
            self.start_server(self.replica_dir)
            self.wait_answers(self.replica_url)
            return self
        except BaseException:
            self.close()
            raise

    def start_server(self, data: Path) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / f"{data.name}.log"), "-w", "-t", "60", "start")
        self.running.add(data)

    def stop_server(self, data: Path) -> None:
        self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        self.running.discard(data)

    def stop_replica(self) -> None:
        self.stop_server(self.replica_dir)

    def start_replica(self) -> None:
        self.start_server(self.replica_dir)
        self.wait_answers(self.replica_url)

    @staticmethod
    def wait_answers(url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log(self, which: str = "replica") -> str:
        try:
            return (self.root / f"{which}.log").read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        for data in list(self.running):
            try:
                self.stop_server(data)
            except Exception:  # noqa: BLE001 - keep going: the other server and the folders must go too
                pass
        shutil.rmtree(self.root, ignore_errors=True)
