"""Following the store's change feed: rebuild the snapshot, swap one reference.

The follower wakes at once for commits made in its own process (``CertStore.watch``) and,
through inotify on the database's directory, for commits made by other processes (the CLI,
other workers): SQLite's write to the database or its WAL is the signal. Where inotify is
unavailable it polls instead: every ``poll_s`` it ``stat``s the database files and reads the
feed only when they changed. Either way it also reads the feed every ``FULL_POLL_S``, as a
safety net.
Each batch of changes rebuilds only the accounts it names (``Snapshot.with_accounts``) and
drops their cached contexts; handshakes already running hold the old context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from certstore.errors import StoreUnavailable
from certstore.snapshot import Snapshot
from certstore.store import CertStore
from gateway.fswatch import DirectoryWatch, watch_directory
from gateway.tls.selector import SnapshotRef

log = logging.getLogger("certgate.reload")
BATCH = 1000
FULL_POLL_S = 1.0
SAFETY_POLL_S = 3.0
"""With PostgreSQL, NOTIFY wakes the follower; this slower poll covers anything lost."""
RECHECK_S = (0.0005, 0.002, 0.01)
"""Delays of the feed re-reads after a file event that showed no new change."""


class Follower:
    """Keeps ``ref.snapshot`` in step with the store."""

    def __init__(self, store: CertStore, ref: SnapshotRef, *, poll_s: float = 0.05,
                 full_poll_s: float = FULL_POLL_S, watch_dir: Path | None = None,
                 on_accounts_changed: Callable[[set[str]], None] = lambda _ids: None,
                 on_reload: Callable[[Snapshot], None] = lambda _s: None) -> None:
        """Follow ``store`` into ``ref``; ``watch_dir`` (the database's directory) is
        watched with inotify, else polled every ``poll_s``."""
        self._store = store
        self._ref = ref
        self._poll_s = poll_s
        self._full_poll_s = full_poll_s
        self._failing = False
        self._watch_dir = watch_dir
        self._on_accounts_changed = on_accounts_changed
        self._on_reload = on_reload
        self._wake = asyncio.Event()
        self._files_changed = False
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
        watch = watch_directory(self._watch_dir) if self._watch_dir is not None else None
        if watch is not None:
            loop.add_reader(watch.fileno(), self._on_files_changed, watch)
        wait_s = self._full_poll_s if watch is not None else self._poll_s
        rechecks, rechecking = 0, False
        try:
            while True:
                current = self._store.file_signature()
                now = loop.time()
                timeout_s, armed = wait_s, False
                if (self._wake.is_set() or current != signature
                        or now - last_full > self._full_poll_s):
                    self._wake.clear()
                    # A file event, or (polling) changed file sizes or times.
                    event = self._files_changed or current != signature
                    self._files_changed = False
                    if event:
                        rechecks = 0  # a new file event starts its own series of rechecks
                    signature, last_full = current, now
                    applied = 0
                    try:
                        applied = await self.catch_up()
                        self._failing = False
                    except StoreUnavailable:
                        # An outage: handshakes go on from the last snapshot; the store's
                        # reconnection wakes this loop to catch up (logged there, once).
                        self._failing = True
                    except Exception:
                        if not self._failing:
                            log.exception("reading the change feed failed; retrying")
                        self._failing = True
                    # SQLite writes the WAL, then publishes the commit in shared memory,
                    # which raises no file event: a read right after the write can miss the
                    # commit it announces. Look again shortly, a few times.
                    if (event or rechecking) and not applied and rechecks < len(RECHECK_S):
                        timeout_s, armed = RECHECK_S[rechecks], True
                        rechecks += 1
                    rechecking = False
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races with the event being set, and shutdown would then hang.
                try:
                    async with asyncio.timeout(timeout_s):
                        await self._wake.wait()
                except TimeoutError:
                    if armed:
                        rechecking = True
                        self._wake.set()
        finally:
            self._unwatch()
            if watch is not None:
                loop.remove_reader(watch.fileno())
                watch.close()

    def _on_files_changed(self, watch: DirectoryWatch) -> None:
        if watch.drain():
            self._files_changed = True
            self._wake.set()

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
            if len(changes) < BATCH:
                return applied  # the feed's end: no query to learn it
