"""certgate's configuration: one typed tree, validated when loaded.

Looked up in ``--config FILE``, else ``$CERTGATE_CONFIG``, else ``./certgate.yaml``. Relative
paths are resolved against the directory of the config file, so a config works from any
working directory. Every field is documented in ``config.example.yaml``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import ConfigError

ENV_CONFIG = "CERTGATE_CONFIG"
DEFAULT_CONFIG = Path("certgate.yaml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bind must be 'host:port' with a port 0-65535 (0: any free port), "
                         f"got {value!r}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host != "localhost":
            raise ValueError(f"bind host must be an IP address or localhost, got {host!r}"
                             ) from None
    return value


Bind = Annotated[str, Field(description="host:port")]


class TlsPolicy(_Model):
    """Per-listener TLS policy (defaults: Mozilla 'intermediate')."""

    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str | None = None  # TLS 1.2 cipher string; None = Mozilla intermediate
    alpn: tuple[str, ...] | None = None  # None = http/1.1 for http kinds, none for tcp


class RouteConfig(_Model):
    """A path prefix forwarded to an upstream URL."""

    prefix: str = "/"
    upstream: str
    upstream_host: bool = False

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"a route prefix must start with '/', got {v!r}")
        return v

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "ipp") or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port[/path] or ipp://host:port"
                             f"[/path], got {v!r}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return v


class ListenerConfig(_Model):
    """One TLS listener."""

    name: str
    kind: Literal["https", "ipps", "tcp"]
    bind: Bind
    upstream: str | None = None
    routes: tuple[RouteConfig, ...] = ()
    tls: TlsPolicy = TlsPolicy()
    strict_sni: bool = False
    default_chain: str | None = None
    handshake_timeout_s: float = Field(default=10.0, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_response_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=10_000, gt=0)

    _bind = field_validator("bind")(classmethod(lambda cls, v: _check_bind(v)))

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str | None) -> str | None:
        return v  # checked in model_post_init, where the kind is known

    def model_post_init(self, context: object, /) -> None:
        if self.kind == "tcp":
            if self.upstream is None or self.routes:
                raise ValueError("a tcp listener needs 'upstream: host:port' and no routes")
            _check_bind(self.upstream)
        elif self.upstream is None and not self.routes:
            raise ValueError(f"an {self.kind} listener needs 'upstream' or 'routes'")
        elif self.upstream is not None and self.routes:
            raise ValueError("give either 'upstream' or 'routes', not both")
        elif self.upstream is not None:
            RouteConfig(upstream=self.upstream)


class AdminConfig(_Model):
    """The admin API listener."""

    bind: Bind = "127.0.0.1:9443"
    max_upload_bytes: int = Field(default=1024 * 1024, gt=0)
    crypto_workers: int = Field(default=4, ge=0, le=256)  # 0: in a thread (comparison only)
    crypto_queue: int = Field(default=16, gt=0)
    max_mutations_per_key: int = Field(default=2, gt=0)
    max_mutations_per_account: int = Field(default=2, gt=0)

    _bind = field_validator("bind")(classmethod(lambda cls, v: _check_bind(v)))


class CaConfig(_Model):
    """The built-in CA, created by ``certgate init``."""

    key_type: Literal["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"] = "rsa-3072"


class Config(_Model):
    """The whole configuration."""

    data_dir: Path
    master_key_file: Path | None = None
    database: Path | None = None
    token_issuer: str = "certgate"
    ca: CaConfig = CaConfig()
    listeners: tuple[ListenerConfig, ...] = ()
    admin: AdminConfig | None = None
    context_cache_size: int = Field(default=16384, gt=0)
    access_log: bool = True
    store_poll_interval_s: float = Field(default=0.02, gt=0, le=10)
    graceful_timeout_s: float = Field(default=30.0, gt=0)

    @property
    def master_key_path(self) -> Path:
        """Where the master key lives (default: ``<data_dir>/master.key``)."""
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def database_path(self) -> Path:
        """The SQLite database (default: ``<data_dir>/certgate.sqlite``)."""
        return self.database or self.data_dir / "certgate.sqlite"

    def model_post_init(self, context: object, /) -> None:
        names = [listener.name for listener in self.listeners]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"listener names must be unique: {', '.join(dupes)}")


def find_config(explicit: str | Path | None) -> Path:
    """``--config``, else ``$CERTGATE_CONFIG``, else ``./certgate.yaml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_CONFIG


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: object, *, base_dir: Path, source: str = "config") -> Config:
    """Validate a parsed YAML document; relative paths are taken from ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]["loc"]
        raise ConfigError(f"{source} is invalid:\n{_format(e)}",
                          key=".".join(str(p) for p in first)) from e

    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base_dir / p)

    return config.model_copy(update={
        "data_dir": resolve(config.data_dir),
        "master_key_file": resolve(config.master_key_file),
        "database": resolve(config.database),
    })


def load_config(path: Path) -> Config:
    """Read and validate a YAML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"no config file at {path}; pass --config FILE, set {ENV_CONFIG}, "
                          "or copy config.example.yaml to ./certgate.yaml") from e
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    return parse_config(data, base_dir=path.resolve().parent, source=str(path))
