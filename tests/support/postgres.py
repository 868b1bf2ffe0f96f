"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries, ``initdb`` in a
temporary directory and ``pg_ctl`` on a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the server runs as
the ``postgres`` user through ``runuser``. Password authentication (scram-sha-256) over TCP,
as a real deployment has it; each test gets its own fresh database (``new_database``),
dropped afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from certstore.persistence.pgurl import PgLocation


@functools.cache
def _bin_dir() -> Path:
    """Debian's server binaries (/usr/lib/postgresql/VERSION/bin, the newest installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql "
                           "(listed in .ci/apt-packages.txt)")
    return found[-1].parent

SUPERUSER = "certgate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running test server (see the module docstring)."""

    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        """A file holding the password (what ``password_file:`` in a config names)."""
        return self.root / "client-password"

    def _as_server_user(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def start(self) -> PgServer:
        """initdb (first time) and start; waits until the server accepts connections."""
        if not self.data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            server_pw = self.root / "server-password"
            server_pw.write_text(self.password + "\n")
            self.password_file.write_text(self.password + "\n")
            self.password_file.chmod(0o600)
            if os.geteuid() == 0:
                pg = pwd.getpwnam("postgres")
                os.chown(self.root, pg.pw_uid, pg.pw_gid)
                os.chown(server_pw, pg.pw_uid, pg.pw_gid)
            self.root.chmod(0o711)
            server_pw.chmod(0o600)
            subprocess.run(self._as_server_user(
                str(_bin_dir() / "initdb"), "-D", str(self.data), "-A", "scram-sha-256",
                "-U", SUPERUSER, f"--pwfile={server_pw}", "--no-sync", "-E", "UTF8",
                "--locale=C.UTF-8"), check=True, capture_output=True, timeout=120)
        self.port = self.port or _free_port()
        # fsync off: a test server's durability does not matter, its speed does.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        subprocess.run(self._as_server_user(
            str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
            str(self.root / "server.log"), "-w", "-t", "60", "start"),
            check=True, capture_output=True, timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash)."""
        subprocess.run(self._as_server_user(str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-m",
                                            mode, "-w", "stop"),
                       check=False, capture_output=True, timeout=90)

    def url(self, database: str) -> str:
        """The URL of one database (no password: see ``password_file``)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                     password=self.password, database="postgres")

    async def new_database(self) -> str:
        """Create an empty database; its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still on it."""
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def dump(self, database: str) -> bytes:
        """``pg_dump`` of one database (plain SQL, what a backup holds)."""
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run([str(_bin_dir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", SUPERUSER, database], env=env, check=True,
                              capture_output=True, timeout=60).stdout

    def client_env(self) -> dict[str, str]:
        """Environment for a certgate process that uses this server (``PGPASSWORD``)."""
        return {**os.environ, "PGPASSWORD": self.password}


BACKENDS = ("sqlite", "postgresql")


@contextlib.asynccontextmanager
async def store_location(backend: str, tmp_path: Path,
                         server: PgServer) -> AsyncIterator[Path | PgLocation]:
    """Where a test's store lives on ``backend`` (one of :data:`BACKENDS`): a SQLite file in
    ``tmp_path``, or a fresh database on ``server``, dropped afterwards."""
    if backend == "sqlite":
        yield tmp_path / "certgate.sqlite"
        return
    database = await server.new_database()
    try:
        yield PgLocation.parse(server.url(database), password_file=server.password_file)
    finally:
        await server.drop_database(database)


_shared: list[PgServer] = []
_users = [0]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session (shared by every package's conftest
    that imports this fixture). Its directory is directly under /tmp: pytest's own temp
    tree is private to root, and the server runs as ``postgres``."""
    if shutil.which("runuser") is None and os.geteuid() == 0:
        raise RuntimeError("runuser (util-linux) is needed to run PostgreSQL as root")
    if not _shared:
        _shared.append(PgServer(Path(tempfile.mkdtemp(prefix="certgate-pg-"))).start())
    _users[0] += 1
    try:
        yield _shared[0]
    finally:
        _users[0] -= 1
        if _users[0] == 0:
            server = _shared.pop()
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
