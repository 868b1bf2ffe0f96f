"""PKCS#12 and X.509 surgery for tests, independent of ``certstore``.

* :func:`mac_key` is an own implementation of the RFC 7292 appendix B.2 key derivation (not
  ``certstore.pkcs12._pkcs12_kdf``), so a fixture cannot share a bug with the code under test;
  :func:`stored_mac_matches` checks it against MACs written by the real OpenSSL.
* :func:`build_pfx` assembles a PFX from safes (possibly taken from different files) with a MAC
  under any password; :func:`remac` recomputes the MAC of an existing file (new password and/or
  iteration count); :func:`set_mac_iterations` alters the count *without* a valid MAC.
* :func:`resign` re-signs a certificate with SHA-1 or MD5 (``cryptography`` no longer signs
  certificates with them, but real old chains use them).
* :func:`openssl_export` / :func:`openssl_twopass` / :func:`openssl_info` drive the real
  ``openssl pkcs12`` (``-twopass`` reads its passwords from a terminal: a pseudo-terminal here).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pty
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from asn1crypto import algos, cms, core, pkcs12
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.certfactory import Issued, Key

# -- RFC 7292 appendix B ----------------------------------------------------------------------


def bmp_password(password: str) -> bytes:
    """A password as RFC 7292 wants it: BMPString (UTF-16 big endian) with two zero bytes."""
    return password.encode("utf-16-be") + b"\x00\x00"


def _repeat_to_block(data: bytes, v: int) -> bytes:
    """Concatenate copies of ``data`` to the smallest multiple of ``v`` bytes (empty stays)."""
    if not data:
        return b""
    size = v * ((len(data) + v - 1) // v)
    return bytes(data[i % len(data)] for i in range(size))


def mac_key(hash_name: str, password_bmp: bytes, salt: bytes, iterations: int) -> bytes:
    """The MAC key (diversifier ID 3) of RFC 7292 B.2 for a BMP-encoded password."""
    u = hashlib.new(hash_name).digest_size
    v = hashlib.new(hash_name).block_size
    diversifier = bytes([3]) * v
    i_block = bytearray(_repeat_to_block(salt, v) + _repeat_to_block(password_bmp, v))
    out = b""
    while len(out) < u:
        a = hashlib.new(hash_name, diversifier + bytes(i_block)).digest()
        for _ in range(iterations - 1):
            a = hashlib.new(hash_name, a).digest()
        out += a
        b_plus_one = int.from_bytes(_repeat_to_block(a, v)[:v], "big") + 1
        modulus = 1 << (8 * v)
        for j in range(0, len(i_block), v):
            value = (int.from_bytes(i_block[j : j + v], "big") + b_plus_one) % modulus
            i_block[j : j + v] = value.to_bytes(v, "big")
    return out[:u]


def compute_mac(content: bytes, password: str, *, hash_name: str, salt: bytes,
                iterations: int) -> bytes:
    """HMAC of the authenticated safe's content under ``password``."""
    key = mac_key(hash_name, bmp_password(password), salt, iterations)
    return hmac.new(key, content, hash_name).digest()


def _pfx(data: bytes) -> pkcs12.Pfx:
    return pkcs12.Pfx.load(data)


def _auth_safe_content(pfx: pkcs12.Pfx) -> bytes:
    content: bytes = pfx["auth_safe"]["content"].native
    return content


def mac_parameters(data: bytes) -> tuple[str, bytes, int]:
    """``(hash name, salt, iterations)`` of a file's MAC."""
    mac_data = _pfx(data)["mac_data"]
    return (mac_data["mac"]["digest_algorithm"]["algorithm"].native,
            mac_data["mac_salt"].native, mac_data["iterations"].native)


def stored_mac_matches(data: bytes, password: str) -> bool:
    """True when the file's stored MAC is the one :func:`compute_mac` gives for ``password``."""
    pfx = _pfx(data)
    hash_name, salt, iterations = mac_parameters(data)
    expected: bytes = pfx["mac_data"]["mac"]["digest"].native
    return hmac.compare_digest(
        compute_mac(_auth_safe_content(pfx), password, hash_name=hash_name, salt=salt,
                    iterations=iterations),
        expected)


