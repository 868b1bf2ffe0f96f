"""SQLite persistence through aiosqlite: the embedded default backend (one host).

Two connections: one for writes, whose transactions (``BEGIN IMMEDIATE``) are serialised by a
lock, and one for reads, which in WAL mode sees only committed data and never waits for a
writer. Every mutation appends to ``changes`` inside its own transaction, so the change feed
can never disagree with the data (a failed operation leaves both as they were).

After each commit that appended to the feed, the writer rewrites a small ``.notify`` file
beside the database. Its file event comes after the commit is visible to every reader, so
a follower watching the directory never reads the feed too early and then sleeps through a
commit (SQLite's own WAL write raises its event before the commit is published).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from certstore.errors import StoreSetupError
from certstore.persistence.base import Database
from certstore.persistence.conn import SQLITE, IntegrityViolation, Row, record_committed
from certstore.persistence.migrations import LATEST, MIGRATIONS
from certstore.persistence.writer import Writer

_BUSY_TIMEOUT_MS = 10_000
NOTIFY_SUFFIX = ".notify"


class SqliteConn:
    """The shared queries' view of an aiosqlite connection."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.raw = conn

    # One thread hop per query (execute_fetchall), not three (execute, fetch, close): the
    # gateway's follower runs several queries per reload while its loop thread is busy.
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.raw.execute_fetchall(sql, args))
        except sqlite3.IntegrityError as e:
            raise IntegrityViolation(str(e)) from e

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        # The cursor is freed when its last reference goes (CPython refcounting) instead
        # of by a second thread hop to close it.
        try:
            cursor = await self.raw.execute(sql, args)
        except sqlite3.IntegrityError as e:
            raise IntegrityViolation(str(e)) from e
        return cursor.rowcount

    async def notify(self, seq: int) -> None:
        """Nothing inside the transaction: the notify file is written after the commit."""


class SqliteDatabase(Database):
    """An open certgate database in a SQLite file."""

    def __init__(self, read: aiosqlite.Connection, write: aiosqlite.Connection,
                 path: Path | None = None) -> None:
        super().__init__(SqliteConn(read))
        self._write = SqliteConn(write)
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, create: bool = False) -> SqliteDatabase:
        """Open (and migrate) the database; it must exist unless ``create``."""
        if not create and not path.exists():
            raise StoreSetupError(f"no certgate database at {path}; run 'certgate init' first")
        if create and not path.exists():
            # Created 0600 up front: SQLite gives its -wal/-shm files the database's mode.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            write = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreSetupError(f"cannot open the database {path}: {e}") from e
        try:
            await _configure(write)
            await _migrate(write, path)
            read = await aiosqlite.connect(path, isolation_level=None)
            await _configure(read)
        except sqlite3.Error as e:
            await write.close()
            raise StoreSetupError(f"cannot open the database {path}: {e}") from e
        except BaseException:
            await write.close()
            raise
        return cls(read, write, path)

    def file_signature(self) -> tuple[int, ...]:
        """Size and mtime of the database and its WAL: changes whenever any process commits.

        A ``stat`` costs a few microseconds on the event loop; a query costs a thread hop.
        Followers check this first and only query the feed when it changed.
        """
        out: list[int] = []
        if self._path is not None:
            for path in (self._path, self._path.with_name(self._path.name + "-wal")):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    out += [0, 0]
                else:
                    out += [st.st_size, st.st_mtime_ns]
        return tuple(out)

    @property
    def watch_directory(self) -> str | None:
        return None if self._path is None else str(self._path.parent)

    async def close(self) -> None:
        """Close both connections."""
        await self._write.raw.close()
        await self._conn_raw().close()

    def _conn_raw(self) -> aiosqlite.Connection:
        assert isinstance(self._conn, SqliteConn)
        return self._conn.raw

    @asynccontextmanager
    async def write(self, now: dt.datetime) -> AsyncIterator[Writer]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._lock:
            await self._write.raw.execute("BEGIN IMMEDIATE")
            writer = Writer(self._write, now)
            try:
                yield writer
            except BaseException:
                await self._write.raw.execute("ROLLBACK")
                raise
            await self._write.raw.execute("COMMIT")
        if writer.changes:
            record_committed(writer.changes)
            self._announce(writer.changes[-1])
        self._signal()

    def _announce(self, seq: int) -> None:
        """Rewrite the notify file (a few microseconds): its event follows the commit."""
        if self._path is None:
            return
        notify = self._path.with_name(self._path.name + NOTIFY_SUFFIX)
        try:
            fd = os.open(notify, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"%d\n" % seq)
            finally:
                os.close(fd)
        except OSError:
            pass  # followers still find the commit through the WAL's events and polls

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """An advisory ``flock`` on a file beside the database (one host: every process
        that can open the file shares the lock)."""
        if self._path is None:
            yield True
            return
        lock_path = self._path.with_name(f"{self._path.name}.lock-{_safe(name)}")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    async def _autocommit(self, sql: str, args: tuple[object, ...]) -> None:
        async with self._lock:
            await self._write.execute(sql, args)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:64]


async def _configure(conn: aiosqlite.Connection) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    # An older schema is upgraded on open, as before: one host, one certgate on the file.
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > LATEST:
        raise StoreSetupError(f"the database {path} has schema version {version}, newer than "
                              f"this certgate ({LATEST}); upgrade certgate")
    for migration in MIGRATIONS[version:]:
        # executescript commits implicitly, so the version bump goes inside the script.
        await conn.executescript(f"BEGIN IMMEDIATE;\n{migration.sqlite}\n"
                                 f"PRAGMA user_version = {migration.version};\nCOMMIT;")
