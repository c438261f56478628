"""A throw-away Postgres cluster for tests and benchmarks: `initdb` in a temporary directory (as
an unprivileged user when run as root: Postgres refuses root), `pg_ctl` with its unix socket in
that directory and a free TCP port on 127.0.0.1; stopped and deleted at the end.

    >>> with ThrowAwayPostgres() as server:        # doctest: +SKIP
    ...     url = server.new_database("t1")         # postgresql://aimesh@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from foundation.errors import InfrastructureError
from foundation.ports import free_port

SUPERUSER = "aimesh"


class PostgresMissing(InfrastructureError):
    """No Postgres server programs here (Debian: `apt-get install postgresql`)."""


def postgres_bin() -> Path:
    """The directory of `initdb` and `pg_ctl` (Debian keeps them out of PATH), newest version."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise PostgresMissing("no Postgres server here: apt-get install postgresql")
    return Path(found[-1]).parent


def _server_user() -> str:
    """Debian's `postgres` system user (its package creates it), else `nobody`. Not `nobody`
    where it can be helped: the sandboxes run code as nobody, and their tests check that nothing
    is left running as the code's uid."""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


class ThrowAwayPostgres:
    """One Postgres cluster in a temporary directory, trusting local connections."""

    def __init__(self, *, user: str | None = None) -> None:
        self.bin = postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="aimesh-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # Postgres will not run as root
            user = user or _server_user()
            entry = pwd.getpwnam(user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._as = ["runuser", "-u", user, "--"]
        self._pg(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    @property
    def url(self) -> str:
        """The maintenance database's URL."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _pg(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise InfrastructureError(
                f"{program} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}"
            )

    def start(self) -> Self:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode`: smart, fast or immediate, as `pg_ctl stop -m`)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (fast: every session is cut) and start again on the same port."""
        self.stop("fast")
        self.start()

    def new_database(self, name: str) -> str:
        """Create database `name` (empty); its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def close(self) -> None:
        """Stop the server (if running) and delete the cluster."""
        with contextlib.suppress(InfrastructureError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
