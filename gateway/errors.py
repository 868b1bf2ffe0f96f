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


class Unavailable(GatewayError):
    """A request the gateway cannot take now (429: a limit is reached; 503: a worker was
    lost); the client may retry after ``retry_after_s`` seconds. ``code`` is the problem
    type the admin API answers with."""

    def __init__(self, message: str, *, code: str, http_status: int,
                 retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after_s = retry_after_s
