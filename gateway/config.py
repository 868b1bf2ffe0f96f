"""certgate's configuration: one typed tree, validated when loaded.

Looked up in ``--config FILE``, else ``$CERTGATE_CONFIG``, else ``./certgate.yaml``. Relative
paths are resolved against the directory of the config file, so a config works from any
working directory. Every field has a default and is documented in ``config.example.yaml``.

A bad file is refused with one line naming the file, the setting and the fix (the CLI prints
it as ``error: ...``): admins read it in a terminal or a journal, where a list of validation
errors or a YAML parser's multi-line report is noise.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from certstore.errors import InvalidInput
from certstore.lifecycle import Lifetimes, parse_duration
from certstore.persistence.location import Location, parse_location
from certstore.persistence.pgurl import PgLocation
from gateway.configfile import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    ENV_CONFIG,
    check_mapping,
    find_config,
    read_config_file,
    unknown_setting,
)
from gateway.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "ENV_CONFIG", "Config", "ConfigError", "find_config",
           "load_config", "parse_config"]



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


def parse_resolver(value: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or a bare IP for port 53) of a resolver."""
    host, sep, port = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):  # a bare IPv6 address
        host, port = value, "53"
    host = host.strip("[]")
    ipaddress.ip_address(host)  # ValueError names the problem
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a resolver's port must be 1-65535, got {port!r}")
    return host, int(port)


Bind = Annotated[str, Field(description="host:port")]


class TlsPolicy(_Model):
    """Per-listener TLS policy (defaults: Mozilla 'intermediate'); OpenSSL checks every
    setting when the config is loaded, so a typo fails at load with the setting named."""

    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str | None = None  # TLS 1.2 cipher string; None = Mozilla intermediate
    ciphersuites: str | None = None  # TLS 1.3 suites; None = Mozilla intermediate (all 3)
    groups: tuple[str, ...] | None = None  # None = X25519, prime256v1, secp384r1
    alpn: tuple[str, ...] | None = None  # None = http/1.1 for http kinds, none for tcp

    def model_post_init(self, context: object, /) -> None:
        from gateway.tls.policy import PolicyError, ServerPolicy, check

        kw: dict[str, object] = {"min_version": self.min_version}
        for name in ("ciphers", "ciphersuites", "groups"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        try:
            check(ServerPolicy(**kw))  # type: ignore[arg-type]
        except PolicyError as e:
            raise ValueError(str(e)) from None


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
    # HTTP/1.1 Upgrade protocols tunnelled to the upstream after its 101 (https/ipps).
    upgrade_protocols: tuple[str, ...] = ("websocket",)
    tunnel_idle_timeout_s: float = Field(default=600.0, gt=0)
    # ipps: the most of an IPP response's attributes held to rewrite its URIs (see README).
    ipp_max_attributes_bytes: int = Field(default=1 << 20, ge=1024)

    _bind = field_validator("bind")(classmethod(lambda cls, v: _check_bind(v)))

    @field_validator("upgrade_protocols")
    @classmethod
    def _upgrade_protocols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(p.strip().lower() for p in v)
        for name in names:
            if not name or not name.isascii() or any(c in name for c in ", \t/"):
                raise ValueError(f"upgrade_protocols: {name!r} is not a protocol name")
            if name == "h2c":
                raise ValueError("upgrade_protocols: h2c cannot be tunnelled (its requests "
                                 "would bypass the gateway's per-request checks)")
        return names

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
        if self.kind == "ipps" and self.tls.min_version == "1.3":
            # See gateway.listener.server_policy: ipps stops at TLS 1.2.
            raise ValueError("an ipps listener serves TLS 1.2 only (libcups redials forever "
                             "on TLS 1.3 session tickets): tls.min_version must be \"1.2\"")


class AdminConfig(_Model):
    """The admin API listener."""

    bind: Bind = "127.0.0.1:9443"
    max_upload_bytes: int = Field(default=1024 * 1024, gt=0)
    # The admin page's sign-in session (absolute lifetime; sign-out ends it sooner).
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    crypto_workers: int = Field(default=4, ge=0, le=256)  # 0: in a thread (comparison only)
    crypto_queue: int = Field(default=16, gt=0)
    # CPU seconds one crypto job may use before its worker is killed (gateway.admin.workers).
    crypto_job_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # Workers at SCHED_IDLE: handshakes always win a core. False: the gateway's own
    # priority, for a host whose cores are never idle (SCHED_IDLE work waits for minutes).
    crypto_lowest_priority: bool = True
    max_mutations_per_key: int = Field(default=2, gt=0)
    max_mutations_per_account: int = Field(default=2, gt=0)

    _bind = field_validator("bind")(classmethod(lambda cls, v: _check_bind(v)))


class CaConfig(_Model):
    """The built-in CA, created by ``certgate init``."""

    key_type: Literal["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"] = "rsa-3072"


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except InvalidInput as e:
        raise ValueError(e.message) from None
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class LifecycleConfig(_Model):
    """Lifetimes of generated chains, automatic renewal, and expiry notices."""

    tls_validity: Duration = "90d"
    signing_validity: Duration = "365d"
    renew_fraction: float = 0.33
    check_interval: Duration = "1m"
    expiring_within: Duration = "30d"
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"webhook_url must be an http:// or https:// URL, got {v!r}")
        return v

    def model_post_init(self, context: object, /) -> None:
        try:
            self.lifetimes()
        except InvalidInput as e:
            raise ValueError(e.message) from None

    def lifetimes(self) -> Lifetimes:
        """The store's view of these settings."""
        return Lifetimes(tls_validity=parse_duration(self.tls_validity),
                         signing_validity=parse_duration(self.signing_validity),
                         renew_fraction=self.renew_fraction,
                         expiring_within=parse_duration(self.expiring_within))

    @property
    def check_interval_s(self) -> float:
        """Seconds between two looks of the running gateway."""
        return parse_duration(self.check_interval).total_seconds()


