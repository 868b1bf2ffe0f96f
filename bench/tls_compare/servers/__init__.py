"""Compared servers. Add a column by adding a :class:`Server` subclass to :data:`REGISTRY`."""

from __future__ import annotations

import importlib

from .base import ChainChange, Server, ServerError, Upstream
from .certgate import CertgateServer
from .haproxy import HaproxyServer
from .nginx import NginxServer

REGISTRY: dict[str, type[Server]] = {
    NginxServer.name: NginxServer,
    HaproxyServer.name: HaproxyServer,
    CertgateServer.name: CertgateServer,
}


def load_server_class(spec: str) -> type[Server]:
    """Import ``module:Class`` (a :class:`Server` subclass) and register it under its name."""
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise ValueError(f"--server-class {spec!r}: want module:Class")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Server)):
        raise TypeError(f"{spec} is not a tls_compare.servers.Server subclass")
    REGISTRY[cls.name] = cls
    return cls


__all__ = ["REGISTRY", "ChainChange", "Server", "ServerError", "Upstream", "load_server_class"]
