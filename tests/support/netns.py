"""A private network + mount namespace for end-to-end tests with real clients.

Why: libcups (``ipptool``) sends SNI ``localhost`` and ``Host: localhost`` whenever the server
address is in 127.0.0.0/8 or ::1, so a tenant name can only be tested against a non-loopback
address. As root we create a namespace whose ``lo`` also carries 198.51.100.10 (TEST-NET-2) and
whose ``/etc/hosts`` (a private bind mount) maps the tenant names to it. Nothing in it can reach
or be reached from outside, and the host's ``/etc/hosts`` is never touched.

Design: a holder process (``unshare --net --mount sleep infinity``) keeps the namespaces alive;
every command enters them with ``nsenter -t HOLDER --net --mount``. Cleanup stops what was
started through this object, then kills every other process still in the network namespace
(found through ``/proc/PID/ns/net``, so daemons that forked away are caught too), then the holder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.process import ManagedProcess, require_binary, require_root, wait_for

#: Address for tenant names inside the namespace (RFC 5737 TEST-NET-2: never routed).
TENANT_ADDRESS = "198.51.100.10"

#: Default private name mapping. Tenant names point at a non-loopback address so that libcups
#: sends them as SNI/Host; ``printer.example`` points at loopback because ippeveprinter run
#: with ``-n localhost`` only listens on 127.0.0.1 and ::1 (and libcups then sends
#: ``Host: localhost``, the only Host besides IP literals that ippeveprinter accepts).
DEFAULT_HOSTS: dict[str, str] = {
    "acme.example": TENANT_ADDRESS,
    "print.acme.example": TENANT_ADDRESS,
    "globex.example": TENANT_ADDRESS,
    "printer.example": "127.0.0.1",
}

PathLike = str | os.PathLike[str]


def _ns_link(pid: int | str, kind: str) -> str | None:
    """``readlink /proc/PID/ns/KIND`` (e.g. ``net:[4026532]``), or None if the process is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for some other parent)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself contain ')'.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X")


