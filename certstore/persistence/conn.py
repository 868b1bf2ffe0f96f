"""What the shared queries need from a database connection, whichever the backend.

Queries are written once, with ``?`` placeholders and SQL both SQLite and PostgreSQL
understand; a backend's :class:`Conn` adapts the placeholders, translates its driver's
errors at the boundary (``raise ... from e``) and supplies the few fragments that differ
(:attr:`Conn.dialect`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

Row = Sequence[Any]


class IntegrityViolation(Exception):
    """A uniqueness or foreign-key rule refused a statement (internal to persistence: the
    writer turns it into the store error a caller understands)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """The SQL fragments that differ between backends."""

    name: str
    json_domains_agg: str
    """An aggregate over a domain's ``name``, ``status`` and ``challenge_token`` giving a
    JSON array of ``[name, status, token]`` as text (``[]`` for no rows)."""

    def in_list(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: a condition and its arguments."""
        if self.name == "postgresql":
            # One statement text whatever the count: PostgreSQL prepares and caches it.
            return f"{column} = ANY(?::text[])", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)


SQLITE = Dialect(name="sqlite", json_domains_agg="json_group_array(json_array(name, status, "
                                                  "challenge_token))")
POSTGRESQL = Dialect(name="postgresql",
                     json_domains_agg="COALESCE(json_agg(json_build_array(name, status, "
                                      "challenge_token) ORDER BY name), '[]'::json)")


class Conn(Protocol):
    """A connection (or a transaction on one) that runs the shared queries."""

    dialect: Dialect

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Rows of a query."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""

    async def notify(self, seq: int) -> None:
        """Tell the fleet about change ``seq`` (delivered when the transaction commits)."""


_CHANGES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "certgate_changes", default=None)


@contextmanager
def tracking_changes() -> Iterator[list[int]]:
    """Collect the sequence numbers of the changes committed inside the block (by this
    task): the admin API answers a mutation with its ``change_id``, the CLI waits for it."""
    found: list[int] = []
    token = _CHANGES.set(found)
    try:
        yield found
    finally:
        _CHANGES.reset(token)


def record_committed(seqs: Sequence[int]) -> None:
    """Called by a backend after a commit with the change numbers the transaction made."""
    found = _CHANGES.get()
    if found is not None:
        found.extend(seqs)
