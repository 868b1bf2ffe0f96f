"""Which backend a ``database:`` setting names, and opening it."""

from __future__ import annotations

from pathlib import Path

from certstore.persistence.base import Database
from certstore.persistence.pgurl import SCHEMES, PgLocation

Location = Path | PgLocation
"""A SQLite file, or a PostgreSQL database."""


def parse_location(text: str | Path, *, password_file: Path | None = None) -> Location:
    """A path, or a ``postgresql://`` URL (ValueError naming the problem)."""
    if isinstance(text, Path):
        return text
    scheme = text.partition("://")[0].lower() if "://" in text else None
    if scheme is None:
        return Path(text)
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: give a SQLite file "
                         "path or postgresql://USER@HOST:PORT/DBNAME")
    return PgLocation.parse(text, password_file=password_file)


def describe_location(location: Location) -> str:
    """The location as shown to a person."""
    return location.display if isinstance(location, PgLocation) else str(location)


async def open_database(location: Location, *, create: bool = False) -> Database:
    """Open (``create``: create or upgrade) the database at ``location``."""
    if isinstance(location, PgLocation):
        # Imported here: a SQLite-only run never loads asyncpg.
        from certstore.persistence.postgres import PgDatabase
        return await PgDatabase.open(location, create=create)
    from certstore.persistence.sqlite import SqliteDatabase
    return await SqliteDatabase.open(location, create=create)