class NetNamespace:
    """A private network+mount namespace (root only); usable as a context manager.

    ``hosts`` maps names to addresses for the private ``/etc/hosts`` (default
    :data:`DEFAULT_HOSTS`); ``addresses`` are CIDRs added to ``lo`` (default
    ``198.51.100.10/32``). ``workdir`` holds the hosts file and logs; a temporary directory
    is created (and removed on close) when it is None.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        hosts: Mapping[str, str] | None = None,
        addresses: Sequence[str] = (f"{TENANT_ADDRESS}/32",),
    ) -> None:
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="certgate-netns-"))
        self.workdir = workdir
        self.hosts: dict[str, str] = dict(DEFAULT_HOSTS if hosts is None else hosts)
        self.addresses = tuple(addresses)
        self.log_dir = self.workdir / "logs"
        self._holder: subprocess.Popen[bytes] | None = None
        self._net_link: str | None = None
        self._managed: list[ManagedProcess] = []
        self._popens: list[subprocess.Popen[Any]] = []
        self._nsenter = ""

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Self:
        """Create the namespaces, bring ``lo`` up, add addresses, mount the hosts file."""
        if self._holder is not None:
            return self
        require_root()
        self._nsenter = require_binary("nsenter")
        unshare = require_binary("unshare")
        setpriv = require_binary("setpriv")
        sleep = require_binary("sleep")
        ip = require_binary("ip")
        mount = require_binary("mount")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        holder_log = open(self.log_dir / "holder.log", "ab")  # closed below
        try:
            # setpriv --pdeathsig: if pytest itself is SIGKILLed the holder dies with it instead
            # of leaking a namespace. (pdeathsig follows the creating *thread*: create the
            # namespace from the main thread, as pytest fixtures are.)
            self._holder = subprocess.Popen(
                [
                    setpriv,
                    "--pdeathsig",
                    "KILL",
                    "--",
                    unshare,
                    "--net",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    sleep,
                    "infinity",
                ],
                stdin=subprocess.DEVNULL,
                stdout=holder_log,
                stderr=subprocess.STDOUT,
            )
        finally:
            holder_log.close()
        try:
            own_net = _ns_link("self", "net")
            holder = self._holder

            def unshared() -> bool:
                # Both unshares are done once unshare has exec'd sleep.
                link = _ns_link(holder.pid, "net")
                comm = Path(f"/proc/{holder.pid}/comm").read_text().strip()
                return link is not None and link != own_net and comm == "sleep"

            def holder_alive() -> None:
                if holder.poll() is not None:
                    raise RuntimeError(
                        f"namespace holder exited ({holder.returncode}): "
                        + (self.log_dir / "holder.log").read_text(errors="replace")
                    )

            wait_for(unshared, timeout=10.0, what="namespace holder", alive=holder_alive)
            self._net_link = _ns_link(holder.pid, "net")
            self.run([ip, "link", "set", "lo", "up"], check=True)
            for cidr in self.addresses:
                self.run([ip, "addr", "add", cidr, "dev", "lo"], check=True)
            hosts_file = self.workdir / "hosts"
            hosts_file.write_text(self.hosts_text())
            # A bind mount in our private mount namespace: the host's /etc/hosts is untouched.
            self.run([mount, "--bind", str(hosts_file), "/etc/hosts"], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def hosts_text(self) -> str:
        """Contents of the private ``/etc/hosts``."""
        lines = [
            "# private hosts file of a certgate test network namespace",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            # Some libraries resolve the machine's own name; keep that off the (absent) DNS.
            f"127.0.1.1\t{socket.gethostname()}",
        ]
        by_address: dict[str, list[str]] = {}
        for name, address in self.hosts.items():
            by_address.setdefault(address, []).append(name)
        lines += [f"{address}\t{' '.join(names)}" for address, names in by_address.items()]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop everything in the namespace and remove it. Safe to call more than once."""
        errors: list[str] = []
        for proc in reversed(self._managed):
            try:
                proc.stop()
            except Exception as exc:
                errors.append(f"{proc!r}: {exc}")
        self._managed.clear()
        for popen in self._popens:
            self._stop_popen(popen)
        self._popens.clear()
        if self._net_link is not None:
            self._kill_stragglers()
        if self._holder is not None:
            if self._holder.poll() is None:
                self._holder.kill()
            self._holder.wait(10)
            self._holder = None
        self._net_link = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError("errors while closing the namespace: " + "; ".join(errors))

    @staticmethod
    def _stop_popen(popen: subprocess.Popen[Any]) -> None:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(3)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            if stream is not None:
                stream.close()

    def _kill_stragglers(self) -> None:
        """Kill processes left in the network namespace (daemons that forked, etc.)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 2.0
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if not _gone(pid)]
                time.sleep(0.02)
            if not pids:
                return

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ introspection
    @property
    def pid(self) -> int:
        """Pid of the holder process (the ``-t`` target of nsenter)."""
        if self._holder is None:
            raise RuntimeError("namespace not started")
        return self._holder.pid

    @property
    def net_ns(self) -> str:
        """Identity of the network namespace, e.g. ``net:[4026532213]``."""
        if self._net_link is None:
            raise RuntimeError("namespace not started")
        return self._net_link

    def pids(self) -> list[int]:
        """Pids of all live processes in the network namespace, except the holder."""
        if self._net_link is None:
            return []
        holder = self._holder.pid if self._holder is not None else -1
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (holder, os.getpid()):
                if _ns_link(entry, "net") == self._net_link and not _gone(int(entry)):
                    found.append(int(entry))
        return found

    # ------------------------------------------------------------------ running commands
    def command(self, argv: Sequence[PathLike], cwd: PathLike | None = None) -> list[str]:
        """``argv`` prefixed with the nsenter call that runs it inside the namespace.

        Entering a mount namespace resets the working directory to ``/`` (setns(2)), so the
        caller's directory (or ``cwd``) is passed explicitly with ``--wd``.
        """
        if self._holder is None:
            raise RuntimeError("namespace not started")
        wd = os.fspath(cwd) if cwd is not None else os.getcwd()
        return [
            self._nsenter,
            "-t",
            str(self._holder.pid),
            "--net",
            "--mount",
            f"--wd={wd}",
            "--",
            *(os.fspath(arg) for arg in argv),
        ]

    def run(
        self, argv: Sequence[PathLike], *, cwd: PathLike | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside the namespace.

        Defaults: ``capture_output=True, text=True, timeout=60, stdin=DEVNULL, check=False``;
        every other keyword goes to ``subprocess.run``. With ``check=True`` the error message
        includes stdout/stderr.
        """
        check = kwargs.pop("check", False)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60.0)
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        result = subprocess.run(self.command(argv, cwd), check=False, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"command failed in namespace ({result.returncode}): {list(map(str, argv))}\n"
                f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}"
            )
        return result

    def popen(
        self, argv: Sequence[PathLike], *, cwd: PathLike | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside the namespace; terminated and reaped on :meth:`close`."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        popen: subprocess.Popen[Any] = subprocess.Popen(self.command(argv, cwd), **kwargs)
        self._popens.append(popen)
        return popen

    def start_process(
        self,
        name: str,
        argv: Sequence[PathLike],
        *,
        cwd: PathLike | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> ManagedProcess:
        """Start a long-running process in the namespace, output logged to ``logs/NAME.log``.

        It is stopped (SIGTERM, then SIGKILL) when the namespace closes, or earlier with
        ``ManagedProcess.stop()``.
        """
        proc = ManagedProcess(
            name,
            self.command(argv, cwd),
            log_path=log_path or self.log_dir / f"{name}.log",
            env=env,
        )
        self._managed.append(proc)
        return proc

    # ------------------------------------------------------------------ network helpers
    def resolve(self, name: str) -> str | None:
        """Address ``name`` resolves to inside the namespace (``getent hosts``), or None."""
        result = self.run([require_binary("getent"), "hosts", name])
        if result.returncode != 0 or not result.stdout.split():
            return None
        return str(result.stdout.split()[0])

    def free_port(self, host: str = "127.0.0.1") -> int:
        """A TCP port that is free on ``host`` inside the namespace (bind to port 0)."""
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            "s.bind((sys.argv[1],0)); print(s.getsockname()[1])"
        )
        result = self.run([sys.executable, "-c", code, host], check=True)
        return int(result.stdout.strip())

    def port_open(self, host: str, port: int) -> bool:
        """True if a TCP connect to ``host:port`` succeeds inside the namespace.

        bash's ``/dev/tcp`` costs a couple of milliseconds, far less than a Python start-up.
        """
        result = self.run(
            [require_binary("bash"), "-c", 'exec 3<>"/dev/tcp/$0/$1"', host, str(port)],
            timeout=10.0,
        )
        return result.returncode == 0

    def wait_for_port(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 20.0,
        proc: ManagedProcess | None = None,
    ) -> None:
        """Wait until ``host:port`` accepts connections; fail early if ``proc`` dies."""
        wait_for(
            lambda: self.port_open(host, port),
            timeout=timeout,
            interval=0.05,
            what=f"{host}:{port} in namespace {self._net_link}",
            alive=proc.check_alive if proc is not None else None,
        )

    def __repr__(self) -> str:
        holder = self._holder.pid if self._holder else None
        return f"<NetNamespace holder={holder} {self._net_link}>"
