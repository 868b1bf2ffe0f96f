"""This node's place in the fleet: its row in the store, and waiting for the fleet.

Each serving process records itself in the store's ``nodes`` table: name, heartbeat and
the last change its snapshot includes. It writes when it applies a change (so a waiting
admin learns at once) and at least every ``HEARTBEAT_S``. A node whose heartbeat is older
than ``LIVE_S`` is not live: nobody waits for it, and ``GET /api/v1/cluster`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass

from certstore.model import NodeRecord
from certstore.persistence.base import Database

log = logging.getLogger("certgate.fleet")
HEARTBEAT_S = 1.0
LIVE_S = 5.0
WAIT_POLL_S = 0.005
"""How often a waiter re-reads the nodes' applied changes (one small query)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NodeReporter:
    """Keeps this node's row current; ``applied(seq)`` after each snapshot swap."""

    def __init__(self, db: Database, name: str, applied_seq: int) -> None:
        self.name = name
        self._db = db
        self._started = _now()
        self._seq = applied_seq
        self._dirty = asyncio.Event()
        self._dirty.set()

    def applied(self, seq: int) -> None:
        """The snapshot now includes change ``seq`` (called on the loop, never blocks)."""
        self._seq = seq
        self._dirty.set()

    def record(self) -> NodeRecord:
        """This node's row as it is written now."""
        return NodeRecord(name=self.name, host=socket.gethostname(), pid=os.getpid(),
                          started_at=self._started, heartbeat_at=_now(),
                          applied_seq=self._seq)

    async def run(self) -> None:
        """Write the row on every change applied and every heartbeat, until cancelled;
        an outage only delays it."""
        while True:
            self._dirty.clear()
            try:
                await self._db.record_node(self.record())
            except Exception as e:  # an outage: the health check reports it
                log.debug("node row not written: %s", e)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_S):
                    await self._dirty.wait()

    async def leave(self) -> None:
        """Remove this node's row (clean shutdown: nobody should wait for it)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._db.delete_node(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """A node as ``GET /api/v1/cluster`` shows it."""

    record: NodeRecord
    live: bool
    lag: int


def view(nodes: list[NodeRecord], last_seq: int, now: dt.datetime | None = None
         ) -> list[NodeView]:
    """Nodes with liveness and lag (changes committed but not yet applied)."""
    at = now or _now()
    return [NodeView(record=n, live=n.live_at(at, LIVE_S), lag=max(0, last_seq - n.applied_seq))
            for n in nodes]


async def wait_fleet(db: Database, seq: int, timeout_s: float) -> list[str]:
    """Wait until every live node serves change ``seq``; the names of those that did not
    within ``timeout_s`` (empty: all did)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        now = _now()
        pending = [n.name for n in await db.nodes()
                   if n.live_at(now, LIVE_S) and n.applied_seq < seq]
        if not pending or loop.time() >= deadline:
            return pending
        await asyncio.sleep(WAIT_POLL_S)
