"""``certgate chain renew`` and ``chain list --expiring``, run as real subprocesses."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tests.certfactory import Issued, make_leaf, openssl_pkcs12
from tests.gateway.cli.test_cli import Run, certgate  # noqa: F401  (fixture)


def test_expiring_chains_are_listed_across_accounts_with_their_status(
        certgate: Run, tmp_path: Path, intermediate_ca: Issued) -> None:  # noqa: F811
    now = dt.datetime.now(dt.UTC)
    a = json.loads(certgate("account", "create", "--name", "A", "--kind", "customer",
                            "--domain", "a.test", "--json").stdout)
    b = json.loads(certgate("account", "create", "--name", "B", "--kind", "customer",
                            "--domain", "b.test", "--json").stdout)
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "a.pfx").write_bytes(openssl_pkcs12(make_leaf(
        intermediate_ca, dns=["a.test"], not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=10)), "pw", tmp_path))
    soon = json.loads(certgate("chain", "import", a["id"], "a.pfx", "--password-file", "pw",
                               "--json").stdout)
    assert soon["status"] == "expiring" and 9 * 86400 < soon["expires_in_s"] < 10 * 86400
    generated = json.loads(certgate("chain", "generate", b["id"], "--purpose", "tls",
                                    "--domain", "b.test", "--json").stdout)
    assert generated["status"] == "valid"
    listed = json.loads(certgate("chain", "list", "--expiring", "30d", "--json").stdout)
    assert [c["id"] for c in listed] == [soon["id"]]
    text = certgate("chain", "list", "--expiring", "30d").stdout
    assert soon["id"] in text and "expiring" in text and generated["id"] not in text
    assert json.loads(certgate("chain", "list", b["id"], "--expiring", "30d", "--json"
                               ).stdout) == []
    wide = json.loads(certgate("chain", "list", "--expiring", "100d", "--json").stdout)
    assert {soon["id"], generated["id"]} <= {c["id"] for c in wide}
    bad = certgate("chain", "list", "--expiring", "30 days", ok=False)
    assert "error: --expiring:" in bad.stderr and "such as 90d" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = certgate("chain", "list", ok=False)
    assert "--expiring" in missing.stderr


def test_renew_replaces_a_generated_chain_and_refuses_an_imported_one(
        certgate: Run, tmp_path: Path, intermediate_ca: Issued) -> None:  # noqa: F811
    acc = json.loads(certgate("account", "create", "--name", "A", "--kind", "customer",
                              "--domain", "a.test", "--json").stdout)
    old = json.loads(certgate("chain", "generate", acc["id"], "--purpose", "tls",
                              "--domain", "a.test", "--json").stdout)
    certgate("pki", "bind", acc["id"], "a.test", old["id"])
    new = json.loads(certgate("chain", "renew", old["id"], "--json").stdout)
    assert new["id"] != old["id"] and new["dns_names"] == ["a.test"]
    assert new["fingerprint_sha256"] != old["fingerprint_sha256"]
    pki = json.loads(certgate("pki", "show", acc["id"], "--json").stdout)
    assert pki["tls_bindings"] == {"a.test": new["id"]}
    again = certgate("chain", "renew", old["id"], ok=False)
    assert "no chain with id" in again.stderr or "not found" in again.stderr.lower()
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "a.pfx").write_bytes(openssl_pkcs12(make_leaf(intermediate_ca, dns=["a.test"]),
                                                    "pw", tmp_path))
    imported = json.loads(certgate("chain", "import", acc["id"], "a.pfx", "--password-file",
                                   "pw", "--json").stdout)
    refused = certgate("chain", "renew", imported["id"], ok=False)
    assert "import a new certificate for a.test" in refused.stderr
    assert "Traceback" not in refused.stderr
