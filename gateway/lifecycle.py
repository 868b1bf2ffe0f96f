"""The running gateway's lifecycle task: renews generated chains, sends expiry notices.

Every ``lifecycle.check_interval`` each worker counts chains by status (the
``certgate_chains`` gauge). The renewals and notices run under a lease in the store, so one
worker of one node does them at a time, whatever the number of workers or nodes; a renewal
is also checked again inside its own transaction, so even two holders could not renew a chain
twice. A failed renewal is logged, counted and retried with exponential backoff, and never
touches the chain that works. Notices go to the optional webhook from their own tasks:
a slow or failing receiver is retried with backoff and blocks nothing else; a notice is
recorded (and audited) once it was delivered, or at once when no webhook is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from certstore.audit import acting_as
from certstore.errors import CertStoreError, Conflict, NotFound
from certstore.model import Chain
from certstore.renewal import LIFECYCLE_ACTOR, Notice
from certstore.store import CertStore
from gateway.config import LifecycleConfig
from gateway.observe import Metrics

log = logging.getLogger("certgate.lifecycle")
LEASE = "lifecycle"
MIN_LEASE = dt.timedelta(seconds=10)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 900.0
"""Backoff of failed renewals and notice deliveries: 1 s, 2 s, 4 s ... at most 15 minutes."""


def backoff_s(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures."""
    return float(min(RETRY_FIRST_S * 2 ** max(failures - 1, 0), RETRY_MAX_S))


@dataclass(slots=True)
class _Retry:
    failures: int = 0
    not_before: float = 0.0


def notice_body(notice: Notice) -> dict[str, object]:
    """The webhook's JSON body: which chain of which account expires when, and its names."""
    chain = notice.chain
    return {"event": "chain.expiring", "stage": notice.stage, "account_id": chain.account_id,
            "chain_id": chain.id, "names": list(chain.dns_names), "purpose": chain.purpose,
            "origin": chain.origin,
            "not_after": chain.not_after.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}


class Lifecycle:
    """One worker's lifecycle task (see the module docstring)."""

    def __init__(self, store: CertStore, config: LifecycleConfig, metrics: Metrics, *,
                 holder: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._config = config
        self._metrics = metrics
        self._holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._renewals: dict[str, _Retry] = {}
        self._delivering: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Check now, then every ``check_interval``, until cancelled."""
        try:
            while True:
                try:
                    await self.check()
                except CertStoreError as e:  # the store said no: try again next time
                    log.error("lifecycle check failed: %s", e)
                except Exception:
                    log.exception("lifecycle check failed")
                await asyncio.sleep(self._config.check_interval_s)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def check(self) -> None:
        """One look: count statuses; under the lease, renew what is due and send notices."""
        self._metrics.chain_status = await self._store.status_counts()
        ttl = max(dt.timedelta(seconds=3 * self._config.check_interval_s), MIN_LEASE)
        if not await self._store.claim_lease(LEASE, self._holder, ttl):
            return
        with acting_as(LIFECYCLE_ACTOR):
            for chain in await self._store.due_renewals():
                await self._renew(chain)
            for notice in await self._store.due_notices():
                key = (notice.chain.id, notice.stage)
                if key not in self._delivering:
                    self._delivering.add(key)
                    task = asyncio.create_task(self._deliver(notice))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _renew(self, chain: Chain) -> None:
        retry = self._renewals.setdefault(chain.id, _Retry())
        if self._clock() < retry.not_before:
            return
        try:
            new = await self._store.renew_chain(chain.id)
        except (Conflict, NotFound):
            self._renewals.pop(chain.id, None)  # renewed or deleted by someone else
            return
        except Exception as e:
            retry.failures += 1
            retry.not_before = self._clock() + backoff_s(retry.failures)
            self._metrics.lifecycle[("renewal", "failed")] += 1
            log.error("renewal of chain %s (account %s, %s) failed %d time(s), next try in "
                      "%.0f s: %s", chain.id, chain.account_id, ", ".join(chain.dns_names)
                      or chain.purpose, retry.failures, backoff_s(retry.failures), e)
            return
        self._renewals.pop(chain.id, None)
        self._metrics.lifecycle[("renewal", "ok")] += 1
        log.info("renewed chain %s as %s (account %s, %s), valid until %s", chain.id, new.id,
                 chain.account_id, ", ".join(chain.dns_names) or chain.purpose,
                 new.not_after.isoformat())

    async def _deliver(self, notice: Notice) -> None:
        chain = notice.chain
        log.warning("chain %s of account %s (%s) %s: not after %s", chain.id, chain.account_id,
                    ", ".join(chain.dns_names) or chain.purpose,
                    "has expired" if notice.stage == "expired" else "expires soon",
                    chain.not_after.isoformat())
        url = self._config.webhook_url
        failures = 0
        try:
            while url is not None:
                try:
                    await self._post(url, notice)
                    break
                except Exception as e:
                    failures += 1
                    self._metrics.lifecycle[("notice", "failed")] += 1
                    log.warning("expiry webhook for chain %s failed (%d): %s; retrying in "
                                "%.0f s", chain.id, failures, e, backoff_s(failures))
                    await asyncio.sleep(backoff_s(failures))
            with acting_as(LIFECYCLE_ACTOR):
                await self._store.record_notice(
                    notice, f"webhook={'delivered' if url else 'none'}")
            self._metrics.lifecycle[("notice", "ok")] += 1
        finally:
            self._delivering.discard((chain.id, notice.stage))

    async def _post(self, url: str, notice: Notice) -> None:
        # aiohttp's client is imported here, by the one task that uses it.
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self._config.webhook_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                url, json=notice_body(notice)) as response:
            if response.status >= 300:
                raise RuntimeError(f"the receiver answered {response.status}")

    async def close(self) -> None:
        """Cancel deliveries in flight (their notices are sent again after a restart)."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
