"""Server SSLContexts: the listener's base context (policy) and one context per chain.

A per-chain context only carries the certificate chain and key (plus ALPN, which OpenSSL
reads from the context the SNI callback switched to); protocol versions and ciphers stay
those of the listener's base context, because ``SSL_set_SSL_CTX`` does not change them.

Keys are loaded through an anonymous memory file (``memfd_create``): ``load_cert_chain``
only takes paths, and the decrypted key must never touch the disk.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable

from certstore.snapshot import ServedChain
from gateway.config import TlsPolicy

# Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults, all AEAD).
MOZILLA_INTERMEDIATE = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


class ChainContext(ssl.SSLContext):
    """A server context for one chain; ``served`` tells connections what they got."""

    served: ServedChain


_PKCS8_LABEL = b"PRIVATE KEY"  # RFC 7468 section 10


def key_pem(key_der: bytes) -> bytes:
    """PKCS#8 DER to PEM armour (no parsing needed)."""
    body = base64.encodebytes(key_der)
    return b"-----BEGIN %s-----\n%s-----END %s-----\n" % (_PKCS8_LABEL, body, _PKCS8_LABEL)


def load_in_memory(ctx: ssl.SSLContext, chain_pem: bytes, key_der: bytes) -> None:
    """``load_cert_chain`` from an anonymous in-memory file; nothing is written to disk."""
    fd = os.memfd_create("certgate-chain", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + key_pem(key_der))
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def chain_context(served: ServedChain, key_der: bytes, alpn: tuple[str, ...]) -> ChainContext:
    """A context serving one chain."""
    ctx = ChainContext(ssl.PROTOCOL_TLS_SERVER)
    load_in_memory(ctx, served.chain_pem, key_der)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.served = served
    return ctx


def base_context(policy: TlsPolicy, alpn: tuple[str, ...], *,
                 session_tickets: bool = True) -> ssl.SSLContext:
    """A listener's context: versions, ciphers, ALPN; chains are attached by SNI.

    ``session_tickets=False`` sends no TLS 1.3 tickets: libcups (ipptool, CUPS clients)
    drops and redials the connection forever when it receives them. The SSL object copies
    this setting from the base context at creation, so the SNI switch does not undo it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if policy.min_version == "1.3"
                           else ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(policy.ciphers or MOZILLA_INTERMEDIATE)
    # No renegotiation (CVE-2009-3555 class of issues), no compression (CRIME).
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if not session_tickets:
        ctx.num_tickets = 0
    return ctx


_Key = tuple[str, tuple[str, ...]]  # chain id, ALPN list


class ContextCache:
    """Per-chain contexts, built on first use, least recently used dropped past ``limit``.

    ``open_key`` unseals a served chain's key; it runs only when a context is built.
    """

    def __init__(self, open_key: Callable[[ServedChain], bytes], limit: int) -> None:
        self._open_key = open_key
        self._limit = limit
        self._items: OrderedDict[_Key, ChainContext] = OrderedDict()
        # account -> its cached keys: a change drops its account's contexts without
        # walking the whole cache (10,000 entries take milliseconds to walk).
        self._by_account: dict[str, set[_Key]] = {}

    def get(self, served: ServedChain, alpn: tuple[str, ...]) -> ChainContext:
        """The context for ``served`` (built now if not cached)."""
        key = (served.chain_id, alpn)
        ctx = self._items.get(key)
        if ctx is not None and ctx.served.fingerprint_sha256 == served.fingerprint_sha256:
            self._items.move_to_end(key)
            return ctx
        ctx = chain_context(served, self._open_key(served), alpn)
        self._items[key] = ctx
        self._by_account.setdefault(served.account_id, set()).add(key)
        if len(self._items) > self._limit:
            old_key, old = self._items.popitem(last=False)
            self._forget(old.served.account_id, old_key)
        return ctx

    def _forget(self, account_id: str, key: _Key) -> None:
        keys = self._by_account.get(account_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_account[account_id]

    def drop_accounts(self, account_ids: set[str]) -> dict[str, set[tuple[str, ...]]]:
        """Forget the contexts of these accounts' chains; returns, per account that had any,
        the ALPN lists they were built for (what the caller may rebuild at once)."""
        dropped: dict[str, set[tuple[str, ...]]] = {}
        for account_id in account_ids:
            for key in self._by_account.pop(account_id, ()):
                self._items.pop(key, None)
                dropped.setdefault(account_id, set()).add(key[1])
        return dropped

    def holds(self, chain_id: str) -> bool:
        """Whether a context for this chain is built (for any ALPN list)."""
        return any(key[0] == chain_id for key in self._items)

    def __len__(self) -> int:
        return len(self._items)
