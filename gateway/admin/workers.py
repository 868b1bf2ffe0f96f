"""The crypto worker pool: admin requests' heavy work, outside the serving process's GIL.

PKCS#12 decryption, key generation and signing hold the GIL for as long as they run; in a
thread they would stall every tenant's handshakes (issue 10 measured 5 s for one crafted
upload). The store's :class:`~certstore.offload.Offload` is therefore a process pool here:

* ``forkserver`` children: started from a clean server process, so they inherit neither
  the listening sockets nor the gateway's threads, and start faster than ``spawn``;
* bounded (``admin.crypto_workers``), created on first use (a gateway whose admin API is
  never used starts no process), shut down with the gateway;
* children run at the lowest CPU priority (Linux ``SCHED_IDLE``, else ``nice`` +10): when
  a core is wanted both by a handshake and by an import, the handshake gets it;
* at most ``admin.crypto_queue`` jobs wait for a worker; past that a request is answered
  429 at once instead of piling up (each tenant's share is bounded by the mutation limits).

Jobs and their results cross a pipe (pickle): decrypted keys travel in memory as DER bytes,
never through a file, and nothing here logs arguments or results. A worker that dies (out
of memory, a crash in native code) breaks the pool: the job fails with a 503 and the next
job starts a new pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from gateway.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger("certgate.admin.workers")
WORKER_NICE = 10
"""How much lower the workers' CPU priority is than the serving process's."""


def _busy(queued: int) -> Unavailable:
    return Unavailable(f"the gateway's crypto workers are busy ({queued} jobs queued); retry "
                       "in a moment", code="too-many-requests", http_status=429)


def _lost() -> Unavailable:
    return Unavailable("the worker running this request stopped unexpectedly; nothing was "
                       "stored, retry the request", code="worker-lost", http_status=503)


def _child_init() -> None:
    # Lowest priority: the serving process must win a contended core (see module doc).
    # SCHED_IDLE (Linux) runs the worker only on CPU time nothing else at a normal
    # priority wants; the nice value is the fallback where that policy is not available.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class ProcessOffload:
    """An :class:`~certstore.offload.Offload` over a lazily created process pool."""

    def __init__(self, workers: int, *, queue: int) -> None:
        if workers < 1 or queue < 1:
            raise ValueError("workers and queue must be at least 1")
        self.workers = workers
        self.queue = queue
        self._pool: ProcessPoolExecutor | None = None
        self._pending = 0
        self._starting = asyncio.Lock()
        self.jobs: Counter[str] = Counter()
        """Jobs finished in a worker, by function name (for tests and metrics)."""

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (running or queued)."""
        return self._pending

    async def _executor(self) -> Executor:
        async with self._starting:
            if self._pool is None:
                # Started in a thread: the first worker waits for the fork server to start
                # and import its modules (about a second), and ProcessPoolExecutor starts
                # workers in the thread that submits; the loop must not wait for either.
                self._pool = await asyncio.to_thread(self._start)
            return self._pool

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported what jobs need (not __main__).
        context.set_forkserver_preload(["certstore.offload"])
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                   initializer=_child_init)
        # One job per worker, all submitted from this thread, so that the workers are
        # started here (later forks from the warm server take milliseconds).
        for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
            future.result()
        return pool

    async def run(self, fn: Callable[..., T], /, **kwargs: object) -> T:
        """``fn(**kwargs)`` in a worker process; the loop awaits it without blocking."""
        if self._pending >= self.workers + self.queue:
            raise _busy(self._pending - self.workers)
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            pool = await self._executor()
            result = await loop.run_in_executor(pool, functools.partial(fn, **kwargs))
            self.jobs[fn.__name__] += 1
            return result
        except BrokenProcessPool:
            log.error("a crypto worker died; starting a new pool for the next job")
            self._discard()
            raise _lost() from None
        finally:
            self._pending -= 1

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the workers (running jobs are finished first; queued ones are dropped)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
