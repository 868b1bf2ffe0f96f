"""The event-loop blocking guard of tests/conftest.py: real blocking fails, a busy machine not."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from tests.conftest import _BlockWatch


async def test_a_blocking_call_is_caught() -> None:
    loop = asyncio.get_running_loop()
    with _BlockWatch(0.1) as watch:
        done = loop.create_future()
        loop.call_soon(lambda: (time.sleep(0.3), done.set_result(None)))
        await done
    assert len(watch.messages) == 1 and "blocked the loop" in watch.messages[0]


def _spin(cpu_s: float) -> float:
    """Burn ``cpu_s`` of this thread's CPU time; the wall time it took."""
    wall, start = time.monotonic(), time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass
    return time.monotonic() - wall


async def test_waiting_for_a_cpu_is_not_blocking() -> None:
    """A callback preempted by another process on its core is slow on the wall clock, not
    blocking: a CPU hog with a higher priority shares this thread's only CPU."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen(["nice", "-n", "-10", "taskset", "-c", str(cpu), sys.executable,
                            "-c", "while True: pass"])
    os.sched_setaffinity(0, {cpu})
    try:
        loop = asyncio.get_running_loop()
        walls: list[float] = []
        with _BlockWatch(0.15) as watch:
            done = loop.create_future()
            loop.call_soon(lambda: (walls.append(_spin(0.05)), done.set_result(None)))
            await done
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait()
    assert walls[0] > 0.15, "the hog did not preempt the callback: the test proves nothing"
    assert watch.messages == []
