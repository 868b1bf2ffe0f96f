"""Harness side of the SNI recorder: start ``sni_server.py`` and read what it saw."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.certs import CertFiles
from tests.support.netns import NetNamespace
from tests.support.process import ManagedProcess, wait_for

SERVER_SCRIPT = Path(__file__).with_name("sni_server.py")


class SniRecorder:
    """A TLS server (in ``netns``, or on the host if None) recording SNI and request heads.

    Inside a namespace it listens on ``0.0.0.0`` (of that namespace), so it is reachable both
    via tenant names (198.51.100.10) and via 127.0.0.1; on the host only on 127.0.0.1.
    Every request gets an IPP ``server-error-service-unavailable`` answer. ``tickets`` is the
    number of TLS 1.3 session tickets sent per handshake: 0 by default because libcups 2.4
    (GnuTLS) loops forever reconnecting when it receives any.
    """

    def __init__(
        self,
        workdir: Path,
        cert: CertFiles,
        netns: NetNamespace | None = None,
        *,
        host: str | None = None,
        port: int = 0,
        tickets: int = 0,
    ) -> None:
        self.workdir = workdir
        self.cert = cert
        self.netns = netns
        self.host = host or ("0.0.0.0" if netns is not None else "127.0.0.1")
        self.events_path = workdir / "sni-events.jsonl"
        self.port_file = workdir / "sni-port"
        self._requested_port = port
        self.tickets = tickets
        self._port: int | None = None
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 15.0) -> Self:
        """Start the server and wait until it reports its port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--cert",
            str(self.cert.cert),
            "--key",
            str(self.cert.key),
            "--host",
            self.host,
            "--port",
            str(self._requested_port),
            "--events",
            str(self.events_path),
            "--port-file",
            str(self.port_file),
            "--tickets",
            str(self.tickets),
        ]
        log_path = self.workdir / "sni-server.log"
        if self.netns is not None:
            self.process = self.netns.start_process("sni-server", argv, log_path=log_path)
        else:
            self.process = ManagedProcess("sni-server", argv, log_path=log_path)
        wait_for(
            self.port_file.exists,
            timeout=timeout,
            what="SNI recorder port file",
            alive=self.process.check_alive,
        )
        self._port = int(self.port_file.read_text())
        return self

    @property
    def port(self) -> int:
        """The port the recorder listens on."""
        if self._port is None:
            raise RuntimeError("SNI recorder not started")
        return self._port

    def events(self) -> list[dict[str, Any]]:
        """Every connection recorded so far (one dict per connection, in order)."""
        try:
            text = self.events_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` connections were recorded; return all events.

        Events are written after the server answered, so a client that has returned may be
        a few milliseconds ahead of the file.
        """
        alive = self.process.check_alive if self.process is not None else None
        wait_for(
            lambda: len(self.events()) >= count,
            timeout=timeout,
            what=f"{count} recorded TLS connection(s)",
            alive=alive,
        )
        return self.events()

    def snis(self) -> list[str | None]:
        """SNI of every recorded connection (None: no SNI sent)."""
        return [event.get("sni") for event in self.events()]

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
