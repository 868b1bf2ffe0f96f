"""The IPP part of an exchange: holding a head until the IPP attributes are rewritten.

`Exchange` inherits these; they stay apart so that the generic HTTP data path in
`exchange.py` carries only the calls. See `ipp_uris.py` for what is rewritten and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.proxy import ipp_uris, response
from gateway.proxy.state import ExchangeState

if TYPE_CHECKING:
    from gateway.proxy.settings import Route


class IppRewriting(ExchangeState):
    """Sets up the URI rewriters of an IPP request and releases the heads they hold."""

    __slots__ = ()

    def _ipp_rewriters(self, route: Route, host: str, host_value: bytes) -> None:
        """URIs naming the upstream in the response become the name the client used (and,
        on routes with a base path, the request's become the upstream's)."""
        transport = self.proto.transport
        sockname = None if transport is None else transport.get_extra_info("sockname")
        port = sockname[1] if isinstance(sockname, tuple) else None
        secure = transport is not None and transport.get_extra_info("sslcontext") is not None
        public = ipp_uris.public_authority(host, host_value, port)
        self._ipp_map = ipp_uris.UriMap.for_route(route, public, secure=secure)
        request_map = ipp_uris.UriMap.for_request(route, public)
        if request_map is not None:
            limit = self.proto.settings.ipp_max_attributes_bytes
            self._ipp_up = ipp_uris.AttributeRewriter(request_map, limit=limit)

    def _release_request(self, data: bytes | None) -> bytes:
        """Queue the held request head once its IPP attributes were rewritten (`data`)."""
        rewriter = self._ipp_up
        if data is None or rewriter is None:
            return b""
        self._ipp_up = None
        if not rewriter.rewritten:
            self.error = self.error or f"IPP request URIs not rewritten: {rewriter.reason}"
        if rewriter.delta:
            self._head = response.adjust_content_length(self._head, rewriter.delta)
        self._up_out.append(self._head)
        return data

    def _hold_head(self, head: bytes) -> bool:
        """Hold an IPP response's head (True), unless its request was not IPP (False).

        The head waits for the attributes: their new size decides its Content-Length.
        """
        if self._ipp_map is None:
            return False
        limit = self.proto.settings.ipp_max_attributes_bytes
        self._ipp_rw = ipp_uris.AttributeRewriter(self._ipp_map, limit=limit)
        self._held_head = head
        return True

    def _release_head(self, data: bytes | None) -> bytes:
        """Queue the held head once the rewriter gave the attributes back (`data`)."""
        rewriter = self._ipp_rw
        if data is None or rewriter is None:
            return b""  # still collecting the attributes
        self._ipp_rw = None
        if not rewriter.rewritten:
            # Passed through as it came (the access log says why); the head is unchanged.
            self.error = self.error or f"IPP URIs not rewritten: {rewriter.reason}"
        head, self._held_head = self._held_head, b""
        if rewriter.delta:
            head = response.adjust_content_length(head, rewriter.delta)
        self._out.append(head)
        return data
