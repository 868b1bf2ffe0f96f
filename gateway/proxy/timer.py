"""A per-connection deadline that costs no timer handle when it moves later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """One lazily re-armed timer.

    Moving the deadline later (the common case: every read refreshes an inactivity
    timeout) only stores a number; the pending handle re-arms itself when it fires early.
    Only an earlier deadline replaces the handle.
    """

    __slots__ = ("_callback", "_handle", "_handle_when", "_loop", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._when: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = 0.0

    def set(self, delay: float) -> None:
        """Call back `delay` seconds from now (replacing any earlier setting)."""
        when = self._loop.time() + delay
        self._when = when
        if self._handle is None or when < self._handle_when:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(when, self._fire)
            self._handle_when = when

    def cancel(self) -> None:
        """Never call back (until set again)."""
        self._when = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """Cancel for good and drop the callback (it usually references the deadline's
        owner: dropping it breaks that reference cycle)."""
        self.cancel()
        self._callback = _nothing

    def _fire(self) -> None:
        self._handle = None
        when = self._when
        if when is None:
            return
        if self._loop.time() < when:
            self._handle = self._loop.call_at(when, self._fire)
            self._handle_when = when
            return
        self._when = None
        self._callback()


def _nothing() -> None:
    pass