# -- assembling PFX files -----------------------------------------------------------------------


def safes(data: bytes) -> list[cms.ContentInfo]:
    """The ContentInfo entries of a file's authenticated safe (fresh copies)."""
    return [cms.ContentInfo.load(info.dump()) for info in _pfx(data).authenticated_safe]


def safe_kind(info: cms.ContentInfo) -> str:
    """``data`` (plain safe, e.g. the shrouded key bag) or ``encrypted_data`` (e.g. certs)."""
    kind: str = info["content_type"].native
    return kind


def _mac_data(content: bytes, mac_password: str, *, hash_name: str, iterations: int,
              salt: bytes) -> pkcs12.MacData:
    digest = compute_mac(content, mac_password, hash_name=hash_name, salt=salt,
                         iterations=iterations)
    return pkcs12.MacData({
        "mac": {"digest_algorithm": {"algorithm": hash_name}, "digest": digest},
        "mac_salt": salt,
        "iterations": iterations,
    })


def _dump_pfx(content: bytes, mac_data: pkcs12.MacData | None) -> bytes:
    fields: dict[str, object] = {
        "version": "v3",
        "auth_safe": cms.ContentInfo({"content_type": "data", "content": content}),
    }
    if mac_data is not None:
        fields["mac_data"] = mac_data
    dumped: bytes = pkcs12.Pfx(fields).dump()
    return dumped


def build_pfx(parts: Sequence[cms.ContentInfo], *, mac_password: str | None,
              hash_name: str = "sha256", iterations: int = 2048) -> bytes:
    """A PFX whose authenticated safe holds ``parts``, MAC'd under ``mac_password``."""
    content: bytes = pkcs12.AuthenticatedSafe(
        [cms.ContentInfo.load(p.dump()) for p in parts]).dump()
    mac_data = None
    if mac_password is not None:
        mac_data = _mac_data(content, mac_password, hash_name=hash_name,
                             iterations=iterations, salt=secrets.token_bytes(16))
    return _dump_pfx(content, mac_data)


def remac(data: bytes, mac_password: str, *, iterations: int | None = None) -> bytes:
    """The same file (same safes, same encryption) with a MAC under ``mac_password``."""
    hash_name, salt, old_iterations = mac_parameters(data)
    content = _auth_safe_content(_pfx(data))
    mac_data = _mac_data(content, mac_password, hash_name=hash_name,
                         iterations=old_iterations if iterations is None else iterations,
                         salt=salt)
    return _dump_pfx(content, mac_data)


def set_mac_iterations(data: bytes, iterations: int) -> bytes:
    """The same file claiming ``iterations`` MAC iterations; the MAC is left as it was."""
    pfx = _pfx(data)
    mac = pfx["mac_data"]
    return _dump_pfx(_auth_safe_content(pfx), pkcs12.MacData({
        "mac": {"digest_algorithm": {"algorithm": mac["mac"]["digest_algorithm"]["algorithm"]
                                     .native},
                "digest": mac["mac"]["digest"].native},
        "mac_salt": mac["mac_salt"].native,
        "iterations": iterations,
    }))


# -- re-signing certificates with legacy hashes ----------------------------------------------------


