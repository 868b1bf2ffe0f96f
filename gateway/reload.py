"""Following the store's change feed: rebuild the snapshot, swap one reference.

The follower wakes at once for commits made in its own process (``CertStore.watch``) and
polls for commits made by other processes (the CLI, other workers): every ``poll_s`` it
``stat``s the database files and reads the feed only when they changed (and at least every
``FULL_POLL_S``, as a safety net), so an idle gateway costs a syscall per poll, not a query.
Each batch of changes rebuilds only the accounts it names (``Snapshot.with_accounts``) and
drops their cached contexts; handshakes already running hold the old context.
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
FULL_POLL_S = 1.0


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
        self._applied = asyncio.Condition()
        self._unwatch = store.watch(self._wake.set)

    async def wait_applied(self, seq: int, timeout_s: float) -> bool:
        """Wait until the snapshot includes change ``seq``; False on timeout.

        The admin API awaits this before answering a mutation, so its caller's next
        handshake is served from the new state.
        """
        async with self._applied:
            try:
                await asyncio.wait_for(
                    self._applied.wait_for(lambda: self._ref.snapshot.seq >= seq), timeout_s)
            except TimeoutError:
                return False
        return True

    async def run(self) -> None:
        """Follow until cancelled; a failing poll is logged and retried, never fatal."""
        loop = asyncio.get_running_loop()
        signature: tuple[int, ...] | None = None
        last_full = 0.0
        try:
            while True:
                current = self._store.file_signature()
                now = loop.time()
                if self._wake.is_set() or current != signature or now - last_full > FULL_POLL_S:
                    self._wake.clear()
                    signature, last_full = current, now
                    try:
                        await self.catch_up()
                    except Exception:
                        log.exception("reading the change feed failed; retrying")
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races with the event being set, and shutdown would then hang.
                try:
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
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
            async with self._applied:
                self._applied.notify_all()
