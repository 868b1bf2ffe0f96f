"""``certgate serve``: run the gateway, in one process or N workers sharing the ports.

The only command that imports the gateway (aiohttp, the TLS stack): inside its function, so
that the store commands start without it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from gateway.cli.common import CliState, emit, fail, json_option, pass_state

if TYPE_CHECKING:
    import subprocess
    from types import FrameType

WORKER_DIR_ENV = "CERTGATE_WORKER_DIR"
"""Where the workers publish their metrics for each other (``gateway.workershare.ENV``)."""


def _run_one(state: CliState) -> None:
    import asyncio

    from certstore.errors import CertStoreError
    from gateway.config import find_config
    from gateway.errors import GatewayError
    from gateway.server import serve

    path = find_config(state.config_path)
    try:
        config = state.config()
    except GatewayError as e:  # a bad config (a bad database URL...) is one error line
        fail(str(e))
    try:
        import uvloop  # optional: a faster event loop where installed
    except ImportError:
        runner = asyncio.Runner()
    else:
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    try:
        with runner:
            runner.run(serve(config, config_path=path))
    except (CertStoreError, GatewayError) as e:
        fail(str(e))


def _run_workers(state: CliState, workers: int) -> None:
    import shutil
    import subprocess
    import tempfile

    state.config()  # fail here, once, on a bad config
    argv = [sys.executable, "-m", "gateway.cli"]
    if state.config_path:
        argv += ["--config", state.config_path]
    argv += ["serve", "--workers", "1"]
    share_dir = tempfile.mkdtemp(prefix="certgate-workers-")
    env = {**os.environ, WORKER_DIR_ENV: share_dir}
    try:
        _supervise([subprocess.Popen(argv, env=env) for _ in range(workers)])
    finally:
        shutil.rmtree(share_dir, ignore_errors=True)


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    """Forward SIGTERM/SIGINT/SIGHUP to the workers and wait for all of them."""
    import signal

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    if any(codes):
        fail(f"worker exit codes: {codes}")


@click.command("serve")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sharing the ports (SO_REUSEPORT), each following the store.")
@json_option
@pass_state
def serve_cmd(state: CliState, workers: int, as_json: bool) -> None:
    """Terminate TLS on every configured listener until SIGTERM.

    With ``--json`` the final line on stdout is ``{"stopped": true, ...}`` (the logs go to
    stderr either way).
    """
    import logging

    logging.basicConfig(level=os.environ.get("CERTGATE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if workers == 1:
        _run_one(state)
    else:
        _run_workers(state, workers)
    emit({"stopped": True, "workers": workers}, as_json, "")