def resign(cert: x509.Certificate, signer: Key, hash_name: str) -> x509.Certificate:
    """``cert`` signed again by ``signer`` with ``sha1`` or ``md5`` (RSA only for MD5)."""
    algorithm: hashes.HashAlgorithm = {"sha1": hashes.SHA1(), "md5": hashes.MD5()}[hash_name]
    if isinstance(signer, ec.EllipticCurvePrivateKey):
        identifier = algos.SignedDigestAlgorithm({"algorithm": f"{hash_name}_ecdsa"})
    else:
        identifier = algos.SignedDigestAlgorithm({"algorithm": f"{hash_name}_rsa",
                                                  "parameters": core.Null()})
    parsed = ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = ax509.TbsCertificate.load(parsed["tbs_certificate"].dump())
    tbs["signature"] = identifier
    tbs_der = tbs.dump(force=True)
    if isinstance(signer, rsa.RSAPrivateKey):
        signature = signer.sign(tbs_der, padding.PKCS1v15(), algorithm)
    else:
        signature = signer.sign(tbs_der, ec.ECDSA(algorithm))
    rebuilt = ax509.Certificate({
        "tbs_certificate": ax509.TbsCertificate.load(tbs_der),
        "signature_algorithm": algos.SignedDigestAlgorithm.load(identifier.dump()),
        "signature_value": signature,
    })
    return x509.load_der_x509_certificate(rebuilt.dump())


# -- the real openssl -----------------------------------------------------------------------------


def _write_inputs(leaf: Issued, tmp: Path,
                  extra_pem: bytes = b"") -> tuple[Path, Path, Path | None]:
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = tmp / "leaf.pem", tmp / "key.pem"
    cert.write_bytes(leaf.pem())
    key.write_bytes(leaf.key_pem())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in leaf.parents)
    chain += extra_pem
    chain_file = None
    if chain:
        chain_file = tmp / "chain.pem"
        chain_file.write_bytes(chain)
    return cert, key, chain_file


def openssl_export(leaf: Issued, tmp: Path, *, password: bytes | None,
                   options: Sequence[str] = (), extra_pem: bytes = b"") -> bytes:
    """``openssl pkcs12 -export`` with raw password bytes (from a file) and ``options``.

    ``password=None`` gives ``-passout pass:`` (the empty password). ``extra_pem`` adds
    certificates (even ones OpenSSL accepts but ``cryptography`` does not).
    """
    cert, key, chain = _write_inputs(leaf, tmp, extra_pem)
    out = tmp / "out.p12"
    args = ["openssl", "pkcs12", "-export", "-inkey", str(key), "-in", str(cert),
            "-out", str(out), *options]
    if chain is not None:
        args += ["-certfile", str(chain)]
    if password is None:
        args += ["-passout", "pass:"]
    else:
        (tmp / "pw.bin").write_bytes(password)
        args += ["-passout", f"file:{tmp / 'pw.bin'}"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    key.unlink()
    return out.read_bytes()


def openssl_twopass(leaf: Issued, tmp: Path, *, mac_password: str,
                    encryption_password: str) -> bytes:
    """``openssl pkcs12 -export -twopass``: MAC and encryption under different passwords.

    OpenSSL reads both passwords from the controlling terminal, so it runs on a pty.
    """
    cert, key, chain = _write_inputs(leaf, tmp)
    out = tmp / "twopass.p12"
    args = ["openssl", "pkcs12", "-export", "-twopass", "-inkey", str(key), "-in", str(cert),
            "-out", str(out)]
    if chain is not None:
        args += ["-certfile", str(chain)]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes openssl
        os.execvp(args[0], args)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"openssl -twopass hangs; it printed {seen!r}")
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            prompt = re.search(rb"(MAC|Export) Password:", seen)
            if prompt:
                answer = mac_password if prompt.group(1) == b"MAC" else encryption_password
                os.write(fd, answer.encode() + b"\n")
                seen = seen[prompt.end():]
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    key.unlink()
    assert os.waitstatus_to_exitcode(status) == 0, f"openssl -twopass failed: {seen!r}"
    return out.read_bytes()


def openssl_info(data: bytes, tmp: Path, password: str,
                 *options: str) -> subprocess.CompletedProcess[str]:
    """``openssl pkcs12 -info`` on ``data`` (not raising: callers assert on the result)."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "probe.p12"
    path.write_bytes(data)
    return subprocess.run(
        ["openssl", "pkcs12", "-info", "-in", str(path), "-passin", f"pass:{password}",
         *options],
        capture_output=True, text=True, errors="replace", timeout=60, check=False)


MAC_VERIFY_ERROR = "Mac verify error"
