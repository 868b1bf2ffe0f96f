"""The persistence interface: one abstract database, a SQLite and a PostgreSQL backend.

``certstore`` above this layer sees only :class:`Database` (the shared queries of
:class:`~certstore.persistence.reads.Reads` plus transactions) and does not know which
backend it runs on.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from certstore.model import NodeRecord
from certstore.persistence.conn import Conn
from certstore.persistence.reads import CHAIN_COLUMNS, Reads, ts_text
from certstore.persistence.writer import Writer

NODE_COLUMNS = "name, host, pid, started_at, heartbeat_at, applied_seq"


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A table's data columns (no backend-private ones such as PostgreSQL's ``rowid``),
    in the order rows are copied: creation order, parents before children."""

    name: str
    columns: tuple[str, ...]
    order_by: str


TABLES: tuple[Table, ...] = (
    Table(name="meta", columns=("key", "value"), order_by="key"),
    Table(name="accounts", columns=("id", "name", "kind", "parent_id", "created_at"),
          order_by="rowid"),
    Table(name="domains", columns=("name", "account_id", "status", "challenge_token"),
          order_by="name"),
    Table(name="chains", columns=(*CHAIN_COLUMNS.split(", "), "sealed_key"),
          order_by="rowid"),
    Table(name="pki_settings", columns=("account_id", "signing_chain_id"),
          order_by="account_id"),
    Table(name="tls_bindings", columns=("domain", "account_id", "chain_id"), order_by="domain"),
    Table(name="trusted_cas", columns=("id", "account_id", "fingerprint", "subject", "issuer",
                                       "serial", "not_before", "not_after", "is_ca", "pem",
                                       "created_at"), order_by="rowid"),
    Table(name="authority", columns=("id", "root_pem", "root_key", "issuing_pem",
                                     "issuing_key", "created_at"), order_by="id"),
    Table(name="changes", columns=("seq", "at", "kind", "account_id", "entity_id"),
          order_by="seq"),
    Table(name="api_keys", columns=("id", "role", "account_id", "key_hash", "created_at",
                                    "revoked_at"), order_by="rowid"),
    Table(name="audit", columns=("seq", "at", "key_id", "role", "account_id", "action",
                                 "target", "result", "detail", "count"), order_by="seq"),
    Table(name="renewals", columns=("old_chain_id", "new_chain_id", "renewed_at"),
          order_by="old_chain_id"),
    Table(name="expiry_notices", columns=("chain_id", "stage", "sent_at"),
          order_by="chain_id, stage"),
    Table(name="admin_sessions", columns=("id_hash", "key_id", "created_at", "expires_at"),
          order_by="id_hash"),
)
"""The store's data (``nodes`` and ``leases`` are not data: each node writes its own row,
and a lease is held by a running process)."""
TABLE_NAMES = frozenset(t.name for t in TABLES)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """Whether the database answers, and why not."""

    connected: bool
    reason: str | None = None


CONNECTED = StoreHealth(connected=True)


class Database(Reads, abc.ABC):
    """An open certgate database (either backend)."""

    def __init__(self, conn: Conn) -> None:
        super().__init__(conn)
        self._on_commit: list[Callable[[], None]] = []

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._conn.dialect.name

    def on_commit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the feed may have grown: after each commit made
        through this object and, with PostgreSQL, on each change notification from another
        node and after each reconnection. Returns an unsubscriber."""
        self._on_commit.append(callback)
        return lambda: self._on_commit.remove(callback)

    def _signal(self) -> None:
        for callback in list(self._on_commit):
            callback()

    @property
    def health(self) -> StoreHealth:
        """The connection state (SQLite: always connected)."""
        return CONNECTED

    def file_signature(self) -> tuple[int, ...]:
        """A value that changes when another process commits, for backends that can tell
        by a ``stat`` (SQLite); constant otherwise."""
        return ()

    @property
    def watch_directory(self) -> str | None:
        """A directory whose file events announce commits (SQLite), else None."""
        return None

    @abc.abstractmethod
    def write(self, now: dt.datetime) -> AbstractAsyncContextManager[Writer]:
        """One transaction: committed when the block ends, rolled back if it raises.
        Write transactions are serialised, across processes and nodes."""

    @abc.abstractmethod
    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """A lock named ``name`` held by at most one process of the fleet (renewal runs
        once per fleet): ``async with db.exclusive("renewal") as got:``; ``got`` is False
        when another holder has it (the block should then do nothing). Never waits."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection."""

    async def table_rows(self, table: str, columns: tuple[str, ...], order_by: str
                         ) -> list[tuple[Any, ...]]:
        """Every row of one table, raw (for ``store copy`` and the tests' dumps). Blobs
        come back as bytes on both backends."""
        if table not in TABLE_NAMES:
            raise ValueError(f"not a certgate table: {table!r}")
        rows = await self._all(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order_by}")
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]

    async def record_node(self, node: NodeRecord) -> None:
        """Insert or refresh a serving node's row (heartbeat and applied change)."""
        await self._autocommit(
            f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) "
            "DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = "
            "excluded.started_at, heartbeat_at = excluded.heartbeat_at, applied_seq = "
            "excluded.applied_seq",
            (node.name, node.host, node.pid, ts_text(node.started_at),
             ts_text(node.heartbeat_at), node.applied_seq))

    async def nodes(self) -> list[NodeRecord]:
        """Every node that ever served from this store, by name."""
        rows = await self._all(f"SELECT {NODE_COLUMNS} FROM nodes ORDER BY name")
        return [NodeRecord(name=r[0], host=r[1], pid=int(r[2]),
                           started_at=dt.datetime.fromisoformat(r[3]),
                           heartbeat_at=dt.datetime.fromisoformat(r[4]),
                           applied_seq=int(r[5])) for r in rows]

    async def delete_node(self, name: str) -> None:
        """Remove one node's row (it stopped cleanly)."""
        await self._autocommit("DELETE FROM nodes WHERE name = ?", (name,))

    async def forget_nodes(self, older_than: dt.datetime) -> None:
        """Drop the rows of nodes silent since ``older_than`` (retired hosts)."""
        await self._autocommit("DELETE FROM nodes WHERE heartbeat_at < ?",
                               (ts_text(older_than),))

    @abc.abstractmethod
    async def _autocommit(self, sql: str, args: tuple[object, ...]) -> None:
        """One statement in its own transaction, outside the change feed."""

