"""Errors raised by the proxy package.

`ProxyError` is the package's root, a child of the gateway's `GatewayError`
(architecture convention 3); leaves also inherit the matching built-in so callers can
catch `ValueError` for bad configuration.
"""

from __future__ import annotations

from gateway.errors import GatewayError


class ProxyError(GatewayError):
    """Root of every error the proxy package raises."""


class ProxyConfigError(ProxyError, ValueError):
    """A proxy setting is invalid; `field` names the offending setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidUpstream(ProxyConfigError):
    """An upstream URL cannot be used; `url` is the value that was given."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__("upstream", f"{message} (got {url!r}; expected http://host:port[/base])")
        self.url = url
