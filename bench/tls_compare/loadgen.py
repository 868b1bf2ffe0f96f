"""Build and drive the Go load generator of ``bench/loadgen``.

The Go program uses the standard library only; it is built with the Debian ``golang-go``
toolchain, GOCACHE/GOPATH in a temporary directory and the module proxy off (nothing is
downloaded).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE_DIR = Path(__file__).resolve().parent.parent / "loadgen"
GO_HOME = Path("/tmp/certgate-bench-go")


class LoadgenError(RuntimeError):
    """The load generator failed or printed something unexpected."""


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` run under ``taskset -c cpus`` (unchanged when ``cpus`` is None)."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def build(out_dir: Path) -> Path:
    """Compile the load generator into ``out_dir`` and return the binary's path."""
    go = shutil.which("go")
    if go is None:
        raise LoadgenError("`go` not found: apt-get install golang-go")
    env = dict(os.environ)
    env.update(
        GOCACHE=str(GO_HOME / "cache"),
        GOPATH=str(GO_HOME / "path"),
        GOPROXY="off",
        GOFLAGS="",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
    )
    binary = out_dir / "loadgen"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LoadgenError(f"go build failed:\n{proc.stderr}")
    return binary


def _parse_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


class Loadgen:
    """Runs the compiled load generator pinned to the load generator's CPUs."""

    def __init__(self, binary: Path, cpus: str | None, addr: str, max_tls: str = "1.3") -> None:
        """Use ``binary``, pinned to ``cpus``, against the server at ``addr``."""
        self.binary = binary
        self.cpus = cpus
        self.addr = addr
        self.max_tls = max_tls

    def command(self, mode: str, *args: str) -> list[str]:
        """The full command line of one mode."""
        base = [str(self.binary), "-mode", mode, "-addr", self.addr, "-max-tls", self.max_tls]
        return pinned([*base, *args], self.cpus)

    def run(self, mode: str, *args: str, timeout: float) -> dict[str, Any]:
        """Run one mode to its end and return its last JSON line."""
        proc = subprocess.run(
            self.command(mode, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = _parse_lines(proc.stdout)
        if not lines:
            raise LoadgenError(
                f"loadgen {mode} exited {proc.returncode} without a result: {proc.stderr.strip()}"
            )
        result = lines[-1]
        result["exit_code"] = proc.returncode
        if proc.stderr.strip():
            result["stderr"] = proc.stderr.strip()[-500:]
        return result

    def spawn(self, mode: str, *args: str) -> subprocess.Popen[str]:
        """Start a mode in the background (its stdout is a pipe of JSON lines)."""
        return subprocess.Popen(
            self.command(mode, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def read_event(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Read the next JSON line a spawned mode prints (blocks)."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise LoadgenError(f"loadgen ended without an event: {err.strip()}")
        line = line.strip()
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
