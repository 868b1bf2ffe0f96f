"""sslyze's Mozilla "intermediate" check passes against the https and ipps listeners, for an
ECDSA and an RSA chain (sslyze runs from its own virtualenv, ``make tools``: it pins an
older ``cryptography`` than certgate's). Before the policy fix it failed on TLS 1.2 CBC suites
and on X448/secp521r1."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import init_store, running_gateway, upstream_server

ROOT = Path(__file__).resolve().parents[3]
SSLYZE = ROOT / ".venv-tools" / "bin" / "sslyze"
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _cert(subject: str, key: Key, issuer: tuple[x509.Certificate, Key] | None, *,
          ca: bool, dns: str | None = None) -> x509.Certificate:
    """A certificate as public CAs issue them (key identifiers, key usage, EKU), which
    sslyze's strict path validation requires."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(signer_cert.subject if signer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=3650 if ca else 90))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        assert dns is not None
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]),
                                         critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False))
    return builder.sign(signer_key, hashes.SHA256())


@pytest.fixture
async def tenants(tmp_path: Path) -> bytes:
    """Imported customer chains (ECDSA and RSA, 90 days) from a root sslyze is told to
    trust: the check is then about the TLS policy. (certgate's own generated chains live 397
    days, over the 366 that Mozilla's intermediate profile allows.) Returns the root PEM."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("sslyze test root", root_key, None, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _cert("sslyze test issuing", inter_key, (root, root_key), ca=True)
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        for name, leaf_key in (("acme.test", ec.generate_private_key(ec.SECP256R1())),
                               ("globex.test", rsa.generate_private_key(65537, 2048))):
            acc = await store.create_account(name=name, kind="customer", domains=[name])
            leaf = _cert(name, leaf_key, (inter, inter_key), ca=False, dns=name)
            pfx = pkcs12.serialize_key_and_certificates(
                b"t", leaf_key, leaf, [inter], serialization.BestAvailableEncryption(b"pw"))
            await store.import_chain(acc.id, pfx, b"pw")
    finally:
        await store.close()
    return root.public_bytes(serialization.Encoding.PEM)


@pytest.mark.timeout(600)
async def test_mozilla_intermediate_on_https_and_ipps(tmp_path: Path, tenants: bytes) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(tenants)
    assert SSLYZE.exists(), f"{SSLYZE} missing: run `make tools` (make test does)"
    async with upstream_server() as up, running_gateway(tmp_path, [
            {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
             "upstream": f"http://127.0.0.1:{up}"},
            {"name": "print", "kind": "ipps", "bind": "127.0.0.1:0",
             "upstream": f"http://127.0.0.1:{up}"}]) as gw:
        # host:port{ip}: connect to the IP, send the host as SNI.
        targets = [f"{name}:{gw.listeners[listener].port}{{127.0.0.1}}"
                   for listener in ("web", "print") for name in ("acme.test", "globex.test")]
        out = await asyncio.to_thread(
            subprocess.run, [str(SSLYZE), "--mozilla_config=intermediate",
                             f"--certinfo_ca_file={roots}", *targets],
            capture_output=True, text=True, timeout=540)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for target in targets:
        host_port = target.split("{")[0]
        assert f"{host_port}: OK - Compliant." in text, text