class DnsConfig(_Model):
    """How DNS challenges of pending domains are checked."""

    # host:port of the resolvers to ask; empty: the system's (/etc/resolv.conf).
    resolvers: tuple[str, ...] = ()
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Pending domains are checked this often by each gateway process; 0: only on request.
    check_interval_s: float = Field(default=300.0, ge=0)

    @field_validator("resolvers")
    @classmethod
    def _resolvers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                parse_resolver(item)
            except ValueError as e:
                raise ValueError(f"a resolver is host:port with an IP address, got {item!r}: "
                                 f"{e}") from None
        return v


class Config(_Model):
    """The whole configuration."""

    data_dir: Path = DEFAULT_DATA_DIR  # beside the config file (relative paths are)
    master_key_file: Path | None = None
    database: str | None = None
    password_file: Path | None = None
    node_name: str | None = Field(default=None, min_length=1, max_length=128,
                                  pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    token_issuer: str = "certgate"
    ca: CaConfig = CaConfig()
    dns: DnsConfig = DnsConfig()
    listeners: tuple[ListenerConfig, ...] = ()
    admin: AdminConfig | None = None
    context_cache_size: int = Field(default=16384, gt=0)
    access_log: bool = True
    store_poll_interval_s: float = Field(default=0.02, gt=0, le=10)
    graceful_timeout_s: float = Field(default=30.0, gt=0)
    lifecycle: LifecycleConfig = LifecycleConfig()

    @property
    def master_key_path(self) -> Path:
        """Where the master key lives (default: ``<data_dir>/master.key``)."""
        return self.master_key_file or self.data_dir / "master.key"

    _database = field_validator("database")(classmethod(lambda cls, v: _check_database(v)))

    @property
    def database_location(self) -> Location:
        """The store: a SQLite file (default ``<data_dir>/certgate.sqlite``) or a
        PostgreSQL database (``postgresql://USER@HOST:PORT/DBNAME``)."""
        if self.database is None:
            return self.data_dir / "certgate.sqlite"
        return parse_location(self.database, password_file=self.password_file)

    @property
    def fleet_node_name(self) -> str:
        """This node's name in the fleet (default: the host name)."""
        return self.node_name or socket.gethostname()

    def model_post_init(self, context: object, /) -> None:
        names = [listener.name for listener in self.listeners]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"listener names must be unique: {', '.join(dupes)}")


def _check_database(value: str | None) -> str | None:
    if value is not None:
        if not value.strip():
            raise ValueError("give a SQLite file path or postgresql://USER@HOST:PORT/DBNAME")
        parse_location(value)  # a bad URL is a config error, reported at load
    return value


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The settings allowed beside the one at ``loc`` (for an unknown key's message)."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = getattr(field, "annotation", None) if field else None
        candidates = [a for a in (inner, *getattr(inner, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)


_SECRET_SETTINGS = {("database",), ("password_file",)}


def _describe(err: Mapping[str, Any]) -> str:
    """One validation error as ``key: what is wrong; the fix``."""
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return unknown_setting(key, str(loc[-1]), _fields_at(loc))
    msg = str(err["msg"]).removeprefix("Value error, ")
    # The value is echoed to help, except where it may hold a secret (a database URL's
    # password, refused but still in the input).
    given = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(
        err.get("input"), dict | list) and loc[:1] not in _SECRET_SETTINGS else ""
    return f"{key}: {msg}{given}; see config.example.yaml for the allowed values"


def _format(e: ValidationError) -> str:
    errors = e.errors()
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _describe(errors[0]) + more


def parse_config(data: object, *, base_dir: Path, source: str = "config") -> Config:
    """Validate a parsed YAML document; relative paths are taken from ``base_dir``."""
    data = check_mapping(data, source)  # an empty document: every setting has a default
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]["loc"]
        raise ConfigError(f"{source}: {_format(e)}",
                          key=".".join(str(p) for p in first)) from e

    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base_dir / p)

    return config.model_copy(update={
        "data_dir": resolve(config.data_dir),
        "master_key_file": resolve(config.master_key_file),
        "database": _resolve_database(config.database, base_dir),
        "password_file": resolve(config.password_file),
    })


def _resolve_database(value: str | None, base_dir: Path) -> str | None:
    if value is None or isinstance(parse_location(value), PgLocation):
        return value
    path = Path(value)
    return str(path if path.is_absolute() else base_dir / path)


def load_config(path: Path) -> Config:
    """Read and validate a YAML config file."""
    return parse_config(read_config_file(path), base_dir=path.resolve().parent,
                        source=str(path))
