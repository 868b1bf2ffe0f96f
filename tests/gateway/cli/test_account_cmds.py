"""``certgate account``: domains a tenant cannot take, and pending domains approved or
verified through a real DNS server on loopback (issue 10, section 3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from certstore.audit import Actor, acting_as
from certstore.model import PendingDomain
from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.cli.test_cli import Run, certgate
from tests.support.dns_server import txt_server

__all__ = ["certgate"]


def _add_as_customer(data_dir: Path, account_id: str, name: str) -> PendingDomain:
    """What a customer key's ``POST .../domains`` does (the CLI itself is trusted)."""

    async def go() -> PendingDomain:
        store = await CertStore.open(data_dir / "certgate.sqlite",
                                     read_master_key(data_dir / "master.key"))
        try:
            with acting_as(Actor(key_id="key_c", role="customer", account_id=account_id)):
                account = await store.add_domain(account_id, name)
        finally:
            await store.close()
        (pending,) = [p for p in account.pending if p.name == name]
        return pending

    return asyncio.run(go())


def _accounts(run: Run) -> tuple[str, str]:
    vendor = json.loads(run("account", "create", "--name", "V", "--kind", "vendor",
                            "--domain", "vendor.test", "--json").stdout)
    customer = json.loads(run("account", "create", "--name", "C", "--kind", "customer",
                              "--parent", vendor["id"], "--domain", "cust.test",
                              "--json").stdout)
    return vendor["id"], customer["id"]


def test_cli_grants_and_shows_pending_and_approves(certgate: Run, tmp_path: Path) -> None:
    _, customer = _accounts(certgate)
    granted = json.loads(certgate("account", "add-domain", customer, "shop.vendor.test",
                                  "--json").stdout)
    assert "shop.vendor.test" in granted["domains"]  # the CLI is trusted: verified at once
    pending = _add_as_customer(tmp_path / "var", customer, "print.cust.test")
    shown = certgate("account", "show", customer).stdout
    assert "print.cust.test (pending)" in shown
    assert f'publish TXT _certgate-challenge.print.cust.test "{pending.token}"' in shown
    data = json.loads(certgate("account", "show", customer, "--json").stdout)
    assert {"name": "print.cust.test", "status": "pending",
            "challenge": {"type": "TXT", "name": "_certgate-challenge.print.cust.test",
                          "value": pending.token}} in data["domain_status"]
    approved = json.loads(certgate("account", "approve-domain", customer, "print.cust.test",
                                   "--json").stdout)
    assert "print.cust.test" in approved["domains"]
    missing = certgate("account", "approve-domain", customer, "other.cust.test", ok=False)
    assert "no pending domain" in missing.stderr


def test_cli_verify_domain_through_the_configured_resolver(certgate: Run,
                                                           tmp_path: Path) -> None:
    _, customer = _accounts(certgate)
    pending = _add_as_customer(tmp_path / "var", customer, "www.example-bank.com")
    with txt_server() as dns:
        config = tmp_path / "certgate.yaml"
        config.write_text(config.read_text() + f"dns:\n  resolvers: [\"{dns.address}\"]\n"
                          "  timeout_s: 2\n")
        refused = certgate("account", "verify-domain", customer, "www.example-bank.com",
                           ok=False)
        assert "domain-unverified" in refused.stderr and "TXT" in refused.stderr
        dns.publish(pending.record_name, pending.token)
        done = certgate("account", "verify-domain", customer, "www.example-bank.com")
        assert "www.example-bank.com" in done.stdout and "pending" not in done.stdout
        assert dns.queries.count(pending.record_name) == 2
