"""The running gateway with its admin API (for the CLI-versus-API shape tests)."""

from tests.gateway.admin.conftest import admin

__all__ = ["admin"]
