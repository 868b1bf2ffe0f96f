"""Small process helpers shared by the harness: finding binaries, logging, reliable stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

# Daemons such as ippeveprinter and avahi-daemon live in /usr/sbin, which is not on every PATH
# (a CI runner's environment may be trimmed), so it is always searched as well.
_EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")

# Which Debian package provides each binary the harness runs; used in failure messages so that
# a missing tool fails the test with a fix instead of skipping it.
DEBIAN_PACKAGES: dict[str, str] = {
    "avahi-daemon": "avahi-daemon",
    "bash": "bash",
    "curl": "curl",
    "dbus-daemon": "dbus",
    "getent": "libc-bin",
    "ip": "iproute2",
    "ippeveprinter": "cups-ipp-utils",
    "ipptool": "cups-ipp-utils",
    "mount": "mount",
    "nsenter": "util-linux",
    "openssl": "openssl",
    "setpriv": "util-linux",
    "sh": "dash",
    "true": "coreutils",
    "unshare": "util-linux",
    "sleep": "coreutils",
}


class MissingToolError(RuntimeError):
    """A binary the harness needs is not installed; the message names the Debian package."""


def require_binary(name: str, package: str | None = None) -> str:
    """Return the absolute path of ``name`` or raise :class:`MissingToolError`.

    The error names the Debian package to install, so a missing tool is a clear failure
    (the project's rule is that these tests never skip).
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_PATH])
    found = shutil.which(name, path=search)
    if found is None:
        pkg = package or DEBIAN_PACKAGES.get(name, "?")
        raise MissingToolError(
            f"{name!r} not found: install the Debian package {pkg!r} "
            f"(apt-get install {pkg}; see .ci/apt-packages.txt)"
        )
    return found


def require_root() -> None:
    """Fail clearly when not root: namespaces, mounts and ``ip addr add`` need it."""
    if os.geteuid() != 0:
        raise PermissionError("the IPP/namespace harness must run as root (unshare -n -m, mount)")


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
    alive: Callable[[], None] | None = None,
) -> None:
    """Poll ``predicate`` until it is true; raise ``TimeoutError`` naming ``what``.

    ``alive`` is called on every round and should raise when the thing being waited for has
    died, so a crashed daemon fails at once with its log instead of after the full timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, limit: int = 4000) -> str:
    """Last ``limit`` characters of a log file (empty string if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-limit:]


class ManagedProcess:
    """A long-running child whose stdout+stderr go to a log file, stopped reliably.

    ``stop()`` sends SIGTERM, waits, then SIGKILLs; it always reaps the child and closes the
    log handle, so no ``ResourceWarning`` escapes (the test suite turns warnings into errors).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # closed in stop()
        try:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self.popen.pid

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.popen.poll() is None

    def log_text(self, limit: int = 4000) -> str:
        """The end of the child's combined output, for failure messages."""
        self._log.flush()
        return tail(self.log_path, limit)

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` with the log tail if the child has exited."""
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with status {code}: {' '.join(self.argv)}\n"
                f"--- {self.log_path} ---\n{self.log_text()}"
            )

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the child (signal, then SIGKILL after ``timeout``) and return its exit status."""
        try:
            if self.popen.poll() is None:
                try:
                    self.popen.send_signal(self.stop_signal)
                except ProcessLookupError:
                    pass
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout)
            return self.popen.returncode
        finally:
            self._log.close()

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} log={self.log_path}>"


def run_logged(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with text capture on by default (helper for one-shot commands)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60.0)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(list(argv), check=kwargs.pop("check", False), **kwargs)
