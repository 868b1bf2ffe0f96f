"""What the CLI prints cannot be turned against the terminal reading it (issue 10, section
4): names and subjects from certificates, and values typed by users, reach the terminal
with every control character escaped, in human output and in ``--json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from certstore.text import escaped
from tests.certfactory import Issued, make_ca, make_leaf, p12
from tests.gateway.admin.files import pem
from tests.gateway.cli.test_cli import Run, certgate

__all__ = ["certgate"]  # the fixture, shared with test_cli

# ESC sequences that clear the screen, set the window title, ring the bell; NUL, CR, BS,
# DEL, a C1 CSI, and a right-to-left override.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x00\r\x08\x7f\x9b31m\u202e"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")
PW = "out-pw"


def _clean(*texts: str) -> None:
    for text in texts:
        found = CONTROL.findall(text)
        assert not found, f"control characters reached the terminal: {found!r}"


def _account(run: Run) -> str:
    acc = json.loads(run("account", "create", "--name", "A", "--kind", "vendor", "--domain",
                         "a.test", "--json").stdout)
    return str(acc["id"])


def test_certificate_subjects_are_escaped(certgate: Run, tmp_path: Path,
                                          intermediate_ca: Issued) -> None:
    acc = _account(certgate)
    leaf = make_leaf(intermediate_ca, cn="shop" + HOSTILE, dns=["a.test"])
    (tmp_path / "c.p12").write_bytes(p12(leaf, PW.encode()))
    (tmp_path / "pw").write_text(PW)
    chain = json.loads(certgate("chain", "import", acc, "c.p12", "--password-file", "pw",
                                "--json").stdout)
    hostile_ca = make_ca("Root" + HOSTILE)
    (tmp_path / "ca.pem").write_bytes(pem(hostile_ca))
    outputs = [certgate("trusted-ca", "import", acc, "ca.pem"),
               certgate("trusted-ca", "list", acc),
               certgate("chain", "show", chain["id"]),
               certgate("chain", "list", acc)]
    for proc in outputs:
        _clean(proc.stdout, proc.stderr)
    shown = certgate("chain", "show", chain["id"]).stdout
    assert escaped(leaf.cert.subject.rfc4514_string()) in shown  # escaped, not dropped
    # (RFC 4514 writes ';' and NUL as '\;' and '\00' itself)
    assert "\\x1b[2J\\x1b]0\\;pwned\\x07\\00\\r\\x08\\x7f\\x9b31m\\u202e" in shown
    for args in (("trusted-ca", "list", acc), ("chain", "show", chain["id"])):
        raw = certgate(*args, "--json").stdout
        _clean(raw)
        assert "\\u001b[2J" in raw  # JSON escapes it, and a parser gets the value back
        data = json.loads(raw)
        subjects = [data["subject"]] if isinstance(data, dict) else [c["subject"] for c in data]
        assert any("\x1b[2J\x1b]0" in s and "\u202e" in s for s in subjects)


def test_refusals_naming_hostile_input_are_escaped(certgate: Run, tmp_path: Path,
                                                    intermediate_ca: Issued) -> None:
    acc = _account(certgate)
    leaf = make_leaf(intermediate_ca, dns=["a.test", "evil\x1b[31m.a.test"])
    (tmp_path / "c.p12").write_bytes(p12(leaf, PW.encode()))
    (tmp_path / "pw").write_text(PW)
    refused = certgate("chain", "import", acc, "c.p12", "--password-file", "pw", ok=False)
    _clean(refused.stdout, refused.stderr)
    assert "\\x1b[31m" in refused.stderr  # the offending name is shown, escaped
    for args in (("account", "add-domain", acc, "x\x1b]0;t\x07.test"),
                 ("account", "create", "--name", "Evil" + HOSTILE.replace("\x00", ""),
                  "--kind", "vendor"),
                 ("account", "show", "acc_\x1b[2J"),
                 ("chain", "delete", "chn_\x07\x1b[5m")):
        proc = certgate(*args, ok=False)
        _clean(proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ")


@pytest.mark.parametrize("text", ["plain", "a\nb", "\x1b[0m", "\u202egnp.exe", "tab\there"])
def test_escaped_shows_every_character_and_no_control(text: str) -> None:
    out = escaped(text)
    _clean(out)
    assert "\n" not in out
    assert out.encode().decode("unicode_escape") == text  # nothing lost: it reads back
