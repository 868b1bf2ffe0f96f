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
  429 at once instead of piling up (each tenant's share is bounded by the mutation limits);
* every job may use at most ``admin.crypto_job_timeout_s`` seconds of CPU (see below).

**The per-job CPU limit.** Some work cannot be counted before it is done: the key bags of a
PKCS#12 file's *encrypted* safes (and their iteration counts) are only seen once the safe is
decrypted, inside ``cryptography``'s one ``load_pkcs12`` call, which no Python code can
interrupt. So the kernel bounds each job: the worker arms ``RLIMIT_CPU`` at the start of a
job (soft limit = its CPU time so far + the limit) and disarms it after; a job that goes
over is killed by ``SIGXCPU`` wherever it is, native code included (the limit is in whole
seconds, rounded up: a job gets the limit plus less than a second). CPU time, not wall time,
is the measure: a worker at ``SCHED_IDLE`` on a busy machine may wait long for a core
without having done any work. The parent tells a cut job from a crash by the dead worker's
exit signal and the job each worker had started (a small shared table):

* the cut job fails: a job that reads an upload with ``InvalidCertificate`` (a 422; an
  import's rule is ``pkcs12-work-budget``), any other with ``Unavailable``
  (``job-too-long``, a 503);
* the other jobs of the broken pool (running or queued; jobs are pure functions, nothing is
  stored until they return) run again once on a fresh pool, so they complete; a second
  break answers them 503 (``worker-lost``, retryable).

Jobs and their results cross a pipe (pickle): decrypted keys travel in memory as DER bytes,
never through a file, and nothing here logs arguments or results; workers never write a
core file (``RLIMIT_CORE`` 0: their memory holds decrypted keys). A worker that dies
otherwise (out of memory, a crash in native code) breaks the pool: its jobs fail with a 503
and the next job starts a new pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import multiprocessing
import os
import resource
import signal
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

from certstore.errors import InvalidCertificate
from certstore.pkcs12_walk import RULE
from gateway.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger("certgate.admin.workers")
WORKER_NICE = 10
"""How much lower the workers' CPU priority is than the serving process's."""
DEFAULT_JOB_TIMEOUT_S = 10.0
"""CPU seconds one job may use (``admin.crypto_job_timeout_s``)."""
# Jobs whose work is set by an uploaded file: when one is cut, the file is at fault (422).
_INPUT_JOBS: Mapping[str, tuple[str, str]] = {
    "prepare_import": (RULE, "the file needs more work than allowed to open ({limit:g} s of "
                             "CPU; encrypted safes may hide key bags with huge key-derivation "
                             "iteration counts); nothing was stored: export it again with "
                             "default settings (about 2,048 iterations per item)"),
    "read_certificates_job": ("too-large", "the file needs more work than allowed to read "
                                           "({limit:g} s of CPU); nothing was stored"),
}


def _busy(queued: int) -> Unavailable:
    return Unavailable(f"the gateway's crypto workers are busy ({queued} jobs queued); retry "
                       "in a moment", code="too-many-requests", http_status=429)


def _lost() -> Unavailable:
    return Unavailable("the worker running this request stopped unexpectedly; nothing was "
                       "stored, retry the request", code="worker-lost", http_status=503)


def _cut(name: str, limit_s: float) -> Exception:
    """The error of a job the CPU limit stopped (see module doc)."""
    if name in _INPUT_JOBS:
        rule, message = _INPUT_JOBS[name]
        return InvalidCertificate(message.format(limit=limit_s), rule=rule)
    return Unavailable(f"this request needed more than {limit_s:g} s of CPU in a crypto "
                       "worker and was stopped; nothing was stored", code="job-too-long",
                       http_status=503)


# -- in the worker process ----------------------------------------------------------------------

_table: Any = None  # the pool's shared table: [pid, running job id] per worker
_slot = -1


def _child_init(table: Any, lowest_priority: bool = True) -> None:
    # Lowest priority: the serving process must win a contended core (see module doc).
    # SCHED_IDLE (Linux) runs the worker only on CPU time nothing else at a normal
    # priority wants; the nice value is the fallback where that policy is not available.
    if lowest_priority:
        with contextlib.suppress(OSError):
            os.nice(WORKER_NICE)
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    # A worker holds decrypted keys: a job killed by its CPU limit must not dump them.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # SIGXCPU must kill (its default): a Python handler would only run once the native
    # call that overran returns.
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    global _table, _slot
    with table.get_lock():
        _slot = next(i for i in range(0, len(table), 2) if table[i] == 0)
        table[_slot] = os.getpid()
    _table = table


def _limited(job: int, limit_s: float, fn: Callable[..., T], kwargs: dict[str, object]) -> T:
    """Run ``fn(**kwargs)`` with at most ``limit_s`` more seconds of CPU for this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + limit_s)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    _table[_slot + 1] = job
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    try:
        return fn(**kwargs)
    finally:
        # Disarmed between jobs: an idle worker's CPU time must not count against the next.
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        _table[_slot + 1] = 0


# -- in the serving process ---------------------------------------------------------------------


@dataclass(eq=False)
class _Pool:
    """One process pool, its shared table, and (once broken) the jobs its limit cut."""

    executor: ProcessPoolExecutor
    table: Any
    cut: asyncio.Future[frozenset[int]] | None = field(default=None)


def _cut_jobs(pool: _Pool) -> frozenset[int]:
    """Stop a broken pool (joining its workers) and name the jobs killed by ``SIGXCPU``."""
    # The workers' Process objects (shutdown() drops the executor's map of them); their
    # exit codes are final once shutdown() has joined every worker.
    processes: Mapping[int, Any] = dict(getattr(pool.executor, "_processes", None) or {})
    pool.executor.shutdown(wait=True, cancel_futures=True)
    killed = {pid for pid, p in processes.items() if p.exitcode == -signal.SIGXCPU}
    table = list(pool.table)
    return frozenset(table[i + 1] for i in range(0, len(table), 2)
                     if table[i] in killed and table[i + 1])


class ProcessOffload:
    """An :class:`~certstore.offload.Offload` over a lazily created process pool, each job
    bounded to ``job_timeout_s`` seconds of CPU."""

    def __init__(self, workers: int, *, queue: int,
                 job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
                 lowest_priority: bool = True) -> None:
        """``lowest_priority=False`` keeps the workers at the serving process's priority: on
        a machine whose cores are always busy, ``SCHED_IDLE`` work may wait for minutes."""
        if workers < 1 or queue < 1:
            raise ValueError("workers and queue must be at least 1")
        if job_timeout_s <= 0:
            raise ValueError("job_timeout_s must be positive")
        self.workers = workers
        self.queue = queue
        self.job_timeout_s = job_timeout_s
        self.lowest_priority = lowest_priority
        self._pool: _Pool | None = None
        self._closed = False
        self._pending = 0
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)
        self.jobs: Counter[str] = Counter()
        """Jobs finished in a worker, by function name (for tests and metrics)."""
        self.cut: Counter[str] = Counter()
        """Jobs stopped by the CPU limit, by function name."""
        self.retried: Counter[str] = Counter()
        """Jobs run again because another job's overrun broke their pool, by name."""

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished (running or queued)."""
        return self._pending

    async def _executor(self) -> _Pool:
        async with self._starting:
            if self._closed:  # a job that waited past close() must not start a new pool
                raise _lost()
            if self._pool is None:
                # Started in a thread: the first worker waits for the fork server to start
                # and import its modules (about a second), and ProcessPoolExecutor starts
                # workers in the thread that submits; the loop must not wait for either.
                self._pool = await asyncio.to_thread(self._start)
            return self._pool

    def _start(self) -> _Pool:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported what jobs need (not __main__).
        context.set_forkserver_preload(["certstore.offload", "gateway.admin.workers"])
        table = context.Array("q", 2 * self.workers)
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                   initializer=_child_init,
                                   initargs=(table, self.lowest_priority))
        # One job per worker, all submitted from this thread, so that the workers are
        # started here (later forks from the warm server take milliseconds).
        for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
            future.result()
        return _Pool(executor=pool, table=table)

    async def run(self, fn: Callable[..., T], /, **kwargs: object) -> T:
        """``fn(**kwargs)`` in a worker process; the loop awaits it without blocking.

        A job over the CPU limit raises :func:`_cut`'s error; a job lost with a pool that
        another job's overrun broke runs once more on a fresh pool.
        """
        if self._pending >= self.workers + self.queue:
            raise _busy(self._pending - self.workers)
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            for attempt in (1, 2):
                pool = await self._executor()
                job = next(self._ids)
                call = functools.partial(_limited, job, self.job_timeout_s, fn, kwargs)
                try:
                    result = await loop.run_in_executor(pool.executor, call)
                except BrokenProcessPool:
                    cut = await self._broken(pool)
                    if job in cut:
                        self.cut[fn.__name__] += 1
                        log.warning("a crypto job (%s) was stopped at its CPU limit (%g s)",
                                    fn.__name__, self.job_timeout_s)
                        raise _cut(fn.__name__, self.job_timeout_s) from None
                    if cut and attempt == 1:
                        # An innocent job of a pool another job's overrun broke.
                        self.retried[fn.__name__] += 1
                        continue
                    log.error("a crypto worker died; starting a new pool for the next job")
                    raise _lost() from None
                self.jobs[fn.__name__] += 1
                return result
            raise AssertionError("unreachable")
        finally:
            self._pending -= 1

    async def _broken(self, pool: _Pool) -> frozenset[int]:
        """The jobs the CPU limit cut in a broken pool, found once per pool (off the loop)."""
        if self._pool is pool:
            self._pool = None  # the next job starts a new pool at once
        if pool.cut is None:
            pool.cut = asyncio.ensure_future(asyncio.to_thread(_cut_jobs, pool))
        return await asyncio.shield(pool.cut)

    async def close(self) -> None:
        """Stop the workers (running jobs are finished first; queued ones are dropped)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.executor.shutdown, wait=True, cancel_futures=True)
