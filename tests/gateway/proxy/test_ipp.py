"""The pure IPP helpers (no sockets)."""

from __future__ import annotations

import struct

import pytest

from gateway.proxy import ipp
from tests.gateway.proxy.test_failures import parse_ipp


def test_parse_request_header() -> None:
    header = ipp.parse_request_header(b"\x02\x00\x00\x0b\x00\x00\x01\x00rest")
    assert header == ipp.IppRequestHeader(version=(2, 0), operation_id=0x0B, request_id=256)
    assert header.operation_name == "Get-Printer-Attributes"


@pytest.mark.parametrize("data", [b"", b"\x02\x00\x00\x0b\x00\x00\x01", b"GET / HTTP/1.1\r\n"])
def test_short_or_foreign_data_is_not_an_ipp_header(data: bytes) -> None:
    assert ipp.parse_request_header(data) is None


@pytest.mark.parametrize(
    ("operation_id", "name"),
    [
        (0x0002, "Print-Job"),
        (0x0004, "Validate-Job"),
        (0x0005, "Create-Job"),
        (0x0006, "Send-Document"),
        (0x0008, "Cancel-Job"),
        (0x000A, "Get-Jobs"),
        (0x000B, "Get-Printer-Attributes"),
        (0x003B, "Close-Job"),
        (0x4002, "CUPS-Get-Printers"),
        (0x4028, "CUPS-Create-Local-Printer"),
        (0x7777, "0x7777"),
    ],
)
def test_operation_names(operation_id: int, name: str) -> None:
    assert ipp.operation_name(operation_id) == name


def test_status_names() -> None:
    assert ipp.status_name(0) == "successful-ok"
    assert ipp.status_name(0x0502) == "server-error-service-unavailable"
    assert ipp.status_name(0x0999) == "0x0999"


def test_response_status() -> None:
    assert ipp.parse_response_status(b"\x01\x01\x04\x06\x00\x00\x00\x07") == 0x0406
    assert ipp.parse_response_status(b"\x01\x01") is None


def test_error_response_echoes_version_and_request_id() -> None:
    body = ipp.build_error_response(version=(1, 1), request_id=123456, message="down")
    version, status, request_id, attrs = parse_ipp(body)
    assert (version, status, request_id) == (b"\x01\x01", 0x0502, 123456)
    assert list(attrs) == [
        "attributes-charset",
        "attributes-natural-language",
        "status-message",
    ]
    assert attrs["status-message"] == b"down"


def test_status_message_is_cut_at_255_bytes_on_a_character_boundary() -> None:
    body = ipp.build_error_response(version=(2, 0), request_id=1, message="é" * 200)
    message = parse_ipp(body)[3]["status-message"]
    assert len(message) == 254
    assert message.decode("utf-8") == "é" * 127


def test_error_response_header_layout() -> None:
    body = ipp.build_error_response(version=(2, 0), request_id=-1, message="x", status_code=0x0500)
    assert body[:8] == b"\x02\x00\x05\x00" + struct.pack(">i", -1)
    assert body[-1] == 0x03
