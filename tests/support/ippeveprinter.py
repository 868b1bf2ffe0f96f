"""Run CUPS ``ippeveprinter`` (a real IPP Everywhere printer) as a plain-HTTP IPP upstream.

ippeveprinter refuses to start without DNS-SD ("Unable to initialize DNS-SD", even with
``-r off``), so each instance gets its own stack:

* a private D-Bus bus (``dbus-daemon --session`` on a unix socket in a temp dir), exported to
  avahi and ippeveprinter as ``DBUS_SYSTEM_BUS_ADDRESS``;
* ``avahi-daemon`` on that bus, started through ``unshare --net --mount`` so that it has its
  own empty network (no mDNS socket anywhere visible, nothing announced outside) and its own
  ``/run/avahi-daemon`` (pid file and socket; a second instance or a system avahi would
  otherwise collide on them);
* ``ippeveprinter -n localhost -p PORT -d SPOOL -k -c /bin/true -f FORMATS NAME``. ``-k``
  keeps job files (so tests can compare sha256), ``-c /bin/true`` finishes every job at once.

With ``-n localhost`` it listens on 127.0.0.1 and ::1 only, and answers ``400 Bad Request``
("Bad Host" in its log) to a ``Host`` header that is not ``localhost`` or an IP literal
(even ``localhost``'s own alias ``printer.example`` is refused).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.netns import NetNamespace
from tests.support.process import ManagedProcess, require_binary, require_root, tail, wait_for

DEFAULT_FORMATS = ("application/pdf", "text/plain", "application/octet-stream")

AVAHI_CONF = """\
# avahi-daemon config for a test printer: D-Bus only, nothing published but the service.
[server]
use-ipv6=no
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-addresses=no
publish-hinfo=no
publish-workstation=no
"""

# Runs inside a fresh net+mount namespace: bring lo up (avahi wants one interface), give
# avahi a private /run/avahi-daemon, then exec it so the pid we track is avahi's own.
_AVAHI_WRAPPER = (
    'set -e; "$1" link set lo up; mkdir -p /run/avahi-daemon; '
    '"$2" --bind "$3" /run/avahi-daemon; '
    'exec "$4" -f "$5" --no-drop-root --no-chroot --no-rlimits --no-proc-title'
)

_JOB_FILE = re.compile(r"^(\d+)-")


def _local_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class IppEvePrinter:
    """An ippeveprinter with its private D-Bus and avahi, in ``netns`` (or the host if None).

    Use as a context manager or call :meth:`start` / :meth:`stop`. Logs of the three daemons
    go to ``workdir/logs/*.log`` and are included in start-up errors.
    """

    def __init__(
        self,
        workdir: Path,
        netns: NetNamespace | None = None,
        *,
        name: str = "Certgate Test Printer",
        port: int | None = None,
        formats: Sequence[str] = DEFAULT_FORMATS,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        self.workdir = workdir
        self.netns = netns
        self.name = name
        self.formats = tuple(formats)
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.spool_dir = workdir / "spool"
        self.log_dir = workdir / "logs"
        self.home = workdir / "home"
        self._requested_port = port
        self._port: int | None = None
        self._procs: list[ManagedProcess] = []
        self._bus_dir: Path | None = None
        self.printer: ManagedProcess | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Self:
        """Start D-Bus, avahi and ippeveprinter; return once the printer accepts TCP."""
        if self.printer is not None:
            return self
        require_root()
        dbus_daemon = require_binary("dbus-daemon")
        avahi_daemon = require_binary("avahi-daemon")
        ippeveprinter = require_binary("ippeveprinter")
        unshare, sh = require_binary("unshare"), require_binary("sh")
        ip, mount, true = require_binary("ip"), require_binary("mount"), require_binary("true")
        for directory in (self.spool_dir, self.log_dir, self.home, self.workdir / "avahi-run"):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            # A unix socket path must stay under ~108 bytes; pytest tmp paths can be longer.
            self._bus_dir = Path(tempfile.mkdtemp(prefix="cg-bus-"))
            bus_socket = self._bus_dir / "bus.sock"
            env = dict(os.environ)
            env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={bus_socket}"
            env["HOME"] = str(self.home)  # keep libcups from touching root's ~/.cups

            dbus = self._spawn(
                "dbus-daemon",
                [
                    dbus_daemon,
                    "--session",
                    "--nofork",
                    "--nopidfile",
                    f"--address=unix:path={bus_socket}",
                ],
                env,
            )
            wait_for(
                bus_socket.exists,
                timeout=self.startup_timeout,
                what="D-Bus socket",
                alive=dbus.check_alive,
            )

            avahi_conf = self.workdir / "avahi-daemon.conf"
            avahi_conf.write_text(AVAHI_CONF)
            avahi = self._spawn(
                "avahi-daemon",
                [
                    unshare,
                    "--net",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    sh,
                    "-c",
                    _AVAHI_WRAPPER,
                    "sh",
                    ip,
                    mount,
                    str(self.workdir / "avahi-run"),
                    avahi_daemon,
                    str(avahi_conf),
                ],
                env,
            )
            wait_for(
                lambda: "Server startup complete" in avahi.log_text(),
                timeout=self.startup_timeout,
                what="avahi-daemon start-up",
                alive=avahi.check_alive,
            )

            if self._requested_port is not None:
                self._port = self._requested_port
            elif self.netns is not None:
                self._port = self.netns.free_port()
            else:
                self._port = _local_free_port()
            argv = [
                ippeveprinter,
                "-n",
                "localhost",
                "-p",
                str(self._port),
                "-d",
                str(self.spool_dir),
                "-k",
                "-c",
                true,
                "-f",
                ",".join(self.formats),
                *self.extra_args,
                self.name,
            ]
            self.printer = self._spawn("ippeveprinter", argv, env)
            self._wait_ready(self.printer)
        except BaseException as exc:
            logs = self.logs_text()
            self.stop()
            if isinstance(exc, Exception):
                raise RuntimeError(f"ippeveprinter stack failed to start: {exc}\n{logs}") from exc
            raise
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        if self.netns is not None:
            proc = self.netns.start_process(name, argv, env=env, log_path=log_path)
        else:
            proc = ManagedProcess(name, argv, log_path=log_path, env=env)
        self._procs.append(proc)
        return proc

    def _wait_ready(self, proc: ManagedProcess) -> None:
        port = self.port
        if self.netns is not None:
            self.netns.wait_for_port("127.0.0.1", port, timeout=self.startup_timeout, proc=proc)
        else:
            wait_for(
                lambda: _local_port_open(port),
                timeout=self.startup_timeout,
                interval=0.05,
                what=f"ippeveprinter on 127.0.0.1:{port}",
                alive=proc.check_alive,
            )

    def stop(self) -> None:
        """Stop the printer, avahi and D-Bus (in that order) and remove the bus directory."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        self.printer = None
        if self._bus_dir is not None:
            shutil.rmtree(self._bus_dir, ignore_errors=True)
            self._bus_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """TCP port ippeveprinter listens on (127.0.0.1 and ::1)."""
        if self._port is None:
            raise RuntimeError("ippeveprinter not started")
        return self._port

    host = "127.0.0.1"

    @property
    def uri(self) -> str:
        """``ipp://localhost:PORT/ipp/print``: the printer's own URI."""
        return self.uri_for("localhost")

    def uri_for(self, host: str, scheme: str = "ipp") -> str:
        """Printer URI with another host (must resolve to loopback for a direct connection)."""
        return f"{scheme}://{host}:{self.port}/ipp/print"

    @property
    def http_upstream(self) -> str:
        """The upstream URL a gateway route would use: ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ results
    def spooled_files(self) -> list[Path]:
        """Kept job documents (``N-jobname.ext``), by job id; the ``.prn`` outputs excluded."""
        jobs: list[tuple[int, Path]] = []
        for path in self.spool_dir.iterdir():
            match = _JOB_FILE.match(path.name)
            if match and path.is_file() and path.suffix != ".prn":
                jobs.append((int(match.group(1)), path))
        return [path for _, path in sorted(jobs)]

    def spooled_sha256(self) -> dict[str, str]:
        """``{file name: sha256}`` of every kept job document."""
        return {path.name: sha256_file(path) for path in self.spooled_files()}

    def log_text(self, limit: int = 8000) -> str:
        """End of ippeveprinter's own log (request lines, 'Bad Host', job progress)."""
        return tail(self.log_dir / "ippeveprinter.log", limit)

    def logs_text(self, limit: int = 3000) -> str:
        """End of every daemon log of this stack, for assertion messages."""
        parts = []
        for name in ("dbus-daemon", "avahi-daemon", "ippeveprinter"):
            path = self.log_dir / f"{name}.log"
            if path.exists():
                parts.append(f"--- {path} ---\n{tail(path, limit)}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"<IppEvePrinter {self.name!r} port={self._port} netns={self.netns!r}>"
