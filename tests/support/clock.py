"""A clock the test moves: the store's wall clock, and a monotonic one for backoffs."""

from __future__ import annotations

import datetime as dt


class MovableClock:
    """``clock()`` is ``clock.now`` (UTC), starting at the real time; ``clock.monotonic()``
    is ``clock.mono``. Tests move them forward by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.mono = 1000.0

    def __call__(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono
