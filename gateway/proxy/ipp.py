"""Just enough IPP (RFC 8010 encoding, RFC 8011 model) for a proxy: pure functions.

The proxy never parses a whole IPP message. It reads the fixed 8-byte header of a request
(version, operation-id, request-id) for the access log, the status-code of a response, and
builds the one response it ever originates: an error when the upstream printer is down, so
that IPP clients get an IPP answer with their request-id instead of a broken connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_SIZE = 8
SERVER_ERROR_SERVICE_UNAVAILABLE = 0x0502

# RFC 8011 section 5.4.15 plus registered extensions (RFC 3380, 3995, 3996, 3998, PWG
# 5100.x) and CUPS's vendor operations, named as CUPS's ippOpString() does.
_OPERATIONS: dict[int, str] = {
    0x0002: "Print-Job",
    0x0003: "Print-URI",
    0x0004: "Validate-Job",
    0x0005: "Create-Job",
    0x0006: "Send-Document",
    0x0007: "Send-URI",
    0x0008: "Cancel-Job",
    0x0009: "Get-Job-Attributes",
    0x000A: "Get-Jobs",
    0x000B: "Get-Printer-Attributes",
    0x000C: "Hold-Job",
    0x000D: "Release-Job",
    0x000E: "Restart-Job",
    0x0010: "Pause-Printer",
    0x0011: "Resume-Printer",
    0x0012: "Purge-Jobs",
    0x0013: "Set-Printer-Attributes",
    0x0014: "Set-Job-Attributes",
    0x0015: "Get-Printer-Supported-Values",
    0x0016: "Create-Printer-Subscriptions",
    0x0017: "Create-Job-Subscriptions",
    0x0018: "Get-Subscription-Attributes",
    0x0019: "Get-Subscriptions",
    0x001A: "Renew-Subscription",
    0x001B: "Cancel-Subscription",
    0x001C: "Get-Notifications",
    0x0022: "Enable-Printer",
    0x0023: "Disable-Printer",
    0x0024: "Pause-Printer-After-Current-Job",
    0x0025: "Hold-New-Jobs",
    0x0026: "Release-Held-New-Jobs",
    0x0027: "Deactivate-Printer",
    0x0028: "Activate-Printer",
    0x0029: "Restart-Printer",
    0x002A: "Shutdown-Printer",
    0x002B: "Startup-Printer",
    0x002C: "Reprocess-Job",
    0x002D: "Cancel-Current-Job",
    0x002E: "Suspend-Current-Job",
    0x002F: "Resume-Job",
    0x0030: "Promote-Job",
    0x0031: "Schedule-Job-After",
    0x0033: "Cancel-Document",
    0x0034: "Get-Document-Attributes",
    0x0035: "Get-Documents",
    0x0036: "Delete-Document",
    0x0037: "Set-Document-Attributes",
    0x0038: "Cancel-Jobs",
    0x0039: "Cancel-My-Jobs",
    0x003A: "Resubmit-Job",
    0x003B: "Close-Job",
    0x003C: "Identify-Printer",
    0x003D: "Validate-Document",
    0x004F: "Get-Printers",
    0x005B: "Get-System-Attributes",
    0x4001: "CUPS-Get-Default",
    0x4002: "CUPS-Get-Printers",
    0x4003: "CUPS-Add-Modify-Printer",
    0x4004: "CUPS-Delete-Printer",
    0x4005: "CUPS-Get-Classes",
    0x4006: "CUPS-Add-Modify-Class",
    0x4007: "CUPS-Delete-Class",
    0x4008: "CUPS-Accept-Jobs",
    0x4009: "CUPS-Reject-Jobs",
    0x400A: "CUPS-Set-Default",
    0x400B: "CUPS-Get-Devices",
    0x400C: "CUPS-Get-PPDs",
    0x400D: "CUPS-Move-Job",
    0x400E: "CUPS-Authenticate-Job",
    0x400F: "CUPS-Get-PPD",
    0x4027: "CUPS-Get-Document",
    0x4028: "CUPS-Create-Local-Printer",
}

# RFC 8011 section 5.4.15 / 13.1 status-code keywords.
_STATUSES: dict[int, str] = {
    0x0000: "successful-ok",
    0x0001: "successful-ok-ignored-or-substituted-attributes",
    0x0002: "successful-ok-conflicting-attributes",
    0x0400: "client-error-bad-request",
    0x0401: "client-error-forbidden",
    0x0402: "client-error-not-authenticated",
    0x0403: "client-error-not-authorized",
    0x0404: "client-error-not-possible",
    0x0405: "client-error-timeout",
    0x0406: "client-error-not-found",
    0x0407: "client-error-gone",
    0x0408: "client-error-request-entity-too-large",
    0x0409: "client-error-request-value-too-long",
    0x040A: "client-error-document-format-not-supported",
    0x040B: "client-error-attributes-or-values-not-supported",
    0x040C: "client-error-uri-scheme-not-supported",
    0x040D: "client-error-charset-not-supported",
    0x040E: "client-error-conflicting-attributes",
    0x040F: "client-error-compression-not-supported",
    0x0410: "client-error-compression-error",
    0x0411: "client-error-document-format-error",
    0x0412: "client-error-document-access-error",
    0x0500: "server-error-internal-error",
    0x0501: "server-error-operation-not-supported",
    0x0502: "server-error-service-unavailable",
    0x0503: "server-error-version-not-supported",
    0x0504: "server-error-device-error",
    0x0505: "server-error-temporary-error",
    0x0506: "server-error-not-accepting-jobs",
    0x0507: "server-error-busy",
    0x0508: "server-error-job-canceled",
    0x0509: "server-error-multiple-document-jobs-not-supported",
}

# RFC 8010 section 3.5 delimiter and value tags used by the error response.
_OPERATION_ATTRIBUTES_TAG = 0x01
_END_OF_ATTRIBUTES_TAG = 0x03
_TEXT_WITHOUT_LANGUAGE = 0x41
_CHARSET = 0x47
_NATURAL_LANGUAGE = 0x48

_HEADER = struct.Struct(">BBHi")
_SUPPORTED_MAJOR_VERSIONS = (1, 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class IppRequestHeader:
    """The fixed 8-byte header of an IPP request (RFC 8010 section 3.1.1)."""

    version: tuple[int, int]
    operation_id: int
    request_id: int

    @property
    def operation_name(self) -> str:
        """The operation's keyword, or `0xNNNN` for an unknown one (as CUPS prints it)."""
        return operation_name(self.operation_id)


class HeaderCollector:
    """Gathers the first 8 bytes of a body that arrives in pieces, and nothing more."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> bytes | None:
        """Add a piece; returns the 8 header bytes once they are complete, else None."""
        self._buf += data[: HEADER_SIZE - len(self._buf)]
        return self._buf if len(self._buf) == HEADER_SIZE else None


def operation_name(operation_id: int) -> str:
    """Name of an IPP operation-id, `0xNNNN` when unknown."""
    return _OPERATIONS.get(operation_id) or f"0x{operation_id:04x}"


def status_name(status_code: int) -> str:
    """Keyword of an IPP status-code, `0xNNNN` when unknown."""
    return _STATUSES.get(status_code) or f"0x{status_code:04x}"


def parse_request_header(data: bytes) -> IppRequestHeader | None:
    """Parse the first 8 bytes of an IPP request; None if short or not IPP/1.x-2.x."""
    if len(data) < HEADER_SIZE:
        return None
    major, minor, operation_id, request_id = _HEADER.unpack_from(data)
    if major not in _SUPPORTED_MAJOR_VERSIONS:
        return None
    return IppRequestHeader(
        version=(major, minor), operation_id=operation_id, request_id=request_id
    )


def parse_response_status(data: bytes) -> int | None:
    """The status-code of an IPP response from its first 8 bytes; None if short/not IPP."""
    header = parse_request_header(data)
    # The response header has the same layout with status-code where the operation-id was.
    return None if header is None else header.operation_id


def build_error_response(
    *,
    version: tuple[int, int],
    request_id: int,
    message: str,
    status_code: int = SERVER_ERROR_SERVICE_UNAVAILABLE,
    language: str = "en",
) -> bytes:
    """An IPP response carrying only an error status (RFC 8011 section 4.1.6).

    It echoes the request's version and request-id (RFC 8011 section 4.1.1 requires the
    same request-id) and holds the required operation attributes attributes-charset and
    attributes-natural-language followed by a status-message.
    """
    return b"".join(
        (
            _HEADER.pack(version[0], version[1], status_code, request_id),
            bytes((_OPERATION_ATTRIBUTES_TAG,)),
            _attribute(_CHARSET, "attributes-charset", b"utf-8"),
            _attribute(_NATURAL_LANGUAGE, "attributes-natural-language", language.encode()),
            # status-message is text(255) (RFC 8011 section 4.1.6.2).
            _attribute(_TEXT_WITHOUT_LANGUAGE, "status-message", _text(message, 255)),
            bytes((_END_OF_ATTRIBUTES_TAG,)),
        )
    )


def _attribute(tag: int, name: str, value: bytes) -> bytes:
    encoded = name.encode("ascii")
    return b"".join(
        (
            struct.pack(">BH", tag, len(encoded)),
            encoded,
            struct.pack(">H", len(value)),
            value,
        )
    )


def _text(message: str, limit: int) -> bytes:
    data = message.encode("utf-8")[:limit]
    # Never cut a multi-byte character in half.
    return data.decode("utf-8", "ignore").encode("utf-8")
