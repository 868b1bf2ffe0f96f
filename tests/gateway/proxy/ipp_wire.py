"""A tiny independent RFC 8010 encoder/decoder for the IPP rewriting tests."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

OPERATION, JOB, END, PRINTER = 0x01, 0x02, 0x03, 0x04
URI, TEXT, KEYWORD, CHARSET, LANGUAGE, INTEGER = 0x45, 0x41, 0x44, 0x47, 0x48, 0x21
BEG_COLLECTION, END_COLLECTION, MEMBER_NAME = 0x34, 0x37, 0x4A

Value = tuple[int, bytes, bytes]  # (value tag, name, value); name b"" for an additional value


def tlv(tag: int, name: bytes, value: bytes) -> bytes:
    """One attribute-with-one-value (or additional value) as on the wire."""
    return struct.pack(">BH", tag, len(name)) + name + struct.pack(">H", len(value)) + value


def message(
    groups: Sequence[tuple[int, Iterable[Value]]],
    *,
    status: int = 0,
    request_id: int = 7,
    version: bytes = b"\x02\x00",
    data: bytes = b"",
) -> bytes:
    """A whole IPP message: header, groups, end-of-attributes-tag, document data."""
    out = [version, struct.pack(">Hi", status, request_id)]
    for group_tag, values in groups:
        out.append(bytes((group_tag,)))
        out += [tlv(*value) for value in values]
    out.append(bytes((END,)))
    return b"".join(out) + data


def response(uris: dict[bytes, Sequence[bytes]], *, data: bytes = b"", **kw: int) -> bytes:
    """A Get-Printer-Attributes-like response: operation group, then `uris` (1setOf each)."""
    printer: list[Value] = [(TEXT, b"printer-info", b"a text value ipp://127.0.0.1:1/")]
    for name, values in uris.items():
        printer.append((URI, name, values[0]))
        printer += [(URI, b"", value) for value in values[1:]]
    operation: list[Value] = [
        (CHARSET, b"attributes-charset", b"utf-8"),
        (LANGUAGE, b"attributes-natural-language", b"en"),
    ]
    return message([(OPERATION, operation), (PRINTER, printer)], data=data, **kw)


def decode(body: bytes) -> tuple[list[tuple[int, int, bytes, bytes]], bytes]:
    """([(group, tag, name, value)], document data); additional values repeat the name."""
    pos, group, name = 8, 0, b""
    out: list[tuple[int, int, bytes, bytes]] = []
    while True:
        tag = body[pos]
        if tag == END:
            return out, body[pos + 1 :]
        if tag < 0x10:
            group, pos = tag, pos + 1
            continue
        (name_len,) = struct.unpack_from(">H", body, pos + 1)
        if name_len:
            name = body[pos + 3 : pos + 3 + name_len]
        pos += 3 + name_len
        (value_len,) = struct.unpack_from(">H", body, pos)
        value = body[pos + 2 : pos + 2 + value_len]
        assert len(value) == value_len, "value runs past the end"
        out.append((group, tag, name, value))
        pos += 2 + value_len


def uri_values(body: bytes) -> dict[bytes, list[bytes]]:
    """Every uri-tagged value of a message, by attribute name."""
    found: dict[bytes, list[bytes]] = {}
    for _, tag, name, value in decode(body)[0]:
        if tag == URI:
            found.setdefault(name, []).append(value)
    return found
