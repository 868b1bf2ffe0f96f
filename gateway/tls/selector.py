"""Choosing the chain inside the handshake (the listener's SNI callback).

The callback runs synchronously in OpenSSL's ClientHello processing, so it only reads the
current snapshot (one attribute load: swapping the reference is the whole hot reload) and
the context cache. No SNI -> the default chain. Unknown name -> the default chain, or with
``strict_sni`` a handshake failure with the ``unrecognized_name`` alert (RFC 6066 section 3).
A name that is not a DNS host name at all (non-ASCII bytes, which RFC 6066 forbids: IDNs go
as A-labels; spaces, control bytes...) is always refused with ``unrecognized_name``, logged
at most once per :data:`LOG_INTERVAL_S`.

pyOpenSSL's callback cannot choose the alert, and an exception in it would print a
traceback per handshake. So a refusal switches the connection to a context without any
certificate (OpenSSL then stops before it signs anything) and asks the transport to send
the alert itself in place of OpenSSL's (:meth:`TlsConnection.refuse`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from OpenSSL import SSL

from certstore.snapshot import Snapshot
from gateway.tls.contexts import ChainContext, ContextCache
from gateway.tls.policy import ServerPolicy
from gateway.tls.transport import ALERT_INTERNAL_ERROR, ALERT_UNRECOGNIZED_NAME, TlsConnection

log = logging.getLogger("certgate.tls")

LOG_INTERVAL_S = 60.0
"""At most one log line per this many seconds for refused (invalid) server names."""
# LDH labels, underscores (seen in the wild), dots; the snapshot decides what is known.
_HOST = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})\Z")


@dataclass(slots=True)
class SnapshotRef:
    """The one mutable reference every listener reads; the reload follower swaps it."""

    snapshot: Snapshot


class _RateLimitedLog:
    """One warning per interval, with how many were suppressed since the last one."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        log.warning(msg + " (%d more since the last such line)", *args, suppressed)


class SniSelector:
    """The servername callback of one listener (for its base context)."""

    def __init__(self, *, ref: SnapshotRef, cache: ContextCache, default: ChainContext,
                 policy: ServerPolicy, refusal: SSL.Context, strict: bool) -> None:
        self._ref = ref
        self._cache = cache
        self._default = default
        self._policy = policy
        self._refusal = refusal
        self._strict = strict
        self._invalid_log = _RateLimitedLog(LOG_INTERVAL_S)

    def __call__(self, ssl_conn: SSL.Connection) -> None:
        conn: TlsConnection = ssl_conn.get_app_data()
        try:
            self._select(conn, ssl_conn)
        except Exception:
            # Never let an exception reach pyOpenSSL (it prints a traceback per handshake).
            log.exception("SNI selection failed")
            conn.certgate_result = "failed"
            self._refuse(conn, ssl_conn, ALERT_INTERNAL_ERROR)

    def _refuse(self, conn: TlsConnection, ssl_conn: SSL.Connection, alert: int) -> None:
        conn.refuse(alert)
        ssl_conn.set_context(self._refusal)

    def _select(self, conn: TlsConnection, ssl_conn: SSL.Connection) -> None:
        raw = ssl_conn.get_servername()
        if raw is None:
            conn.certgate_result = "no_sni"
            ssl_conn.set_context(self._default)
            return
        if _HOST.match(raw) is None:
            conn.certgate_result = "invalid_sni"
            self._invalid_log.warning("refused a TLS server name that is not a host name: %r",
                                      raw[:64])
            self._refuse(conn, ssl_conn, ALERT_UNRECOGNIZED_NAME)
            return
        server_name = raw.decode("ascii")
        # The connection keeps these for after the handshake: access log, metrics, 421.
        conn.certgate_sni = server_name
        served = self._ref.snapshot.select(server_name)
        if served is None:
            conn.certgate_result = "unknown_sni"
            if self._strict:
                self._refuse(conn, ssl_conn, ALERT_UNRECOGNIZED_NAME)
            else:
                ssl_conn.set_context(self._default)
            return
        try:
            ctx = self._cache.get(served, self._policy)
        except Exception:
            # A chain that cannot be loaded must fail its own handshakes only, loudly.
            log.exception("chain %s cannot be loaded", served.chain_id)
            conn.certgate_result = "failed"
            self._refuse(conn, ssl_conn, ALERT_INTERNAL_ERROR)
            return
        conn.certgate_result = "ok"
        ssl_conn.set_context(ctx)
