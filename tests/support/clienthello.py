"""A hand-built TLS ClientHello carrying any bytes as its server_name (real clients refuse to
send what is not an A-label), and a reader for the server's first record."""

from __future__ import annotations

import os
import socket
import struct


def _u16(n: int) -> bytes:
    return struct.pack("!H", n)


def _ext(kind: int, body: bytes) -> bytes:
    return _u16(kind) + _u16(len(body)) + body


def client_hello(server_name: bytes | None) -> bytes:
    """A TLS 1.3/1.2 ClientHello record (X25519 key share, AEAD suites, ECDSA/RSA-PSS)."""
    suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030]
    exts = b""
    if server_name is not None:
        entry = b"\x00" + _u16(len(server_name)) + server_name  # host_name (RFC 6066 s. 3)
        exts += _ext(0, _u16(len(entry)) + entry)
    exts += _ext(10, _u16(4) + _u16(0x001D) + _u16(0x0017))  # supported_groups
    exts += _ext(11, b"\x01\x00")  # ec_point_formats: uncompressed
    sigalgs = [0x0403, 0x0804, 0x0805, 0x0401, 0x0501]
    exts += _ext(13, _u16(2 * len(sigalgs)) + b"".join(_u16(a) for a in sigalgs))
    exts += _ext(43, b"\x04" + _u16(0x0304) + _u16(0x0303))  # supported_versions
    exts += _ext(45, b"\x01\x01")  # psk_key_exchange_modes: psk_dhe_ke
    share = _u16(0x001D) + _u16(32) + os.urandom(32)
    exts += _ext(51, _u16(len(share)) + share)  # key_share
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
            + _u16(2 * len(suites)) + b"".join(_u16(s) for s in suites)
            + b"\x01\x00" + _u16(len(exts)) + exts)
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + _u16(len(handshake)) + handshake


def first_record(port: int, hello: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``hello`` to 127.0.0.1:``port``; the (content type, body) of the first record."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(hello)
        data = b""
        while len(data) < 5 or len(data) < 5 + struct.unpack("!H", data[3:5])[0]:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} bytes: {data!r}")
            data += chunk
        size = struct.unpack("!H", data[3:5])[0]
        return data[0], data[5:5 + size]
