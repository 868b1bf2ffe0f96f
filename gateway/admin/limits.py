"""What one client may ask of the admin API at a time.

* :func:`body_limit_middleware`: a request whose ``Content-Length`` announces more than
  ``admin.max_upload_bytes`` is answered 413 at once, before a byte of its body is read,
  and the connection is closed: waiting for a body that may never come would hold the
  connection (and the client) for nothing. Bodies without a length (chunked) are counted
  as they are read and cut at the limit by the readers (``uploads``).
* :class:`MutationLimits`: at most ``max_mutations_per_key`` concurrent mutations per API
  key and ``max_mutations_per_account`` per caller's account (all its keys together), so a
  tenant's slow imports cannot take up the shared crypto workers; the next one is answered
  429 with ``Retry-After`` at once (no queueing: the client decides when to retry).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from certstore.audit import ApiKey
from gateway.admin.problems import to_problem
from gateway.errors import Unavailable

RETRY_AFTER_S = 1


def body_limit_middleware(max_upload_bytes: int) -> Middleware:
    """413 for an announced body over ``max_upload_bytes``, before reading any of it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_upload_bytes:
            too_large = web.HTTPRequestEntityTooLarge(max_size=max_upload_bytes,
                                                      actual_size=length)
            response = to_problem(too_large, max_upload_bytes).response()
            response.force_close()  # the unread body must not be taken for the next request
            return response
        return await handler(request)

    return middleware


class MutationLimits:
    """Counts in-flight mutations per key and per account (one event loop: no lock)."""

    def __init__(self, *, per_key: int, per_account: int) -> None:
        self.per_key = per_key
        self.per_account = per_account
        self._keys: dict[str, int] = {}
        self._accounts: dict[str, int] = {}

    def in_flight(self, *, key_id: str | None = None, account_id: str | None = None) -> int:
        """Mutations running now for a key or an account."""
        if key_id is not None:
            return self._keys.get(key_id, 0)
        return self._accounts.get(account_id or "", 0)

    @contextmanager
    def hold(self, key: ApiKey) -> Iterator[None]:
        """Count one mutation by ``key`` while the block runs, or raise 429 (Unavailable)."""
        if self._keys.get(key.id, 0) >= self.per_key:
            raise Unavailable(f"this API key already runs {self.per_key} concurrent changes "
                              "(admin.max_mutations_per_key); retry when one finishes",
                              code="too-many-requests", http_status=429,
                              retry_after_s=RETRY_AFTER_S)
        account = key.account_id
        if account is not None and self._accounts.get(account, 0) >= self.per_account:
            raise Unavailable(f"account {account} already runs {self.per_account} concurrent "
                              "changes (admin.max_mutations_per_account); retry when one "
                              "finishes", code="too-many-requests", http_status=429,
                              retry_after_s=RETRY_AFTER_S)
        self._keys[key.id] = self._keys.get(key.id, 0) + 1
        if account is not None:
            self._accounts[account] = self._accounts.get(account, 0) + 1
        try:
            yield
        finally:
            _release(self._keys, key.id)
            if account is not None:
                _release(self._accounts, account)


def _release(counts: dict[str, int], name: str) -> None:
    left = counts[name] - 1
    if left:
        counts[name] = left
    else:
        del counts[name]  # no entry per idle key: the dicts stay as small as the load
