"""An SSLProtocol that delivers the TLS alert of a failed handshake.

CPython 3.11's asyncio (gh-98078) closes the transport when ``do_handshake`` raises, leaving
OpenSSL's alert record (``unrecognized_name``, ``handshake_failure``...) unsent in the
outgoing memory BIO: the client sees an unexpected EOF instead of the reason. We flush the
BIO to the socket before asyncio aborts the connection. The write goes straight to the
socket (its buffer is empty during a handshake), so the abort that follows does not drop it.
"""

from __future__ import annotations

from asyncio import sslproto


class AlertingSSLProtocol(sslproto.SSLProtocol):
    """``asyncio.sslproto.SSLProtocol`` that sends the alert of a failed handshake."""

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            try:
                self._process_outgoing()  # type: ignore[attr-defined]
            except Exception:
                pass
        super()._on_handshake_complete(handshake_exc)
