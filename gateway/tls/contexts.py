"""Server contexts: the listener's base context and one context per (chain, policy).

OpenSSL takes the cipher list, the TLS 1.3 suites, the groups and the ALPN callback from the
context the SNI callback switches to (``SSL_set_SSL_CTX`` keeps only the versions and options
of the SSL object it started with). So a per-chain context is built from the listener's
whole policy (:mod:`gateway.tls.policy`), and the cache is keyed by (chain, policy): two
listeners with different policies never share a context.

Keys are loaded through an anonymous memory file (``memfd_create``): OpenSSL's loaders
take paths, and the decrypted key must never touch the disk. The data path uses pyOpenSSL;
the admin listener (aiohttp) keeps a standard-library context (:func:`admin_context`).
"""

from __future__ import annotations

import base64
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from OpenSSL import SSL

from certstore.snapshot import ServedChain
from gateway.tls import policy as tls_policy
from gateway.tls.policy import ServerPolicy


class ChainContext(SSL.Context):
    """A server context for one chain; ``served`` tells connections what they got."""

    served: ServedChain


_PKCS8_LABEL = b"PRIVATE KEY"  # RFC 7468 section 10


def key_pem(key_der: bytes) -> bytes:
    """PKCS#8 DER to PEM armour (no parsing needed)."""
    body = base64.encodebytes(key_der)
    return b"-----BEGIN %s-----\n%s-----END %s-----\n" % (_PKCS8_LABEL, body, _PKCS8_LABEL)


@contextmanager
def _in_memory(chain_pem: bytes, key_der: bytes) -> Iterator[str]:
    """A path to an anonymous in-memory file holding the chain and the key."""
    fd = os.memfd_create("certgate-chain", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + key_pem(key_der))
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def new_context(policy: ServerPolicy) -> SSL.Context:
    """A server context enforcing ``policy``, without a certificate."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    _configure(ctx, policy)
    return ctx


def _configure(ctx: SSL.Context, policy: ServerPolicy) -> None:
    tls_policy.apply(ctx, policy, tls_policy.alpn_selector(policy.alpn) if policy.alpn
                     else None)


def chain_context(served: ServedChain, key_der: bytes, policy: ServerPolicy) -> ChainContext:
    """A context serving one chain (leaf first, then its issuers) under ``policy``."""
    ctx = ChainContext(SSL.TLS_SERVER_METHOD)
    _configure(ctx, policy)
    with _in_memory(served.chain_pem, key_der) as path:
        # The chain loader skips the key's PEM block; the key loader skips the certificates.
        ctx.use_certificate_chain_file(path)
        ctx.use_privatekey_file(path)
    ctx.check_privatekey()
    ctx.served = served
    return ctx


def admin_context(served: ServedChain, key_der: bytes) -> ssl.SSLContext:
    """The admin listener's standard-library context (aiohttp takes an ``SSLContext``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with _in_memory(served.chain_pem, key_der) as path:
        ctx.load_cert_chain(path)
    return ctx


_Key = tuple[str, ServerPolicy]  # chain id, policy


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

    def get(self, served: ServedChain, policy: ServerPolicy) -> ChainContext:
        """The context for ``served`` under ``policy`` (built now if not cached)."""
        key = (served.chain_id, policy)
        ctx = self._items.get(key)
        if ctx is not None and ctx.served.fingerprint_sha256 == served.fingerprint_sha256:
            self._items.move_to_end(key)
            return ctx
        ctx = chain_context(served, self._open_key(served), policy)
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

    def drop_accounts(self, account_ids: set[str]) -> dict[str, set[ServerPolicy]]:
        """Forget the contexts of these accounts' chains; returns, per account that had any,
        the policies they were built for (what the caller may rebuild at once)."""
        dropped: dict[str, set[ServerPolicy]] = {}
        for account_id in account_ids:
            for key in self._by_account.pop(account_id, ()):
                self._items.pop(key, None)
                dropped.setdefault(account_id, set()).add(key[1])
        return dropped

    def holds(self, chain_id: str) -> bool:
        """Whether a context for this chain is built (under any policy)."""
        return any(key[0] == chain_id for key in self._items)

    def __len__(self) -> int:
        return len(self._items)
