"""Copying a whole store to another (empty) database: ``certgate store copy``.

Rows move as they are: ids, change sequence numbers and sealed keys unchanged (a sealed key
names its record's id in its associated data, so the same master key opens it in the new
database and nowhere else). One transaction on the target: a failed copy leaves it empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from certstore.errors import Conflict
from certstore.persistence.base import TABLES, Database

BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyReport:
    """How many rows each table received."""

    rows: dict[str, int]


async def copy_store(source: Database, target: Database, now: dt.datetime) -> CopyReport:
    """Copy every table of ``source`` into ``target``, which must hold no store yet."""
    if await target.meta("key_check") is not None or await target.last_seq() != 0:
        raise Conflict("the target database already holds a certgate store; copy only into "
                       "an empty database")
    counts: dict[str, int] = {}
    async with target.write(now) as w:
        for table in TABLES:
            rows = await source.table_rows(table.name, table.columns, table.order_by)
            for start in range(0, len(rows), BATCH):
                await w.insert_rows(table.name, table.columns, rows[start:start + BATCH])
            counts[table.name] = len(rows)
        if target.backend == "postgresql":
            # Identity columns were given explicit values: continue after the copied ones.
            for name, column in (("changes", "seq"), ("audit", "seq")):
                await w.execute_raw(
                    f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), "
                    f"GREATEST((SELECT MAX({column}) FROM {name}), 1), "
                    f"(SELECT MAX({column}) FROM {name}) IS NOT NULL)")
    return CopyReport(rows=counts)
