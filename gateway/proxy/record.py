"""The per-request observation record handed to the listener's `on_request` hook."""

from __future__ import annotations

from typing import NamedTuple


class RequestRecord(NamedTuple):
    """What happened to one proxied request; the lead turns it into logs and metrics.

    An immutable named tuple rather than a frozen dataclass: one is made per request, and
    a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 0.8 µs
    more, about 3% of a kept-alive GET's whole cost in the gateway.

    `bytes_in`/`bytes_out` count message *body* bytes (after de-chunking) received from the
    client and sent to it. `status` is the status sent to the client, 499 when the client
    went away before a response was sent. `path` is the request path without its query
    (queries can carry secrets that must not reach access logs). `upstream_latency_s` is the
    time from the request being sent upstream to the upstream's response head, `None` if no
    response head arrived. The `ipp_*` fields are set on IPP listeners when the first bytes of
    the request (operation, request-id) and of an `application/ipp` response (status) parsed.
    `error` is a short description when something failed, else `None`.
    """

    method: str
    path: str
    host: str
    status: int
    bytes_in: int
    bytes_out: int
    duration_s: float
    upstream_latency_s: float | None
    ipp_operation: str | None
    ipp_request_id: int | None
    ipp_status: int | None
    error: str | None

    @classmethod
    def rejected(cls, status: int, error: str) -> RequestRecord:
        """A request refused before its head was complete: no method, path or host."""
        return cls(
            method="",
            path="",
            host="",
            status=status,
            bytes_in=0,
            bytes_out=0,
            duration_s=0.0,
            upstream_latency_s=None,
            ipp_operation=None,
            ipp_request_id=None,
            ipp_status=None,
            error=error,
        )
