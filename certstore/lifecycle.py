"""Certificate lifetimes: status, renewal points and expiry notices.

Pure functions of a chain's validity period and the current time; the store and the
gateway's lifecycle task call them, nothing here does I/O.

* A chain's **status** is ``not_yet_valid``, ``expired``, ``expiring`` (less than
  ``expiring_within`` left) or ``valid``.
* A **generated** chain is due for renewal once less than ``renew_fraction`` of its lifetime
  remains (Caddy renews at a third left; the default here is the same). Imported chains are
  never renewed by certgate: their owner gets notices instead.
* A **notice** is sent once per stage: when a chain enters ``expiring``, again at
  ``7d`` left, and at ``expired``. A chain first seen at a later stage gets that stage's
  notice only (the earlier ones would say less than the latest).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal, Protocol

from certstore.errors import InvalidInput

Status = Literal["valid", "expiring", "expired", "not_yet_valid"]
STATUSES: tuple[Status, ...] = ("valid", "expiring", "expired", "not_yet_valid")
Stage = Literal["expiring", "7d", "expired"]
STAGES: tuple[Stage, ...] = ("expiring", "7d", "expired")
LAST_WEEK = dt.timedelta(days=7)
# Defaults of `lifecycle.tls_validity` / `signing_validity`: short lifetimes are safe because
# the gateway renews generated chains itself (public CAs are heading for 47 days).
TLS_VALIDITY = dt.timedelta(days=90)
SIGNING_VALIDITY = dt.timedelta(days=365)
# CA/Browser Forum baseline requirements cap a TLS leaf at 398 days (397 by convention).
MAX_TLS_VALIDITY = dt.timedelta(days=397)
MAX_VALIDITY = dt.timedelta(days=10 * 365)  # never past the issuing CA's own lifetime
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"([0-9]{1,9})([dhms])")  # ASCII digits: \d takes any Unicode digit


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``10m`` or ``30s`` as a timedelta (a positive whole number and
    one unit); anything else is :class:`InvalidInput` naming the accepted forms."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(f"a duration is a positive whole number and a unit (d, h, m or s), "
                           f"such as 90d, 12h, 10m or 30s; got {text!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def format_duration(value: dt.timedelta) -> str:
    """The largest whole unit that writes ``value`` exactly (``parse_duration``'s inverse)."""
    seconds = int(value.total_seconds())
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: seconds divide by 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifetimes:
    """How long generated chains live, when they renew, and when a chain is "expiring"."""

    tls_validity: dt.timedelta = TLS_VALIDITY
    signing_validity: dt.timedelta = SIGNING_VALIDITY
    renew_fraction: float = 0.33
    expiring_within: dt.timedelta = dt.timedelta(days=30)

    def __post_init__(self) -> None:
        if not dt.timedelta(seconds=1) <= self.tls_validity <= MAX_TLS_VALIDITY:
            raise InvalidInput(f"tls_validity must be between 1s and 397d (the CA/Browser "
                               f"Forum's cap), got {format_duration(self.tls_validity)}")
        if not dt.timedelta(seconds=1) <= self.signing_validity <= MAX_VALIDITY:
            raise InvalidInput("signing_validity must be between 1s and 3650d, got "
                               f"{format_duration(self.signing_validity)}")
        if not 0 < self.renew_fraction < 1:
            raise InvalidInput(f"renew_fraction must be between 0 and 1 (the share of the "
                               f"lifetime left when renewal starts), got {self.renew_fraction}")
        if self.expiring_within <= dt.timedelta(0):
            raise InvalidInput("expiring_within must be positive")

    def validity(self, purpose: str) -> dt.timedelta:
        """The lifetime of a generated chain of ``purpose``."""
        return self.tls_validity if purpose == "tls" else self.signing_validity


class Dated(Protocol):
    """What the lifecycle needs of a chain (a :class:`~certstore.model.Chain`, or the slim
    :class:`ChainDates` row that the lifecycle task reads for every chain)."""

    @property
    def origin(self) -> str: ...
    @property
    def not_before(self) -> dt.datetime: ...
    @property
    def not_after(self) -> dt.datetime: ...
    @property
    def created_at(self) -> dt.datetime: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainDates:
    """A chain's id, owner, origin and validity period: all a lifecycle check reads."""

    id: str
    account_id: str
    origin: str
    not_before: dt.datetime
    not_after: dt.datetime
    created_at: dt.datetime


def expires_in_s(chain: Dated, now: dt.datetime) -> int:
    """Whole seconds until the leaf expires (negative once it has)."""
    return int((chain.not_after - now).total_seconds())


def status(chain: Dated, now: dt.datetime, expiring_within: dt.timedelta) -> Status:
    """Where the chain stands in its validity period."""
    if now < chain.not_before:
        return "not_yet_valid"
    if now > chain.not_after:
        return "expired"
    if chain.not_after - now < expiring_within:
        return "expiring"
    return "valid"


def renewal_due(chain: Dated, now: dt.datetime, renew_fraction: float) -> bool:
    """True for a generated chain with less than ``renew_fraction`` of its lifetime left.

    The lifetime counts from issuance (the record's creation), not from ``not_before``: the
    built-in CA backdates ``not_before`` by minutes for clients with lagging clocks, which
    would otherwise bring short lifetimes' renewal points far forward.
    """
    if chain.origin != "generated":
        return False
    lifetime = chain.not_after - max(chain.not_before, chain.created_at)
    return chain.not_after - now < lifetime * renew_fraction


def notice_stage(chain: Dated, now: dt.datetime, expiring_within: dt.timedelta
                 ) -> Stage | None:
    """The latest notice stage the chain has reached, or None while it is far from expiry."""
    left = chain.not_after - now
    if left < dt.timedelta(0):
        return "expired"
    if left < LAST_WEEK:
        return "7d"
    if left < expiring_within:
        return "expiring"
    return None


def stages_through(stage: Stage) -> tuple[Stage, ...]:
    """``stage`` and the stages before it (all settled by one notice of ``stage``)."""
    return STAGES[: STAGES.index(stage) + 1]
