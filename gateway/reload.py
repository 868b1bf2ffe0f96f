"""Following the store's change feed: rebuild the snapshot, swap one reference.

The follower wakes at once for commits made in its own process (``CertStore.watch``) and
polls the feed for commits made by other processes (the CLI, other workers): one indexed
SQLite read every ``poll_s`` is cheap. Each batch of changes rebuilds
only the accounts it names (``Snapshot.with_accounts``) and drops their cached contexts;
handshakes already running hold the old context and are not affected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from certstore.snapshot import Snapshot
from certstore.store import CertStore
from gateway.tls.selector import SnapshotRef

log = logging.getLogger("certgate.reload")
BATCH = 1000


class Follower:
    """Keeps ``ref.snapshot`` in step with the store."""

    def __init__(self, store: CertStore, ref: SnapshotRef, *, poll_s: float = 0.05,
                 on_accounts_changed: Callable[[set[str]], None] = lambda _ids: None,
                 on_reload: Callable[[Snapshot], None] = lambda _s: None) -> None:
        self._store = store
        self._ref = ref
        self._poll_s = poll_s
        self._on_accounts_changed = on_accounts_changed
        self._on_reload = on_reload
        self._wake = asyncio.Event()
        self._unwatch = store.watch(self._wake.set)

    async def run(self) -> None:
        """Follow until cancelled; a failing poll is logged and retried, never fatal."""
        try:
            while True:
                try:
                    await self.catch_up()
                except Exception:
                    log.exception("reading the change feed failed; retrying")
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            self._unwatch()

    async def catch_up(self) -> int:
        """Apply every committed change not yet applied; returns how many were applied."""
        applied = 0
        while True:
            snapshot = self._ref.snapshot
            changes = await self._store.changes_since(snapshot.seq, BATCH)
            if not changes:
                return applied
            accounts = {c.account_id for c in changes if c.account_id}
            entries = await self._store.account_entries(accounts)
            present = {e.account_id for e in entries}
            new = snapshot.with_accounts(entries, removed=accounts - present,
                                         seq=changes[-1].seq)
            self._ref.snapshot = new  # the swap: one reference
            self._on_accounts_changed(accounts)
            self._on_reload(new)
            applied += len(changes)
