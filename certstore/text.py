"""Text from certificates and users, made safe to show and to record.

A certificate's subject, a request path or a name typed by a user may hold control
characters: ESC starts terminal escape sequences (rewriting the screen, the window title,
the clipboard on some terminals), CR and BS hide text already printed, NUL truncates C
strings, and U+202E reverses what follows. Anything that reaches a terminal, a log line or
an audit record goes through :func:`escaped` first; the escape is readable and one-way
(``\\x1b``), so nothing is lost for the reader and nothing is interpreted by the terminal.
"""

from __future__ import annotations

_ELLIPSIS = "..."


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escaped(text: str, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """``text`` with every non-printable character (C0/C1 controls, DEL, Unicode format
    and separator characters other than the space) written as a backslash escape.

    ``keep_newlines`` keeps ``\\n`` as is (for multi-line output built by the program
    itself). With ``limit``, the result is cut to at most ``limit`` characters, ending in
    ``...`` when cut (never in the middle of an escape).
    """
    # Each character gives at least one, so a bounded result needs a bounded prefix only.
    source = text if limit is None else text[:limit + 1]
    parts = [ch if ch.isprintable() or (keep_newlines and ch == "\n") else _escape_char(ch)
             for ch in source]
    if limit is None or (len(source) == len(text) and sum(map(len, parts)) <= limit):
        return "".join(parts)
    size = 0
    kept: list[str] = []
    for part in parts:
        if size + len(part) > limit - len(_ELLIPSIS):
            break
        kept.append(part)
        size += len(part)
    return "".join(kept) + _ELLIPSIS
