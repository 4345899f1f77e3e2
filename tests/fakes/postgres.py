"""A real PostgreSQL 15 (Debian) on 127.0.0.1 for sql tests: initdb in a temp dir, postmaster in the foreground.

TESTBED.md section 4: initdb and postgres refuse to run as root, so both run as the `postgres` user (setpriv execs,
so the Popen PID is the postmaster's); every directory above the data directory must be traversable by it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from testlib import free_port, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-pg-test"
USER = "postgres"
# As root, run as the postgres user (setpriv execs: the Popen PID stays the postmaster's); otherwise as ourselves.
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []


class Postgres:
    """One throwaway cluster; `start()` and `stop()` may be called again (same data, same port)."""

    def __init__(self) -> None:
        # A short path: the Unix socket path (dir + /.s.PGSQL.port) must stay under 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="egpg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def dsn(self, database: str = "postgres", user: str = USER, password: str = PASSWORD) -> str:
        """An SQLAlchemy URL for the sql kind (psycopg 3 driver)."""
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A plain psycopg connection as the superuser, autocommit, for seeding."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname=database,
                               autocommit=True, connect_timeout=5)

    def start(self) -> Postgres:
        """Start the postmaster in the foreground and wait until it accepts connections."""
        argv = [*AS_POSTGRES, str(PG_BIN / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                "-p", str(self.port), "-c", f"unix_socket_directories={self.sock}", "-c", "fsync=off",
                "-c", "max_connections=40", "-c", "shared_buffers=16MB"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._ready, timeout=30)
        return self

    def create_database(self, name: str, schema: str = "") -> str:
        """A new database (dropped first if it exists), with `schema` SQL run in it; returns its name."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        if schema:
            with self.connect(name) as conn:
                conn.execute(schema.encode())
        return name

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID; SIGKILL after 15 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"postgres exited with {self.process.returncode}:\n{self.log.read_text()}")
        try:
            with self.connect():
                return True
        except psycopg.OperationalError:
            return False

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        for path in (self.data, self.sock, pwfile):
            if path != pwfile:
                path.mkdir(mode=0o700)
            if AS_POSTGRES:
                shutil.chown(path, USER, USER)
        started = time.monotonic()
        subprocess.run([*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", USER,
                        "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"})
        pwfile.unlink()
        assert time.monotonic() - started < 60
