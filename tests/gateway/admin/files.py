"""Upload files for the admin API tests: PKCS#12 files that pass, one per refusal rule.

Everything is generated at run time (no key is committed). Files ``cryptography`` will not
write (a SHA-1 signed leaf, a key stored without encryption) come from the real ``openssl``.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.certfactory import NOW, Issued, make_leaf, new_key, p12

PASSWORD = "correct horse 7"


@dataclass(frozen=True)
class Refusal:
    """A PKCS#12 upload that must be refused with ``rule``, naming ``names``."""

    data: bytes
    password: str | None
    names: tuple[str, ...] = ()


def _openssl(tmp: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=30,
                   env={"PW": PASSWORD})


def _write_issuer(issuer: Issued, tmp: Path) -> None:
    (tmp / "ca.pem").write_bytes(issuer.pem())
    (tmp / "ca.key").write_bytes(issuer.key_pem())


def sha1_signed(issuer: Issued, tmp: Path, name: str) -> bytes:
    """A PKCS#12 whose leaf ``issuer`` signed with SHA-1 (cryptography refuses to sign it)."""
    _write_issuer(issuer, tmp)
    (tmp / "leaf.key").write_bytes(new_key("ec").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp / "san.ext").write_text(f"subjectAltName=DNS:{name}\n")
    _openssl(tmp, "req", "-new", "-key", "leaf.key", "-subj", f"/CN={name}", "-out", "leaf.csr")
    _openssl(tmp, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-sha1", "-days", "30", "-extfile", "san.ext", "-out", "leaf.pem")
    _openssl(tmp, "pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile",
             "ca.pem", "-passout", "env:PW", "-out", "sha1.p12")
    return (tmp / "sha1.p12").read_bytes()


def plain_key_bag(leaf: Issued, tmp: Path) -> bytes:
    """A password-protected file whose private key is stored unencrypted (``-keypbe NONE``)."""
    (tmp / "leaf.pem").write_bytes(leaf.pem())
    (tmp / "leaf.key").write_bytes(leaf.key_pem())
    _openssl(tmp, "pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-keypbe",
             "NONE", "-passout", "env:PW", "-out", "plain.p12")
    return (tmp / "plain.p12").read_bytes()


def refusals(issuer: Issued, domain: str, tmp: Path) -> dict[str, Refusal]:
    """One refused file per rule of the product page, for an account owning ``domain``."""
    pw = PASSWORD.encode()
    good = make_leaf(issuer, dns=[domain])
    foreign = make_leaf(issuer, dns=[domain, f"www.{domain}", "other.example"])
    expired = make_leaf(issuer, dns=[domain], not_before=NOW - dt.timedelta(days=30),
                        not_after=NOW - dt.timedelta(days=1))
    later = make_leaf(issuer, dns=[domain], not_before=NOW + dt.timedelta(days=2),
                      not_after=NOW + dt.timedelta(days=30))
    weak = make_leaf(issuer, dns=[domain], key=new_key("rsa1024"))
    no_names = make_leaf(issuer)
    ip_only = make_leaf(issuer, ips=["192.0.2.7"])
    partial = make_leaf(issuer, dns=[f"f*.{domain}"])
    mismatched = Issued(cert=good.cert, key=new_key("ec"), parents=good.parents)
    for sub in ("sha1", "plain"):
        (tmp / sub).mkdir(exist_ok=True)
    return {
        "names-not-owned": Refusal(p12(foreign, pw), PASSWORD,
                                   (f"www.{domain}", "other.example")),
        "wrong-password": Refusal(p12(good, pw), "not the password"),
        "password-missing": Refusal(p12(good, pw), None),
        "key-not-protected": Refusal(plain_key_bag(good, tmp / "plain"), PASSWORD),
        "no-private-key": Refusal(p12(good, pw, include_key=False), PASSWORD),
        "expired": Refusal(p12(expired, pw), PASSWORD),
        "not-yet-valid": Refusal(p12(later, pw), PASSWORD),
        "weak-key": Refusal(p12(weak, pw), PASSWORD),
        "weak-signature": Refusal(sha1_signed(issuer, tmp / "sha1", domain), PASSWORD),
        "no-names": Refusal(p12(no_names, pw), PASSWORD),
        # an IP-only SAN counts as empty, and there is no CN to fall back to
        "no-names-ip-only": Refusal(p12(ip_only, pw), PASSWORD),
        "invalid-names": Refusal(p12(partial, pw), PASSWORD, (f"f*.{domain}",)),
        "key-mismatch": Refusal(p12(mismatched, pw, include_cert=False, extra=[good.cert]),
                                PASSWORD),
        "not-pkcs12": Refusal(b"MII this is not DER at all", PASSWORD),
        "empty": Refusal(b"", PASSWORD),
    }


def rule_of(case: str) -> str:
    """The rule a refusal case expects (cases may share a rule)."""
    return "no-names" if case == "no-names-ip-only" else case


def pem(cert: Issued) -> bytes:
    """A certificate as PEM."""
    return cert.cert.public_bytes(serialization.Encoding.PEM)


def der(cert: Issued) -> bytes:
    """A certificate as DER."""
    return cert.cert.public_bytes(serialization.Encoding.DER)

