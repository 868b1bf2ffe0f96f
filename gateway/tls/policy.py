"""A listener's TLS policy applied to pyOpenSSL contexts: versions, suites, groups, ALPN.

OpenSSL takes the cipher list, the TLS 1.3 suites, the groups and the ALPN callback from the
context the SNI callback switches to (``SSL_set_SSL_CTX``), so every context that serves a
listener's connections carries the whole policy: the listener's base context and each chain
context alike (:func:`apply`). Defaults are Mozilla's "intermediate" profile (v5.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL

# Mozilla "intermediate": TLS 1.2 suites (AEAD with forward secrecy only) ...
MOZILLA_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])
# ... TLS 1.3 suites ...
MOZILLA_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
# ... and groups (OpenSSL calls them curves in older names).
MOZILLA_GROUPS = ("X25519", "prime256v1", "secp384r1")

_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


class PolicyError(ValueError):
    """A policy setting OpenSSL does not accept; the message names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPolicy:
    """Everything a server context of one listener must enforce (hashable: a cache key)."""

    min_version: str = "1.2"
    max_version: str = "1.3"
    ciphers: str = MOZILLA_CIPHERS
    ciphersuites: str = MOZILLA_CIPHERSUITES
    groups: tuple[str, ...] = MOZILLA_GROUPS
    alpn: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_version not in _VERSIONS or self.max_version not in _VERSIONS:
            raise PolicyError(f"TLS versions must be 1.2 or 1.3, got "
                              f"{self.min_version!r}..{self.max_version!r}")
        if _VERSIONS[self.min_version] > _VERSIONS[self.max_version]:
            raise PolicyError(f"min_version {self.min_version} is above the highest version "
                              f"this listener offers ({self.max_version})")
        for name in ("ciphers", "ciphersuites"):
            if not getattr(self, name).strip(":"):
                raise PolicyError(f"{name}: the list is empty")


def set_groups(ctx: SSL.Context, groups: tuple[str, ...]) -> None:
    """Restrict the key-exchange groups (X25519, prime256v1...) a context negotiates.

    pyOpenSSL has no public call for a groups list (only ``set_tmp_ecdh``, one curve), so
    this calls ``SSL_CTX_set1_curves_list`` ("curves" is OpenSSL's older name for groups)
    from pyOpenSSL's own binding (cryptography's maintained ``Binding.lib``) on the context's
    ``SSL_CTX`` handle. This is the only place certgate reaches below pyOpenSSL's public API.
    """
    from OpenSSL.SSL import _lib  # type: ignore[attr-defined]  # pyOpenSSL's binding

    if not groups:
        raise PolicyError("groups: the list is empty (no key exchange would be possible)")

    def accepted(names: tuple[str, ...]) -> bool:
        if not all(n.isascii() and n and ":" not in n for n in names):
            return False
        return bool(_lib.SSL_CTX_set1_curves_list(ctx._context, ":".join(names).encode()))

    if not accepted(groups):
        unknown = [n for n in groups if not accepted((n,))] or list(groups)
        raise PolicyError(f"groups: OpenSSL does not know {', '.join(map(repr, unknown))} "
                          f"(names like X25519, prime256v1, secp384r1, X448, secp521r1)")


def apply(ctx: SSL.Context, policy: ServerPolicy,
          select_alpn: SSL._ALPNSelectCallback | None = None) -> None:
    """Configure ``ctx`` to negotiate only what ``policy`` allows."""
    ctx.set_min_proto_version(_VERSIONS[policy.min_version])
    ctx.set_max_proto_version(_VERSIONS[policy.max_version])
    try:
        ctx.set_cipher_list(policy.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        raise PolicyError(f"ciphers {policy.ciphers!r}: OpenSSL matches no TLS 1.2 suite "
                          f"in it") from e
    try:
        ctx.set_tls13_ciphersuites(policy.ciphersuites.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        _check_suites(ctx, policy.ciphersuites)
        raise PolicyError(f"ciphersuites {policy.ciphersuites!r}: refused by OpenSSL") from e
    set_groups(ctx, policy.groups)
    # No renegotiation (the CVE-2009-3555 class), no compression (CRIME). A peer that closes
    # TCP without close_notify is a half-close, as nginx and haproxy treat it: what it sent
    # is delivered and the reply still goes out (RFC 8446 section 6.1 leaves it to us).
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION
                    | SSL.OP_IGNORE_UNEXPECTED_EOF)
    if policy.alpn and select_alpn is not None:
        ctx.set_alpn_select_callback(select_alpn)


def _check_suites(ctx: SSL.Context, suites: str) -> None:
    # OpenSSL skips names it does not know when one other matches: check each name, so a
    # typo fails the config instead of silently narrowing the policy.
    for name in suites.split(":"):
        try:
            ctx.set_tls13_ciphersuites(name.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            raise PolicyError(f"ciphersuites: {name!r} is not a TLS 1.3 suite OpenSSL knows "
                              f"(TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
                              f"TLS_CHACHA20_POLY1305_SHA256...)") from None


def alpn_selector(offered: tuple[str, ...]) -> SSL._ALPNSelectCallback:
    """The server's ALPN choice: its first protocol the client also offers. Without an
    overlap the handshake goes on without ALPN (what the ``ssl`` module did before, and
    what HTTP/1.1 clients that offer only h2 expect to fall back on)."""
    ours = [p.encode("ascii") for p in offered]

    def select(_conn: SSL.Connection, theirs: list[bytes]) -> bytes:
        for proto in ours:
            if proto in theirs:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    return select


def check(policy: ServerPolicy) -> None:
    """Raise :class:`PolicyError` if OpenSSL refuses any setting (config load uses it)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    _check_suites(ctx, policy.ciphersuites)
    apply(ctx, policy)
