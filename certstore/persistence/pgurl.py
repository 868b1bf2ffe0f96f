"""Where a PostgreSQL store is: ``postgresql://USER@HOST:PORT/DBNAME``, and how its
connection errors read.

The password is never part of the URL: it comes from a password file named in the config,
or from libpq's usual sources (``PGPASSWORD``, ``~/.pgpass``), which asyncpg reads itself.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certstore.errors import StoreSetupError

SCHEMES = ("postgresql", "postgres")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True, kw_only=True)
class PgLocation:
    """A parsed, validated PostgreSQL database URL (no password)."""

    host: str
    port: int
    database: str
    user: str | None = None
    sslmode: str | None = None
    password_file: Path | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str, *, password_file: Path | None = None) -> PgLocation:
        """Parse ``url``; ValueError naming what is wrong."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise ValueError(f"not a valid PostgreSQL URL ({e}); expected "
                             "postgresql://USER@HOST:PORT/DBNAME") from None
        if parts.scheme not in SCHEMES:
            raise ValueError(f"unsupported database URL scheme {parts.scheme!r}: give a SQLite "
                             "file path or postgresql://USER@HOST:PORT/DBNAME")
        if parts.password is not None:
            raise ValueError("the database URL must not hold a password: use PGPASSWORD, "
                             "~/.pgpass or 'password_file:'")
        if not parts.hostname:
            raise ValueError("the database URL names no host: postgresql://USER@HOST:PORT/DBNAME")
        database = urllib.parse.unquote(parts.path.removeprefix("/"))
        if not database or "/" in database:
            raise ValueError("the database URL must name one database: "
                             "postgresql://USER@HOST:PORT/DBNAME")
        if parts.fragment:
            raise ValueError("the database URL must not have a #fragment")
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - {"sslmode"})
        if unknown:
            raise ValueError(f"unsupported database URL parameters: {', '.join(unknown)} "
                             "(only sslmode is understood)")
        sslmode = query.get("sslmode", [None])[-1]
        if sslmode is not None and sslmode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
        return cls(host=parts.hostname, port=port or 5432, database=database,
                   user=urllib.parse.unquote(parts.username) if parts.username else None,
                   sslmode=sslmode, password_file=password_file)

    @property
    def display(self) -> str:
        """The URL as shown in messages (never with a password)."""
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{user}{host}:{self.port}/{self.database}"

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect``/``create_pool``."""
        args: dict[str, Any] = {"host": self.host, "port": self.port,
                                "database": self.database, "user": self.user}
        if self.sslmode is not None:
            args["ssl"] = self.sslmode
        if self.password_file is not None:
            args["password"] = self._read_password()
        return args

    def _read_password(self) -> str:
        assert self.password_file is not None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except OSError as e:
            raise StoreSetupError(f"cannot read the database password file "
                                  f"{self.password_file}: {e.strerror or e}") from e
        return text.removesuffix("\n").removesuffix("\r")

    def explain(self, e: BaseException) -> str:
        """One line telling the user why the database could not be used."""
        import asyncpg  # only PostgreSQL users pay for loading it

        where = f"{self.host}:{self.port}"
        if isinstance(e, StoreSetupError):
            return e.message
        if isinstance(e, TimeoutError):
            return f"no answer from PostgreSQL at {where} (timed out); is the server running?"
        if isinstance(e, OSError):
            return (f"cannot reach PostgreSQL at {where}: {e.strerror or e}; "
                    "is the server running and listening there?")
        if isinstance(e, asyncpg.InvalidPasswordError
                      | asyncpg.InvalidAuthorizationSpecificationError):
            return (f"PostgreSQL at {where} refused user {self.user or '(default)'}: "
                    f"{e}; set the password with PGPASSWORD, ~/.pgpass or 'password_file:'")
        if isinstance(e, asyncpg.InvalidCatalogNameError):
            return (f"the database {self.database!r} does not exist on {where}; create it "
                    f"first (createdb {self.database})")
        detail = str(e).splitlines()[0] if str(e) else ""
        return f"cannot use the database {self.display}: {type(e).__name__}: {detail}"
