"""Drive CUPS ``ipptool`` (the real IPP client) and parse its results.

The stock ``/usr/share/cups/ipptool/*.test`` files are copied unchanged into a work directory
next to a generated PDF. They take the document from ipptool's ``-f FILE`` (``$filename``;
``$filetype`` is derived from the extension, ``application/pdf``), the URI from the command
line (``$uri``) and ``$user`` from the environment; ``create-job.test`` holds both Create-Job
and Send-Document (there is no separate send-document.test).

Results are read from the XML plist written with ``-P`` (one entry per test, with
``Successful``, ``StatusCode``, ``Errors`` and the response attributes); stdout keeps the
human-readable report for assertion messages.

Pitfalls handled here:

* ippeveprinter runs one job at a time and answers ``server-error-busy`` to a job operation
  that arrives while the previous job is still being finished (even with ``-c /bin/true``).
  ipptool's ``-R`` only retries after 5 s, so a small ``wait-idle.test`` (Get-Jobs repeated
  every 20 ms until no job is left unfinished) is run between test files instead.
* Requests with a document are chunked by default (``Transfer: auto``); ``-L`` sends a
  Content-Length instead. Every POST carries ``Expect: 100-continue``.
* Against a TLS 1.3 server that sends session tickets (OpenSSL's default; seen with Python
  ``ssl`` and with haproxy 2.6, even with its ``no-tls-tickets``) libcups 2.4.2/GnuTLS drops
  every connection after the request head and reconnects in a tight loop, forever. Servers
  must send no tickets (``SSLContext.num_tickets = 0``) or stop at TLS 1.2. A run that
  exceeds ``timeout`` is killed and returned as a failed :class:`IppToolRun`
  (``returncode == -9``) instead of raising.
* ``HOME`` points at a private directory so libcups never reads or writes ``~/.cups``.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.netns import NetNamespace
from tests.support.process import MissingToolError, require_binary

IPPTOOL_TEST_DIR = Path("/usr/share/cups/ipptool")

#: The stock test files the harness uses, in a sensible order.
STOCK_TESTS = (
    "get-printer-attributes.test",
    "print-job.test",
    "validate-job.test",
    "create-job.test",
    "get-jobs.test",
)

WAIT_IDLE_TEST = "wait-idle.test"
WAIT_IDLE_NAME = "Wait for the printer to be idle"

# DELAY "initial,repeat": the value must be quoted, a bare comma is a syntax error; and
# REPEAT-LIMIT is a modifier of EXPECT, it must follow it on the same line.
_WAIT_IDLE_SOURCE = f"""\
# Written by tests/support/ipptool.py: poll until the printer has no unfinished job, so that
# the next job operation is not refused with server-error-busy. (printer-state is not enough:
# it is still "idle" between job creation and the start of processing.)
{{
	NAME "{WAIT_IDLE_NAME}"
	OPERATION Get-Jobs
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR keyword which-jobs not-completed
	ATTR keyword requested-attributes job-id,job-state
	STATUS successful-ok
	DELAY "0,0.02"
	EXPECT !job-id REPEAT-LIMIT 250 REPEAT-NO-MATCH
}}
"""


def make_pdf(text: str = "certgate ipptool harness test page") -> bytes:
    """A small, valid, deterministic one-page PDF 1.4 (Helvetica text, A4).

    Offsets in the xref table are computed, so PDF readers accept it; no timestamps or ids
    are embedded, so equal input gives equal bytes (and sha256).
    """
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 760 Td ({safe}) Tj ET\n".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
    ]
    # The binary comment line marks the file as binary for transfer tools.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


@dataclass(frozen=True)
class IppTestResult:
    """One test (one IPP request) of an ipptool run, from the ``-P`` plist."""

    name: str
    operation: str
    passed: bool
    status: str
    errors: tuple[str, ...]
    response: tuple[dict[str, Any], ...] = field(repr=False)
    helper: bool = False  #: True for the harness's own wait-idle test

    def attribute(self, name: str) -> Any:
        """First value of response attribute ``name`` in any group (None if absent)."""
        for group in self.response:
            if name in group:
                return group[name]
        return None


@dataclass(frozen=True)
class IppToolRun:
    """Outcome of one ipptool invocation."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    tests: tuple[IppTestResult, ...]
    error_message: str | None
    transfer: str | None
    duration: float

    @property
    def ok(self) -> bool:
        """ipptool exited 0 without error, produced results and every test passed."""
        return (
            self.returncode == 0
            and self.error_message is None
            and bool(self.tests)
            and all(test.passed for test in self.tests)
        )

    @property
    def operations(self) -> list[str]:
        """Operations sent, without the harness's wait-idle polls."""
        return [test.operation for test in self.tests if not test.helper]

    def test(self, operation: str) -> IppTestResult:
        """The (first) non-helper test whose operation (or name) is ``operation``."""
        wanted = operation.lower()
        for test in self.tests:
            if not test.helper and wanted in (test.operation.lower(), test.name.lower()):
                return test
        raise KeyError(f"no test {operation!r} in ipptool run:\n{self.describe()}")

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        lines = [
            f"ipptool exit status {self.returncode} after {self.duration:.2f}s",
            f"argv: {' '.join(self.argv)}",
        ]
        if self.error_message:
            lines.append(f"error: {self.error_message}")
        lines += [
            f"  {'PASS' if t.passed else 'FAIL'} {t.operation} ({t.name}): {t.status}"
            + (f" {list(t.errors)}" if t.errors else "")
            for t in self.tests
        ]
        lines += ["--- stdout ---", self.stdout, "--- stderr ---", self.stderr]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` with the full report unless :attr:`ok`."""
        if not self.ok:
            raise AssertionError(self.describe())


class IppTool:
    """A work directory with the stock .test files and a PDF, and a way to run ipptool.

    ``netns`` runs ipptool inside that namespace (names resolve with its private hosts file);
    None runs it on the host.
    """

    def __init__(
        self,
        workdir: Path,
        netns: NetNamespace | None = None,
        *,
        document: bytes | None = None,
        document_name: str = "document.pdf",
        test_files: Sequence[str] = STOCK_TESTS,
    ) -> None:
        self.workdir = workdir
        self.netns = netns
        self.document = make_pdf() if document is None else document
        self.document_path = workdir / document_name
        self.test_files = tuple(test_files)
        self.home = workdir / "home"
        self._runs = 0
        self._binary: str | None = None

    def prepare(self) -> IppTool:
        """Copy the .test files, write the document and the wait-idle test (idempotent)."""
        if self._binary is not None:
            return self
        self._binary = require_binary("ipptool")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        for name in self.test_files:
            source = IPPTOOL_TEST_DIR / name
            if not source.is_file():
                raise MissingToolError(
                    f"{source} is missing: install the Debian package 'cups-ipp-utils'"
                )
            shutil.copyfile(source, self.workdir / name)
        (self.workdir / WAIT_IDLE_TEST).write_text(_WAIT_IDLE_SOURCE)
        self.document_path.write_bytes(self.document)
        return self

    @property
    def document_sha256(self) -> str:
        """sha256 of the document every job sends."""
        return hashlib.sha256(self.document).hexdigest()

    def run(
        self,
        uri: str,
        tests: Sequence[str] | None = None,
        *,
        content_length: bool = False,
        wait_idle: bool = True,
        variables: Mapping[str, str] | None = None,
        io_timeout: float = 10.0,
        timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> IppToolRun:
        """Run ``ipptool -P result.plist -f DOCUMENT [-L] URI TESTS...`` and parse it.

        ``tests`` are file names in the work directory (default: all prepared stock tests).
        ``content_length`` adds ``-L`` (Content-Length instead of chunked bodies).
        ``wait_idle`` runs the wait-idle test between files (needed for ippeveprinter; turn
        it off against servers that are not printers). ``variables`` become ``-d k=v``.
        ``io_timeout`` is ipptool's ``-T``; ``timeout`` bounds the whole process.
        """
        self.prepare()
        assert self._binary is not None
        files = list(self.test_files if tests is None else tests)
        if not files:
            raise ValueError("no test files given")
        self._runs += 1
        plist_path = self.workdir / f"result-{self._runs}.plist"
        sequence: list[str] = []
        for index, name in enumerate(files):
            if wait_idle and index > 0:
                sequence.append(WAIT_IDLE_TEST)
            sequence.append(name)
        argv = [
            self._binary,
            "-P",
            str(plist_path),
            "-T",
            f"{io_timeout:g}",
            "-f",
            self.document_path.name,
        ]
        if content_length:
            argv.append("-L")
        for key, value in (variables or {}).items():
            argv += ["-d", f"{key}={value}"]
        argv += [*extra_args, uri, *sequence]

        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env.setdefault("USER", "root")
        started = time.monotonic()
        try:
            if self.netns is not None:
                result = self.netns.run(argv, cwd=self.workdir, env=env, timeout=timeout)
            else:
                result = subprocess.run(
                    argv,
                    cwd=self.workdir,
                    env=env,
                    timeout=timeout,
                    capture_output=True,
                    text=True,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
        except subprocess.TimeoutExpired as exc:
            # subprocess.run has killed ipptool; report a failed run with what it printed
            # (e.g. the reconnect loop against TLS 1.3 session tickets) instead of raising.
            def text(data: bytes | str | None) -> str:
                return data.decode(errors="replace") if isinstance(data, bytes) else data or ""

            return IppToolRun(
                argv=tuple(argv),
                returncode=-9,
                stdout=text(exc.stdout),
                stderr=text(exc.stderr),
                tests=(),
                error_message=f"ipptool killed after {timeout:g}s timeout",
                transfer=None,
                duration=time.monotonic() - started,
            )
        duration = time.monotonic() - started
        return self._parse(tuple(argv), result, plist_path, duration)

    @staticmethod
    def _parse(
        argv: tuple[str, ...],
        result: subprocess.CompletedProcess[Any],
        plist_path: Path,
        duration: float,
    ) -> IppToolRun:
        tests: list[IppTestResult] = []
        error_message: str | None = None
        transfer: str | None = None
        try:
            data = plistlib.loads(plist_path.read_bytes())
        except FileNotFoundError:
            error_message = "ipptool wrote no plist"
        except Exception as exc:  # a truncated plist after a crash: report, don't hide
            error_message = f"unreadable plist {plist_path}: {exc!r}"
        else:
            error_message = data.get("ErrorMessage")
            transfer = data.get("Transfer")
            for entry in data.get("Tests", []):
                name = str(entry.get("Name", ""))
                tests.append(
                    IppTestResult(
                        name=name,
                        operation=str(entry.get("Operation", "")),
                        passed=bool(entry.get("Successful", False)),
                        status=str(entry.get("StatusCode", "")),
                        errors=tuple(str(e) for e in entry.get("Errors", [])),
                        response=tuple(entry.get("ResponseAttributes", [])),
                        helper=name == WAIT_IDLE_NAME,
                    )
                )
        # ipptool reports .test syntax errors on stderr and carries on with the next file.
        if "Unexpected token" in result.stderr or " on line " in result.stderr:
            error_message = (error_message or "") + f" test file error: {result.stderr.strip()}"
        return IppToolRun(
            argv=argv,
            returncode=result.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
            tests=tuple(tests),
            error_message=error_message,
            transfer=transfer,
            duration=duration,
        )
