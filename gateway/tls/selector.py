"""Choosing the chain inside the handshake (the listener's SNI callback).

The callback runs synchronously in OpenSSL's ClientHello processing, so it only reads the
current snapshot (one attribute load: swapping the reference is the whole hot reload) and
the context cache. No SNI -> the default chain. Unknown name -> the default chain, or with
``strict_sni`` a handshake failure with the ``unrecognized_name`` alert (RFC 6066 section 3).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from certstore.snapshot import Snapshot
from gateway.tls.contexts import ChainContext, ContextCache
from gateway.tls.transport import TlsConnection

log = logging.getLogger("certgate.tls")


@dataclass(slots=True)
class SnapshotRef:
    """The one mutable reference every listener reads; the reload follower swaps it."""

    snapshot: Snapshot


class SniSelector:
    """The ``sni_callback`` of one listener."""

    def __init__(self, *, ref: SnapshotRef, cache: ContextCache, default: ChainContext,
                 alpn: tuple[str, ...], strict: bool) -> None:
        self._ref = ref
        self._cache = cache
        self._default = default
        self._alpn = alpn
        self._strict = strict

    def __call__(self, conn: TlsConnection, server_name: str | None,
                 _base: ssl.SSLContext) -> int | None:
        # The connection (the SSL object's owner) keeps these for after the handshake:
        # access log, metrics, the 421 check.
        conn.certgate_sni = server_name
        if server_name is None:
            conn.certgate_result = "no_sni"
            conn.context = self._default
            return None
        served = self._ref.snapshot.select(server_name)
        if served is None:
            conn.certgate_result = "unknown_sni"
            if self._strict:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            conn.context = self._default
            return None
        try:
            conn.context = self._cache.get(served, self._alpn)
        except Exception:
            # A chain that cannot be loaded must fail its own handshakes only, loudly.
            log.exception("chain %s cannot be loaded", served.chain_id)
            conn.certgate_result = "failed"
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        conn.certgate_result = "ok"
        return None
