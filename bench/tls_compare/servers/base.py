"""The interface every compared server implements, and helpers they share.

To add a server (certgate, say) as a new column, subclass :class:`Server`, implement its
abstract methods (``available``, ``version``, ``prepare``, ``start``, ``stop``, ``pids``,
``apply_chain_change``) and register the class in ``tls_compare.servers.REGISTRY`` (or pass
``--server-class module:Class`` to ``bench/compare.py``). The adapter launches its processes
under ``pinned(cmd, self.cpus)`` (``taskset -c``); the harness does everything else: it times
start-up until a handshake for the *last* tenant returns that tenant's own leaf, reads CPU
and memory of the process trees rooted at ``pids()`` from /proc around each load run, and
calls ``stop`` after each configuration (also after a failure).
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..certs import Tenant, TenantSet


@dataclass(frozen=True)
class Upstream:
    """The plain-HTTP upstream every proxy forwards to.

    ``GET <any path>`` answers ``ok``; a request with a body (``POST /upload``) is read to
    its end and answered ``ok <bytes received>``. HTTP/1.1 keep-alive.
    """

    host: str
    port: int

    @property
    def addr(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.addr}"


@dataclass(frozen=True)
class ChainChange:
    """What a server did to take a changed chain into service."""

    method: str
    durable: bool
    command_s: float


class ServerError(RuntimeError):
    """A server failed to start, stop or take a change."""


class Server(abc.ABC):
    """A TLS-terminating reverse proxy under test.

    One instance serves one configuration at a time: ``prepare``, ``start``, ``stop``, possibly
    several times with different tenant sets. ``workdir`` is a fresh directory the server
    may use freely (configs, logs, sockets, its own copies of certificates); ``cpus`` is
    the ``taskset -c`` list its processes must run on.
    """

    name: ClassVar[str]

    def __init__(self, workdir: Path, cpus: str | None) -> None:
        """Remember where the server may write and which CPUs it runs on."""
        self.workdir = workdir
        self.cpus = cpus
        workdir.mkdir(parents=True, exist_ok=True)

    @classmethod
    @abc.abstractmethod
    def available(cls) -> str | None:
        """None if the server can run here, else why not (missing binary, say)."""

    @abc.abstractmethod
    def version(self) -> str:
        """One line naming the server's version (and its TLS library)."""

    @abc.abstractmethod
    def prepare(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """Write whatever ``start`` needs (configuration, certificate files, a store import).

        Not timed: this stands for the state a server is in before a restart. Stop any
        previous instance first.
        """

    @abc.abstractmethod
    def start(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """Start serving every tenant's chain on ``127.0.0.1:port``, proxying to ``upstream``.

        Called right after ``prepare`` with the same arguments. The first tenant's chain is
        the default (no SNI, unknown SNI). Return as soon as the processes are launched or
        when the server is ready, either is fine: the harness times from just before this
        call until a handshake for the last tenant presents that tenant's leaf.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process of the server; idempotent."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Root pids of the server's process tree(s); descendants are found by the harness."""

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's log, for error messages (optional)."""
        return ""

    def prepare_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> None:
        """Untimed: what the operator has in hand before the change starts (a PKCS#12 file
        to upload, an open admin connection). Nothing by default."""
        return None

    @abc.abstractmethod
    def apply_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> ChainChange:
        """Make the server serve a new chain for ``tenant`` (the way an operator would).

        ``chain_pem`` is the new leaf then the intermediate, ``key_pem`` the new key. The
        harness times from just before this call to the first handshake that presents the
        new leaf, with a poller already running; the call may return before or after that.
        """


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30) -> None:
    """Send ``sig`` to ``proc``, wait up to ``timeout`` s, then SIGKILL its process group."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def launch(cmd: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy across file systems).

    Servers keep their own view of the tenant files: a chain change replaces the server's
    file (write and rename), which breaks the link and leaves the shared set untouched.
    """
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data`` (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a text file, joined with " | " ("" if missing)."""
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
