"""The gateway error hierarchy: every error the gateway raises for a user derives from
:class:`GatewayError`, with a message that says what to fix."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of the gateway's errors."""


class ConfigError(GatewayError, ValueError):
    """The configuration file is missing or invalid; ``key`` names the offending setting."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
