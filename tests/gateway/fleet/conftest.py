"""Fleet tests: real ``certgate serve`` processes on a real PostgreSQL."""

from tests.support.postgres import pg_server  # noqa: F401
