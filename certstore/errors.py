"""The certstore error hierarchy.

Every error a caller can provoke derives from :class:`CertStoreError`; leaves also inherit
the matching built-in (``ValueError``, ``LookupError``...) so generic handlers still work.
Each class carries a stable ``code`` (used by the CLI and the admin API as the problem type),
an ``http_status`` for the API, and the data a caller needs (offending names, the rule).
Messages say what is wrong *and* what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class CertStoreError(Exception):
    """Root of every error raised by :mod:`certstore`."""

    code: ClassVar[str] = "certstore-error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Structured fields for machine-readable output (problem+json, ``--json``)."""
        return {}

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross a process boundary (the admin API's crypto worker pool). Exception
        # pickling calls ``cls(*args)``, which keyword-only fields (``rule``, ``names``...)
        # break; rebuild from the message and the instance's fields instead.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[CertStoreError], message: str,
             state: dict[str, object]) -> CertStoreError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidInput(CertStoreError, ValueError):
    """A value given by the caller is malformed (a name, a kind, a size...)."""

    code = "invalid-input"
    http_status = 422


class InvalidName(InvalidInput):
    """One or more DNS names are not valid; ``names`` lists every offending one."""

    code = "invalid-name"

    def __init__(self, message: str, *, names: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.names = tuple(names)

    def details(self) -> dict[str, object]:
        return {"names": list(self.names)}


class InvalidCertificate(InvalidInput):
    """A certificate, key or PKCS#12 file is refused.

    ``rule`` names the rule that was broken (stable, e.g. ``"names-not-owned"``), ``names``
    lists offending DNS names where the rule is about names.
    """

    code = "invalid-certificate"

    def __init__(self, message: str, *, rule: str, names: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.rule = rule
        self.names = tuple(names)

    def details(self) -> dict[str, object]:
        out: dict[str, object] = {"rule": self.rule}
        if self.names:
            out["names"] = list(self.names)
        return out


class NotFound(CertStoreError, LookupError):
    """The named record does not exist (or is not visible to the caller)."""

    code = "not-found"
    http_status = 404

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"no {kind} with id {ident!r}")
        self.kind = kind
        self.ident = ident

    def details(self) -> dict[str, object]:
        return {"kind": self.kind, "id": self.ident}


class Conflict(CertStoreError):
    """The operation contradicts the store's current state."""

    code = "conflict"
    http_status = 409


OWNED_RULE = "domain-owned-by-another-account"


class DomainTaken(Conflict):
    """A domain already belongs to an account; it can belong to only one (SNI routes on it).

    ``rule`` is ``domain-owned-by-another-account`` when another account holds it (the
    same rule as :class:`DomainOwned`), absent when the account itself already has it.
    """

    code = "domain-taken"

    def __init__(self, domain: str, *, other_account: bool = True) -> None:
        where = "an account" if other_account else "this account"
        super().__init__(
            f"domain {domain!r} already belongs to {where}; a domain can belong to one "
            "account only (remove it there first)"
        )
        self.domain = domain
        self.other_account = other_account

    def details(self) -> dict[str, object]:
        out: dict[str, object] = {"names": [self.domain]}
        if self.other_account:
            out["rule"] = OWNED_RULE
        return out


class DomainOwned(Conflict):
    """A domain is under or above a domain of another account, and the caller does not
    administer that account (a tenant cannot take a name that belongs to another)."""

    code = OWNED_RULE

    def __init__(self, domain: str) -> None:
        super().__init__(
            f"domain {domain!r} is under or above a domain that belongs to another account; "
            "only that account's administrators (its vendor, or an operator) can give it "
            "to an account"
        )
        self.domain = domain

    def details(self) -> dict[str, object]:
        return {"rule": OWNED_RULE, "names": [self.domain]}


class DomainUnverified(Conflict):
    """A pending domain was not verified: its DNS challenge was not found (or is wrong)."""

    code = "domain-unverified"

    def __init__(self, domain: str, message: str) -> None:
        super().__init__(message)
        self.domain = domain

    def details(self) -> dict[str, object]:
        return {"rule": "domain-unverified", "names": [self.domain]}


class ChallengeLookupFailed(CertStoreError):
    """The resolver gave no answer for a DNS challenge (timeout, server failure): the
    domain stays pending; try again later or check the ``dns.resolvers`` setting."""

    code = "dns-lookup-failed"
    http_status = 503


class Forbidden(CertStoreError, PermissionError):
    """The caller's role may not do this (a customer key approving its own domain)."""

    code = "forbidden"
    http_status = 403


class NoSigningChain(Conflict):
    """A token was requested but the account has no signing chain chosen."""

    code = "no-signing-chain"

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"account {account_id} has no signing chain chosen in its PKI settings; generate "
            "one (chain generate --purpose signing) or choose one (pki set-signing)"
        )
        self.account_id = account_id


class PreconditionFailed(CertStoreError):
    """A conditional update found the record changed since the caller read it."""

    code = "precondition-failed"
    http_status = 412


class StoreSetupError(CertStoreError):
    """The store cannot be opened: not initialised, master key missing or wrong, bad schema."""

    code = "store-setup"
    http_status = 500


class StoreUnavailable(CertStoreError):
    """The database cannot be reached right now (a PostgreSQL outage): retry later.

    Nothing was changed. The gateway keeps serving TLS from its last snapshot meanwhile.
    """

    code = "store-unavailable"
    http_status = 503
    retry_after_s: ClassVar[int] = 2
    """What ``Retry-After`` tells a client (the node reconnects with a bounded backoff)."""
