"""The state of one proxied request, and its observation record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.proxy import ipp
from gateway.proxy.ipp_uris import AttributeRewriter, UriMap
from gateway.proxy.record import RequestRecord

if TYPE_CHECKING:
    import asyncio

    from gateway.proxy.protocol import ProxyProtocol
    from gateway.proxy.settings import Upstream
    from gateway.proxy.tunnel import Tunnel
    from gateway.proxy.upstream import UpstreamConnection

# Timer kinds of the client connection, see ProxyProtocol.set_timer. T_STREAM and T_TUNNEL
# (the last ones) are inactivity timeouts that moving data pushes back.
T_IDLE, T_HEAD, T_RESPONSE, T_STREAM, T_TUNNEL = range(5)


class ExchangeState:
    """The fields of one exchange; `exchange.Exchange` adds the behaviour."""

    __slots__ = (
        "_body_sent",
        "_fail_pending",
        "_head",
        "_held_head",
        "_ipp_map",
        "_ipp_req",
        "_ipp_resp",
        "_ipp_rw",
        "_ipp_up",
        "_out",
        "_retry_ok",
        "_skip_interim",
        "_task",
        "_up_out",
        "_upstream",
        "bytes_in",
        "bytes_out",
        "close_after",
        "conn",
        "discard",
        "error",
        "expect_pending",
        "finished",
        "headers",
        "host",
        "http10",
        "ipp_request",
        "ipp_status",
        "is_ipp",
        "keep_alive",
        "latency",
        "method",
        "proto",
        "req_chunked",
        "req_done",
        "req_length",
        "resp_chunked",
        "resp_done",
        "resp_started",
        "sent_at",
        "started",
        "status",
        "switch_asked",
        "target",
        "tunnel",
        "upgrade",
        "upstream_keep_alive",
    )

    def __init__(
        self,
        proto: ProxyProtocol,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        keep_alive: bool,
        http10: bool,
    ) -> None:
        self.proto = proto
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.http10 = http10
        self.close_after = not keep_alive
        self.started = self.sent_at = 0.0
        self.latency: float | None = None
        self.conn: UpstreamConnection | None = None
        self.host = ""
        self.status = self.bytes_in = self.bytes_out = self._fail_pending = 0
        self.req_chunked = self.req_done = self.discard = self.expect_pending = False
        self.resp_started = self.resp_done = self.resp_chunked = self.finished = False
        self.upstream_keep_alive = self._skip_interim = self.is_ipp = False
        self._body_sent = self._retry_ok = self.switch_asked = False
        self.req_length = 0  # Content-Length sent upstream; -1 when chunked
        self.upgrade: bytes | None = None  # the Upgrade value offered to the upstream
        self.tunnel: Tunnel | None = None
        self.ipp_request: ipp.IppRequestHeader | None = None
        self.ipp_status: int | None = None
        self._ipp_req: ipp.HeaderCollector | None = None
        self._ipp_resp: ipp.HeaderCollector | None = None
        self._ipp_map: UriMap | None = None  # set for IPP requests: rewrite the response
        self._ipp_rw: AttributeRewriter | None = None  # while a response head is held
        self._ipp_up: AttributeRewriter | None = None  # while a request head is held
        self._held_head = b""
        self.error: str | None = None
        self._head = b""
        self._upstream: Upstream | None = None
        self._out: list[bytes] = []
        self._up_out: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def record(self) -> RequestRecord:
        """The observation record of this exchange."""
        header = self.ipp_request
        return RequestRecord(
            method=self.method.decode("ascii", "replace"),
            path=self.target.split(b"?", 1)[0].decode("ascii", "backslashreplace"),
            host=self.host,
            status=self.status,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            duration_s=self.proto.loop.time() - self.started,
            upstream_latency_s=self.latency,
            ipp_operation=None if header is None else header.operation_name,
            ipp_request_id=None if header is None else header.request_id,
            ipp_status=self.ipp_status,
            error=self.error,
        )
