"""Who is acting, and the audit records written on their behalf.

The admin API and the CLI call the same store operations; who calls them travels in a
context variable (set per request by the API, once by the CLI), so every mutation records
its actor in its own transaction without each operation growing an ``actor`` argument.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

# "system": the gateway's own background work (the DNS check of pending domains,
# automatic renewal and expiry notices).
Role = Literal["operator", "vendor", "customer", "cli", "system"]
ROLES = ("operator", "vendor", "customer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """The caller of a store operation: an API key (id, role, account) or the local CLI."""

    key_id: str | None
    role: Role
    account_id: str | None


CLI_ACTOR = Actor(key_id=None, role="cli", account_id=None)
SYSTEM_ACTOR = Actor(key_id=None, role="system", account_id=None)
_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("certgate_actor",
                                                                        default=None)


def current_actor() -> Actor | None:
    """The actor of the running task, if any."""
    return _current.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Run the block as ``actor`` (its mutations are audited under it)."""
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audited action. Never holds keys, passwords or tokens."""

    seq: int
    at: dt.datetime
    key_id: str | None
    role: str
    account_id: str | None
    action: str
    target: str | None
    result: str
    detail: str | None
    count: int = 1  # refusals this row stands for (rate-limited rows collapse into one)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """An admin API key's record (the secret itself is shown once, never stored)."""

    id: str
    role: Literal["operator", "vendor", "customer"]
    account_id: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def actor(self) -> Actor:
        """The actor this key authenticates."""
        return Actor(key_id=self.id, role=self.role, account_id=self.account_id)
