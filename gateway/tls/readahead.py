"""OpenSSL read-ahead for server contexts: a few large ``recv`` calls instead of two per record.

Without read-ahead OpenSSL reads a record's 5-byte header, then its body: two system calls per
16 KiB of a bulk upload, which made the kernel the larger part of the upload's CPU here. With
it, one ``recv`` fills OpenSSL's (enlarged) buffer with several records. Python's ``ssl``
module has no setting for it, so it is set through the OpenSSL library that ``_ssl`` itself
is linked with, on the ``SSL_CTX`` of the listener's base context.

That pointer is read from CPython's ``PySSLContext`` object, whose first field after the
object header is the ``SSL_CTX *`` on every CPython from 3.7 to 3.13. Elsewhere (another
interpreter, another version) nothing is changed and TLS works as before, only with more
system calls. Read-ahead leaves raw records in OpenSSL's buffer where neither the poller nor
``SSLSocket.pending()`` sees them; :func:`has_pending` (``SSL_has_pending``) does, and the
transport asks it before it stops reading.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("certgate.tls")

_SSL_CTRL_SET_READ_AHEAD = 41  # <openssl/ssl.h>
READ_BUFFER = 65536 + 5 + 256
"""OpenSSL's read buffer once enlarged: a few full records per ``recv``."""

_HEADER = sys.getsizeof(object())  # PyObject_HEAD: reference count and type pointer
_SUPPORTED = sys.implementation.name == "cpython" and (3, 7) <= sys.version_info[:2] <= (3, 13)


def _library() -> Any:
    import _ssl  # the extension module; its handle resolves the libssl it was linked with

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_set_default_read_buffer_len.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.SSL_CTX_set_default_read_buffer_len.restype = None
    lib.SSL_has_pending.argtypes = [ctypes.c_void_p]
    lib.SSL_has_pending.restype = ctypes.c_int
    return lib


def _pointer_after_header(obj: object, index: int = 0) -> int:
    """The ``index``-th pointer field after ``obj``'s object header (CPython layout)."""
    value = ctypes.c_void_p.from_address(id(obj) + _HEADER + index * ctypes.sizeof(
        ctypes.c_void_p)).value
    if not value:
        raise ValueError("null pointer")
    return value


class ReadAhead:
    """Read-ahead is on for a context; tells whether a connection's OpenSSL holds bytes."""

    def __init__(self, has_pending: Callable[[int], int]) -> None:
        self._has_pending = has_pending

    @staticmethod
    def ssl_pointer(sslobj: Any) -> int:
        """The ``SSL *`` of a connection made from the context (``PySSLSocket``: a weak
        reference to the socket, then the ``SSL *``)."""
        return _pointer_after_header(sslobj, 1)

    def has_pending(self, ssl_pointer: int) -> bool:
        """Decrypted or still-raw bytes in OpenSSL's buffers (``SSL_has_pending``)."""
        return self._has_pending(ssl_pointer) != 0


def enable(ctx: ssl.SSLContext) -> ReadAhead | None:
    """Turn read-ahead on for ``ctx``, before any connection uses it; None where it is not
    available (the transport then relies on ``pending()``, which is exact without it)."""
    if not _SUPPORTED:
        return None
    try:
        lib = _library()
        ctx_ptr = _pointer_after_header(ctx)
    except (OSError, AttributeError, ValueError) as e:
        log.info("OpenSSL read-ahead unavailable (%s): two reads per TLS record", e)
        return None
    lib.SSL_CTX_ctrl(ctx_ptr, _SSL_CTRL_SET_READ_AHEAD, 1, None)
    lib.SSL_CTX_set_default_read_buffer_len(ctx_ptr, READ_BUFFER)
    return ReadAhead(lib.SSL_has_pending)
