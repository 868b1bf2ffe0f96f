"""Choosing the chain inside the handshake (the listener's SNI callback).

The callback runs synchronously in OpenSSL's ClientHello processing, so it only reads the
current snapshot (one attribute load: swapping the reference is the whole hot reload) and
the context cache. No SNI -> the default chain. Unknown name -> the default chain, or with
``strict_sni`` a handshake failure with the ``unrecognized_name`` alert (RFC 6066 section 3).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from certstore.snapshot import Snapshot
from gateway.tls.contexts import ChainContext, ContextCache

log = logging.getLogger("certgate.tls")
HandshakeObserver = Callable[[str], None]  # "ok" | "no_sni" | "unknown_sni" | "failed"


@dataclass(slots=True)
class SnapshotRef:
    """The one mutable reference every listener reads; the reload follower swaps it."""

    snapshot: Snapshot


class SniSelector:
    """The ``sni_callback`` of one listener."""

    def __init__(self, *, ref: SnapshotRef, cache: ContextCache, default: ChainContext,
                 alpn: tuple[str, ...], strict: bool,
                 observe: HandshakeObserver | None = None) -> None:
        self._ref = ref
        self._cache = cache
        self._default = default
        self._alpn = alpn
        self._strict = strict
        self._observe = observe or (lambda _result: None)
        self.last_result = "ok"

    def set_default(self, default: ChainContext) -> None:
        """Replace the chain served to clients without SNI."""
        self._default = default

    def __call__(self, sslobj: ssl.SSLObject, server_name: str | None,
                 _base: ssl.SSLContext) -> int | None:
        if server_name is None:
            self._report("no_sni")
            sslobj.context = self._default
            return None
        served = self._ref.snapshot.select(server_name)
        if served is None:
            self._report("unknown_sni")
            if self._strict:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = self._default
            return None
        try:
            sslobj.context = self._cache.get(served, self._alpn)
        except Exception:
            # A chain that cannot be loaded must fail its own handshakes only, loudly.
            log.exception("chain %s cannot be loaded", served.chain_id)
            self._report("failed")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        self._report("ok")
        return None

    def _report(self, result: str) -> None:
        # Read by the listener right after this call, in the same synchronous callback.
        self.last_result = result
        self._observe(result)
