"""Tiny TLS server that records the SNI and HTTP request head of every connection.

Run as a script (stdlib only, so it works from any directory and inside a namespace)::

    python sni_server.py --cert C --key K --events events.jsonl --port-file port [--port 0]

It writes the bound port to ``--port-file`` (atomically) once listening, then appends one
JSON object per connection to ``--events``: ``sni`` (None without SNI), ``tls_version``,
``cipher``, ``alpn``, ``peer``, and, if an HTTP request head arrived, ``request_line`` and
``headers`` (lower-cased names), ``body_length``/``body_sha256`` and the IPP operation and
request ids. ``Expect: 100-continue`` is honoured; each request is answered with an IPP
``server-error-service-unavailable`` response (HTTP 200) and the connection closed.
TLS 1.3 session tickets are off by default (``--tickets N`` turns them on): with tickets,
ipptool never finishes a request (see ``main``). A blocking ``ssl`` server is used on
purpose: unlike asyncio on Python 3.11 (gh-98078) it sends TLS alerts on failed handshakes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time
from typing import Any

_MAX_HEAD = 64 * 1024
_MAX_BODY = 256 * 1024 * 1024

# IPP status server-error-service-unavailable, sent as a real IPP response in HTTP 200 (the
# form the gateway must use when its upstream is down: same version and request-id), so that
# ipptool shows the status and status-message. (A bare HTTP 503 also ends the request: libcups
# maps it to server-error-service-unavailable with an empty response.)
_IPP_SERVICE_UNAVAILABLE = 0x0502


def ipp_error_response(request_head: bytes, status: int = _IPP_SERVICE_UNAVAILABLE) -> bytes:
    """A minimal IPP response (same version and request-id as the request) with ``status``."""
    version = request_head[0:2] if len(request_head) >= 2 else b"\x02\x00"
    request_id = request_head[4:8] if len(request_head) >= 8 else b"\x00\x00\x00\x01"

    def attribute(tag: int, name: bytes, value: bytes) -> bytes:
        return (
            bytes([tag])
            + len(name).to_bytes(2, "big")
            + name
            + len(value).to_bytes(2, "big")
            + value
        )

    return (
        version
        + status.to_bytes(2, "big")
        + request_id
        + b"\x01"  # operation-attributes-tag
        + attribute(0x47, b"attributes-charset", b"utf-8")
        + attribute(0x48, b"attributes-natural-language", b"en")
        + attribute(0x41, b"status-message", b"sni recorder: no printer here")
        + b"\x03"  # end-of-attributes-tag
    )


def read_body(rfile: Any, headers: dict[str, str]) -> bytes:
    """Read a chunked or Content-Length request body (bounded by ``_MAX_BODY``)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = rfile.readline(1024)
            if not size_line:
                raise EOFError("EOF in chunk size")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > _MAX_BODY:
                raise ValueError("body too large")
            body += rfile.read(size)
            rfile.readline(1024)  # CRLF after the chunk data
    length = int(headers.get("content-length", "0") or "0")
    if length > _MAX_BODY:
        raise ValueError("body too large")
    return bytes(rfile.read(length))


class Recorder:
    """Accept loop plus one thread per connection."""

    def __init__(self, context: ssl.SSLContext, events_path: str) -> None:
        self.context = context
        self.events_path = events_path
        self.lock = threading.Lock()
        # The SNI callback runs in the thread doing the handshake; a thread-local hands the
        # name to that thread even when the handshake then fails.
        self.local = threading.local()
        context.sni_callback = self._on_sni

    def _on_sni(self, sock: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        self.local.sni = server_name

    def record(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, sort_keys=True) + "\n"
        with self.lock, open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()

    def handle(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        self.local.sni = None
        event: dict[str, Any] = {"time": time.time(), "peer": f"{peer[0]}:{peer[1]}"}
        conn.settimeout(10.0)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            event.update(sni=self.local.sni, error=f"handshake: {exc!r}")
            conn.close()
            self.record(event)
            return
        with tls:
            cipher = tls.cipher()
            event.update(
                sni=self.local.sni,
                tls_version=tls.version(),
                cipher=cipher[0] if cipher else None,
                alpn=tls.selected_alpn_protocol(),
            )
            try:
                self._exchange(tls, event)
            except (OSError, ssl.SSLError, EOFError, ValueError) as exc:
                event["io_error"] = repr(exc)
        self.record(event)

    @staticmethod
    def _exchange(tls: ssl.SSLSocket, event: dict[str, Any]) -> None:
        """Read one HTTP request (head and body) and answer it with an IPP error."""
        with tls.makefile("rb") as rfile:
            request_line = rfile.readline(_MAX_HEAD).decode("latin-1").rstrip("\r\n")
            if not request_line:
                return
            event["request_line"] = request_line
            headers: dict[str, str] = {}
            while True:
                line = rfile.readline(_MAX_HEAD).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            event["headers"] = headers
            if headers.get("expect", "").lower() == "100-continue":
                tls.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = read_body(rfile, headers)
        event["body_length"] = len(body)
        event["body_sha256"] = hashlib.sha256(body).hexdigest()
        if len(body) >= 8:
            event["ipp_operation_id"] = int.from_bytes(body[2:4], "big")
            event["ipp_request_id"] = int.from_bytes(body[4:8], "big")
        payload = ipp_error_response(body)
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload) + payload
        )

    def serve(self, server: socket.socket) -> None:
        while True:
            conn, peer = server.accept()
            threading.Thread(target=self.handle, args=(conn, peer), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument(
        "--tickets",
        type=int,
        default=0,
        help="TLS 1.3 session tickets per handshake (default 0, see below)",
    )
    args = parser.parse_args(argv)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    # OpenSSL sends two TLS 1.3 session tickets after each handshake by default. libcups 2.4
    # (GnuTLS) cannot cope: ipptool drops the connection and reconnects in a tight loop,
    # forever. Tickets are therefore off unless a test asks for them (to show the problem).
    context.num_tickets = args.tickets
    recorder = Recorder(context, args.events)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    server = socket.create_server((args.host, args.port), family=family, backlog=64)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(str(server.getsockname()[1]))
    os.replace(tmp, args.port_file)  # atomic: the harness never reads a half-written port
    print(f"listening on {args.host}:{server.getsockname()[1]}", flush=True)
    try:
        recorder.serve(server)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
