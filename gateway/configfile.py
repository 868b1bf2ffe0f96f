"""Finding and reading the config file, and the store's settings without the full model.

``gateway.config`` validates the whole tree with pydantic, which costs more start-up time
than everything else a store command does (the CLI is scripted in loops). A store command
only needs where the store is: :func:`store_settings` reads those settings here, with the
same file look-up, the same YAML errors and the same rules for them (paths relative to the
config file, unknown top-level keys refused), and leaves the rest of the tree (listeners,
admin) to ``init`` and ``serve``, which validate all of it.
``tests/gateway/test_configfile.py`` checks that both readings agree.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from certstore.lifecycle import Lifetimes
    from certstore.persistence.location import Location

ENV_CONFIG = "CERTGATE_CONFIG"
DEFAULT_CONFIG = Path("certgate.yaml")
DEFAULT_DATA_DIR = Path("var")

TOP_LEVEL_KEYS = ("data_dir", "master_key_file", "database", "password_file", "node_name",
                  "token_issuer", "ca", "dns", "listeners", "admin", "context_cache_size",
                  "access_log", "store_poll_interval_s", "graceful_timeout_s", "lifecycle")
"""The settings of ``gateway.config.Config`` (a test keeps the two lists equal)."""


def find_config(explicit: str | Path | None) -> Path:
    """``--config``, else ``$CERTGATE_CONFIG``, else ``./certgate.yaml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_CONFIG


def _where(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(e: Exception) -> str:
    problem = getattr(e, "problem", None)
    context = getattr(e, "context", None)
    text = " ".join(str(p) for p in (context, problem) if p) or str(e)
    return " ".join(text.split())  # one line


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (an empty file is an empty mapping: all defaults)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"no config file at {path}; pass --config FILE, set {ENV_CONFIG}, "
                          "or copy config.example.yaml to ./certgate.yaml") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); save it "
                          "as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path}: {e.strerror or e}; check the "
                          "path and its permissions") from e
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML{_where(e)}: {_problem(e)}; fix the "
                          "syntax (each setting is 'key: value', nested ones indented)") from e
    return check_mapping(data, str(path))


def check_mapping(data: object, source: str) -> dict[str, Any]:
    """``data`` as the top-level mapping of settings, or the refusal naming ``source``."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings "
                          "('key: value' lines, as in config.example.yaml)")
    return data


def unknown_setting(key: str, name: str, known: list[str]) -> str:
    """The message for an unknown setting: a likely spelling and the settings allowed."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown setting {key!r}: {hint}remove it or fix its spelling (settings here: "
            f"{', '.join(known)})")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """Where the store is: what every store command needs from the config."""

    data_dir: Path
    master_key_path: Path
    database_location: Location
    token_issuer: str
    lifetimes: Lifetimes


def _path(data: dict[str, Any], key: str, source: str, base: Path) -> Path | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {key}: Input is not a valid path (got {value!r}); see "
                          "config.example.yaml for the allowed values", key=key)
    path = Path(value)
    return path if path.is_absolute() else base / path


def store_settings(path: Path) -> StoreSettings:
    """Read the store's settings from the config file at ``path`` (see the module doc)."""
    data = read_config_file(path)
    source = str(path)
    for name in map(str, data):
        if name not in TOP_LEVEL_KEYS:
            message = unknown_setting(name, name, list(TOP_LEVEL_KEYS))
            raise ConfigError(f"{source}: {message}", key=name)
    base = path.resolve().parent
    data_dir = _path(data, "data_dir", source, base) or base / DEFAULT_DATA_DIR
    issuer = data.get("token_issuer", "certgate")
    if not isinstance(issuer, str):
        raise ConfigError(f"{source}: token_issuer: Input should be a valid string (got "
                          f"{issuer!r}); see config.example.yaml for the allowed values",
                          key="token_issuer")
    return StoreSettings(
        data_dir=data_dir,
        master_key_path=_path(data, "master_key_file", source, base) or data_dir / "master.key",
        database_location=_database(data, source, base, data_dir),
        token_issuer=issuer, lifetimes=_lifetimes(data.get("lifecycle"), source))


def _database(data: dict[str, Any], source: str, base: Path, data_dir: Path) -> Location:
    """``database:`` (a SQLite path, relative to the config file, or a PostgreSQL URL with
    ``password_file:``), by the same rules as ``gateway.config.Config.database_location``."""
    from certstore.persistence.location import parse_location

    value = data.get("database")
    if value is None:
        return data_dir / "certgate.sqlite"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: database: Input is not a valid path or "
                          "postgresql://USER@HOST:PORT/DBNAME URL; see config.example.yaml",
                          key="database")
    password_file = _path(data, "password_file", source, base)
    try:
        location = parse_location(value, password_file=password_file)
    except ValueError as e:
        raise ConfigError(f"{source}: database: {e}", key="database") from None
    if isinstance(location, Path) and not location.is_absolute():
        return base / location
    return location


_LIFETIME_KEYS = ("tls_validity", "signing_validity", "renew_fraction", "expiring_within")
_LIFECYCLE_KEYS = (*_LIFETIME_KEYS, "check_interval", "webhook_url", "webhook_timeout_s")


def _lifetimes(section: object, source: str) -> Lifetimes:
    """The ``lifecycle:`` settings a store command uses (lifetimes of generated chains and the
    expiry threshold), checked by the same rules as ``gateway.config.LifecycleConfig``."""
    from certstore.errors import InvalidInput
    from certstore.lifecycle import Lifetimes, parse_duration

    if section is None:
        return Lifetimes()
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: lifecycle: Input should be a mapping of settings",
                          key="lifecycle")
    for name in map(str, section):
        if name not in _LIFECYCLE_KEYS:
            message = unknown_setting(f"lifecycle.{name}", name, list(_LIFECYCLE_KEYS))
            raise ConfigError(f"{source}: {message}", key=f"lifecycle.{name}")
    values: dict[str, Any] = {}
    for name in _LIFETIME_KEYS:
        if name not in section:
            continue
        value = section[name]
        try:
            if name == "renew_fraction":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InvalidInput(f"renew_fraction must be a number, got {value!r}")
                values[name] = float(value)
            else:
                values[name] = parse_duration(value)
        except InvalidInput as e:
            raise ConfigError(f"{source}: lifecycle.{name}: {e.message}",
                              key=f"lifecycle.{name}") from None
    try:
        return Lifetimes(**values)
    except InvalidInput as e:
        raise ConfigError(f"{source}: lifecycle: {e.message}", key="lifecycle") from None
