"""DNS names: normalisation, validation, and the two matching rules.

Names are normalised once, at the edge: lower case, IDNA A-labels, no trailing dot. Two rules
are deliberately different (see ``shared/reference/real-clients.md``):

* :func:`allowed_for_domains` is the product page's *import* rule: ``*.example.com`` may be
  imported into an account that owns ``example.com`` (RFC 6125 would not let that wildcard
  match ``example.com`` itself, but the page is explicit), while ``my.example.com`` needs
  ``my.example.com`` to be a domain of the account.
* :func:`wildcard_parent` supports the *serving* rule: standard one-label wildcard matching
  (RFC 6125 section 6.4.3), ``*.example.com`` serves ``a.example.com`` only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import idna

from certstore.errors import InvalidCertificate, InvalidName

# RFC 1035 / RFC 1123 host label: letters, digits, hyphen; not starting or ending in hyphen.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_NAME_LENGTH = 253


def _to_a_label(label: str, raw: str) -> str:
    if label.isascii():
        label = label.lower()
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as e:
                raise InvalidName(f"{raw!r} has an invalid IDNA label {label!r}: {e}",
                                  names=[raw]) from e
    else:
        try:
            label = idna.encode(label, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidName(f"{raw!r} is not a valid internationalised name: {e}",
                              names=[raw]) from e
    if not _LDH_LABEL.fullmatch(label):
        raise InvalidName(
            f"{raw!r} is not a valid DNS name: label {label!r} must be 1-63 letters, digits "
            "or hyphens, not starting or ending with a hyphen",
            names=[raw],
        )
    return label


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def normalize_name(raw: str, *, allow_wildcard: bool = False) -> str:
    """Return ``raw`` as a normalised DNS name or raise :class:`InvalidName`.

    A wildcard is accepted (when allowed) only as a whole left-most label: ``*.x.y``.
    ``f*.x.y``, ``*.*.x.y``, ``x.*.y`` and a bare ``*`` are never valid.
    """
    if not isinstance(raw, str):
        raise InvalidName(f"a DNS name must be text, not {type(raw).__name__}", names=[repr(raw)])
    text = raw.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidName("a DNS name must not be empty", names=[raw])
    if _is_ip(text):
        raise InvalidName(f"{raw!r} is an IP address, not a DNS name", names=[raw])
    labels = text.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        if not allow_wildcard:
            raise InvalidName(f"{raw!r} is a wildcard; a domain must be a plain DNS name",
                              names=[raw])
        labels = labels[1:]
    if any("*" in label for label in labels):
        raise InvalidName(
            f"{raw!r} has a partial or misplaced wildcard; only a whole left-most label "
            "'*.' is allowed",
            names=[raw],
        )
    if len(labels) < 2:
        raise InvalidName(f"{raw!r} needs at least two labels (a name under a TLD)",
                          names=[raw])
    out = ".".join(_to_a_label(label, raw) for label in labels)
    if out.rpartition(".")[2].isdigit():
        # RFC 3696 section 2: a top-level label is never all-numeric (1.2.3 is no host name).
        raise InvalidName(f"{raw!r} ends in an all-numeric label; it is not a DNS name",
                          names=[raw])
    if wildcard:
        out = "*." + out
    if len(out) > _MAX_NAME_LENGTH:
        raise InvalidName(f"{raw!r} is longer than {_MAX_NAME_LENGTH} characters", names=[raw])
    return out


def normalize_domain(raw: str) -> str:
    """Normalise an account domain: a plain DNS name, never a wildcard or an IP address."""
    return normalize_name(raw, allow_wildcard=False)


def normalize_domains(raw: Iterable[str]) -> list[str]:
    """Normalise domains, refusing with every invalid one listed; duplicates dropped."""
    out: list[str] = []
    bad: list[str] = []
    for item in raw:
        try:
            name = normalize_domain(item)
        except InvalidName:
            bad.append(str(item))
            continue
        if name not in out:
            out.append(name)
    if bad:
        raise InvalidName("not valid domains (plain DNS names, no wildcard, no IP address): "
                          + ", ".join(repr(b) for b in bad), names=bad)
    return out


def allowed_for_domains(name: str, domains: frozenset[str] | set[str]) -> bool:
    """The product page's import rule for one normalised certificate name.

    ``example.com`` needs the domain ``example.com``; ``*.example.com`` needs the domain
    ``example.com``; a subdomain needs itself to be a domain of the account.
    """
    if name.startswith("*."):
        return name[2:] in domains
    return name in domains


def offending_names(names: Iterable[str], domains: frozenset[str] | set[str]) -> list[str]:
    """Every name in ``names`` that :func:`allowed_for_domains` refuses, in order."""
    return [n for n in names if not allowed_for_domains(n, domains)]


def check_unverified(names: Iterable[str], pending: frozenset[str] | set[str]) -> None:
    """Refuse names that need a pending domain (``d`` or ``*.d`` for a pending ``d``):
    nothing is issued or imported for a domain until it is verified."""
    bad = [n for n in names if (n[2:] if n.startswith("*.") else n) in pending]
    if bad:
        raise InvalidCertificate(
            "not verified yet: " + ", ".join(bad) + "; a domain added by a customer key is "
            "pending until its vendor or an operator approves it, or its DNS challenge is "
            "verified", rule="domain-unverified", names=bad)


def bound_domains(names: Iterable[str], domains: Iterable[str]) -> set[str]:
    """The account domains a TLS binding to a chain with ``names`` can cover: ``d`` for a
    name ``d`` or ``*.d`` (the snapshot applies a binding of ``d`` to both)."""
    owned = set(domains)
    return {n[2:] if n.startswith("*.") else n for n in names} & owned


def wildcard_parent(server_name: str) -> str | None:
    """The parent a one-label wildcard would need to serve ``server_name`` (RFC 6125 6.4.3)."""
    _, dot, parent = server_name.partition(".")
    return parent if dot and "." in parent else None
