"""The built-in CA and generated chains, checked by cryptography and by the openssl CLI."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certstore.ca import CertificateAuthority, create_ca, issue_chain

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return create_ca(now=NOW, key_type="ecdsa-p256")


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_root_signs_issuing_intermediate(authority: CertificateAuthority) -> None:
    root, issuing = authority.root, authority.issuing
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    for cert, path_len in ((root, 1), (issuing, 0)):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca and bc.path_length == path_len
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_default_ca_is_rsa_for_old_terminals() -> None:
    authority = create_ca(now=NOW)
    assert isinstance(authority.root.public_key(), rsa.RSAPublicKey)
    assert authority.root.public_key().key_size == 3072


@pytest.mark.parametrize(("key_type", "key_class"), [("ecdsa-p256", ec.EllipticCurvePublicKey),
                                                     ("rsa-2048", rsa.RSAPublicKey)])
def test_tls_chain(authority: CertificateAuthority, key_type: str, key_class: type,
                   tmp_path: Path) -> None:
    issued = issue_chain(authority, purpose="tls", common_name="print.acme.com",
                         dns_name="print.acme.com", key_type=key_type, now=NOW)  # type: ignore[arg-type]
    leaf, inter = issued.certificates
    assert inter == authority.issuing
    leaf.verify_directly_issued_by(inter)
    assert isinstance(leaf.public_key(), key_class)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["print.acme.com"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # The real openssl verifies the chain for TLS server use and the host name.
    (tmp_path / "root.pem").write_bytes(_pem(authority.root))
    (tmp_path / "inter.pem").write_bytes(_pem(inter))
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"),
                          "-untrusted", str(tmp_path / "inter.pem"), "-purpose", "sslserver",
                          "-verify_hostname", "print.acme.com", str(tmp_path / "leaf.pem")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    wrong = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"),
                            "-untrusted", str(tmp_path / "inter.pem"),
                            "-verify_hostname", "other.acme.com", str(tmp_path / "leaf.pem")],
                           capture_output=True, text=True)
    assert wrong.returncode != 0


def test_signing_chain_cannot_serve_tls(authority: CertificateAuthority) -> None:
    issued = issue_chain(authority, purpose="signing", common_name="Acme token signing",
                         dns_name=None, key_type="ecdsa-p256", now=NOW)
    leaf = issued.certificates[0]
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
