"""PostgreSQL persistence through asyncpg: the fleet backend (several hosts, one store).

Queries are the shared ones (``?`` placeholders become ``$n`` here). Write transactions
take one transaction-scoped advisory lock first, so they are serialised across the fleet
exactly as SQLite's ``BEGIN IMMEDIATE`` serialises them on one host: the store's
check-then-write logic stays race-free, and change sequence numbers commit in order (a
follower reading ``seq > last`` can never skip one that commits later).

Every change also sends ``NOTIFY certgate_changes`` inside its transaction (delivered at
commit, dropped on rollback). A dedicated connection LISTENs; it reconnects with a bounded
backoff after any loss and signals the follower on every (re)connection, so the follower
first catches up on what was notified while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from certstore.errors import StoreSetupError, StoreUnavailable
from certstore.persistence.base import CONNECTED, Database, StoreHealth
from certstore.persistence.conn import POSTGRESQL, IntegrityViolation, Row, record_committed
from certstore.persistence.migrations import LATEST, MIGRATIONS, POSTGRESQL_BOOTSTRAP
from certstore.persistence.pgurl import PgLocation
from certstore.persistence.writer import Writer

log = logging.getLogger("certgate.store")
CHANNEL = "certgate_changes"
LOCK_CLASS_WRITE = 0x63677701
LOCK_CLASS_NAMED = 0x63677702
CONNECT_TIMEOUT_S = 5.0
PING_S = 2.0
"""How often the LISTEN connection is checked (a stopped server is noticed within this)."""
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Delays between reconnection attempts (the last one repeats)."""

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2...`` (no query has a literal ``?``)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


def translate(e: BaseException) -> BaseException:
    """asyncpg's error as the store's: integrity refusals and outages; others unchanged."""
    if isinstance(e, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(str(e))
    if isinstance(e, _UNAVAILABLE):
        return StoreUnavailable(f"the PostgreSQL store is unavailable ({type(e).__name__}); "
                                "retry shortly")
    return e


class PgConn:
    """The shared queries' view of one asyncpg connection (inside a transaction)."""

    dialect = POSTGRESQL

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.raw = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.raw.fetch(numbered(sql), *args))
        except Exception as e:
            raise translate(e) from e

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            return _rowcount(await self.raw.execute(numbered(sql), *args))
        except Exception as e:
            raise translate(e) from e

    async def notify(self, seq: int) -> None:
        await self.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(seq)))


class PgPoolConn(PgConn):
    """Reads on the pool: each query borrows a connection; one retry after a lost one
    (a pooled connection dies with a server restart, and a read is safe to repeat)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        for attempt in (0, 1):
            try:
                return list(await self._pool.fetch(numbered(sql), *args))
            except Exception as e:
                error = translate(e)
                if attempt or not isinstance(error, StoreUnavailable):
                    raise error from e
        raise AssertionError("unreachable")

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            return _rowcount(await self._pool.execute(numbered(sql), *args))
        except Exception as e:
            raise translate(e) from e


class PgDatabase(Database):
    """An open certgate database on a PostgreSQL server."""

    def __init__(self, pool: asyncpg.Pool, location: PgLocation) -> None:
        super().__init__(PgPoolConn(pool))
        self._pool = pool
        self._location = location
        self._health = CONNECTED
        self._listen_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, location: PgLocation, *, create: bool = False) -> PgDatabase:
        """Connect and check (``create``: create or upgrade) the schema; a clear
        :class:`StoreSetupError` for every way this can fail."""
        try:
            pool = await asyncpg.create_pool(**location.connect_args(), min_size=1,
                                             max_size=4, timeout=CONNECT_TIMEOUT_S)
        except Exception as e:
            raise StoreSetupError(location.explain(e)) from e
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, location, create=create)
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, location)

    @property
    def health(self) -> StoreHealth:
        return self._health

    def on_commit(self, callback: Callable[[], None]) -> Callable[[], None]:
        # The first subscriber is a follower: from now on, listen for the fleet's changes.
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen(), name="certgate-listen")
        return super().on_commit(callback)

    async def _listen(self) -> None:
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(**self._location.connect_args(),
                                             timeout=CONNECT_TIMEOUT_S)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda *_a: self._signal())
                if not self._health.connected:
                    log.warning("store: PostgreSQL connection restored")
                self._health, failures = CONNECTED, 0
                self._signal()  # catch up on whatever was notified while away
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PING_S):
                            await lost.wait()
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=PING_S)
                raise ConnectionError("the server closed the connection")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                reason = f"PostgreSQL unreachable: {type(e).__name__}: {e}"[:300]
                if self._health.connected:
                    log.warning("store: %s; serving the last snapshot, reconnecting", reason)
                self._health = StoreHealth(connected=False, reason=reason)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1

    async def close(self) -> None:
        """Stop listening and close the pool (bounded: a dead server cannot hold it)."""
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
        try:
            async with asyncio.timeout(5):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_S)
        except Exception as e:
            raise translate(e) from e
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def write(self, now: dt.datetime) -> AsyncIterator[Writer]:
        """One transaction, serialised fleet-wide; committed when the block ends."""
        async with self._connection() as conn:
            tx = conn.transaction()
            try:
                await tx.start()
                await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS_WRITE)
            except Exception as e:
                raise translate(e) from e
            writer = Writer(PgConn(conn), now)
            try:
                yield writer
            except BaseException:
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            try:
                await tx.commit()
            except Exception as e:
                raise translate(e) from e
        record_committed(writer.changes)
        self._signal()

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """A session advisory lock, held on one pooled connection for the block."""
        async with self._connection() as conn:
            try:
                got = bool(await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS_NAMED, name))
            except Exception as e:
                raise translate(e) from e
            try:
                yield got
            finally:
                if got:
                    with contextlib.suppress(Exception):
                        await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))",
                                           LOCK_CLASS_NAMED, name)

    async def _autocommit(self, sql: str, args: tuple[object, ...]) -> None:
        await self._conn.execute(sql, args)


async def _migrate(conn: asyncpg.Connection, location: PgLocation, *, create: bool) -> None:
    """Check the schema version; with ``create``, create or upgrade it (one transaction,
    under a lock, so two ``certgate init`` at once do the work once)."""
    try:
        if not create:
            found = await conn.fetchval("SELECT to_regclass('certgate_schema')")
            if found is None:
                raise StoreSetupError(f"the database {location.display} has no certgate "
                                      "schema; run 'certgate init' first")
            version = int(await conn.fetchval("SELECT version FROM certgate_schema"))
            _check_version(version, location)
            if version < LATEST:
                raise StoreSetupError(
                    f"the database {location.display} has schema version {version}, older "
                    f"than this certgate ({LATEST}); run 'certgate init' to upgrade it")
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 1)", LOCK_CLASS_WRITE)
            await conn.execute(POSTGRESQL_BOOTSTRAP)
            version = int(await conn.fetchval("SELECT version FROM certgate_schema"))
            _check_version(version, location)
            for migration in MIGRATIONS[version:]:
                await conn.execute(migration.postgresql)
                await conn.execute("UPDATE certgate_schema SET version = $1",
                                   migration.version)
    except StoreSetupError:
        raise
    except asyncpg.InsufficientPrivilegeError as e:
        raise StoreSetupError(f"the database user cannot create the schema in "
                              f"{location.display}: {e}") from e
    except Exception as e:
        raise StoreSetupError(location.explain(e)) from e


def _check_version(version: int, location: PgLocation) -> None:
    if version > LATEST:
        raise StoreSetupError(f"the database {location.display} has schema version {version}, "
                              f"newer than this certgate ({LATEST}); upgrade certgate")
