"""``certgate chain``: one shape with the API, repeated --domain, a second import of a chain."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv

CERTGATE = [sys.executable, "-m", "gateway.cli"]
ACCOUNTS = "/api/v1/accounts"
PASSWORD = "pw-1"


class Cli:
    """The CLI as a subprocess on the running gateway's store (without blocking its loop)."""

    def __init__(self, data_dir: Path) -> None:
        self.config = data_dir / "cli.yaml"
        self.config.write_text(f"data_dir: {data_dir}\n")
        (data_dir / "pw.txt").write_text(PASSWORD)
        self.data_dir = data_dir

    async def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *CERTGATE, *args, "-c", str(self.config), cwd=self.data_dir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert (proc.returncode == 0) == ok, err.decode()
        return proc.returncode or 0, out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        return json.loads((await self(*args, "--json"))[1])


def stable(value: Any) -> Any:
    """``value`` without ``expires_in_s``, which counts down between two reads of a chain."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k != "expires_in_s"}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


async def _account(admin: AdminEnv, *domains: str) -> str:
    acc = await admin.api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "Acme", "kind": "customer", "domains": list(domains)})
    return str(acc["id"])


async def test_chain_list_json_is_the_apis_listing(admin: AdminEnv, tmp_path: Path,
                                                  intermediate_ca: Issued) -> None:
    acc = await _account(admin, "acme.test", "shop.test")
    cli = Cli(tmp_path)
    (tmp_path / "a.pfx").write_bytes(p12(make_leaf(intermediate_ca, dns=["acme.test"]),
                                         PASSWORD.encode()))
    await cli("chain", "import", acc, "a.pfx", "--password-file", "pw.txt")
    await cli("chain", "generate", acc, "--purpose", "tls", "--domain", "acme.test")
    await cli("chain", "generate", acc, "--purpose", "tls", "--domain", "shop.test")
    listed = await cli.json("chain", "list", acc)
    api = (await admin.api.ok("GET", f"{ACCOUNTS}/{acc}/chains"))["chains"]
    assert set(listed[0]) == set(api[0])  # the same serializer: same keys,
    assert stable(listed) == stable(api)  # same values (but the clock's), same order
    assert {"served", "served_for"} <= set(listed[0])
    served = {tuple(c["dns_names"]): c["served_for"] for c in listed if c["purpose"] == "tls"}
    assert served[("shop.test",)] == ["shop.test"]
    assert sorted(len(v) for k, v in served.items() if k == ("acme.test",)) in ([0], [1])
    shown = await cli.json("chain", "show", listed[0]["id"])
    assert stable(shown) == stable(
        await admin.api.ok("GET", f"{ACCOUNTS}/{acc}/chains/{listed[0]['id']}"))


async def test_repeated_domain_is_refused_not_dropped(admin: AdminEnv,
                                                      tmp_path: Path) -> None:
    acc = await _account(admin, "a.test", "b.test")
    cli = Cli(tmp_path)
    before = stable(await cli.json("chain", "list", acc))
    _, out, err = await cli("chain", "generate", acc, "--purpose", "tls", "--domain", "a.test",
                            "--domain", "b.test", ok=False)
    assert err.startswith("error: chain generate takes one --domain, got 2 (a.test, b.test)")
    assert "once for each domain" in err and out == ""
    assert stable(await cli.json("chain", "list", acc)) == before  # nothing issued


async def test_second_import_says_how_to_serve_and_bind_binds_it(
        admin: AdminEnv, tmp_path: Path, intermediate_ca: Issued) -> None:
    acc = await _account(admin, "acme.test")
    cli = Cli(tmp_path)
    data = p12(make_leaf(intermediate_ca, dns=["acme.test"]), PASSWORD.encode())
    (tmp_path / "a.pfx").write_bytes(data)
    first = await cli.json("chain", "import", acc, "a.pfx", "--password-file", "pw.txt")
    # a newer generated chain is what acme.test gets now (it expires later)
    newer = await cli.json("chain", "generate", acc, "--purpose", "tls", "--domain", "acme.test")
    assert newer["served_for"] == ["acme.test"]

    _, _, err = await cli("chain", "import", acc, "a.pfx", "--password-file", "pw.txt",
                          ok=False)
    assert f"already stored as chain {first['id']}" in err
    assert f"certgate pki bind {acc} acme.test {first['id']}" in err
    form = aiohttp.FormData()
    form.add_field("file", data, filename="a.pfx")
    form.add_field("password", PASSWORD)
    refused = (await admin.api.call("POST", f"{ACCOUNTS}/{acc}/chains/import", data=form)
               ).problem(409, "conflict")
    assert f"certgate pki bind {acc} acme.test {first['id']}" in refused["detail"]
    assert f"PUT {ACCOUNTS}/{acc}/pki" in refused["detail"]
    assert len(await cli.json("chain", "list", acc)) == 3  # signing + two TLS: unchanged

    bound = await cli.json("chain", "import", acc, "a.pfx", "--password-file", "pw.txt",
                           "--bind")
    assert bound["id"] == first["id"] and bound["served_for"] == ["acme.test"]
    assert (await cli.json("pki", "show", acc))["tls_bindings"] == {"acme.test": first["id"]}
    assert len(await cli.json("chain", "list", acc)) == 3  # bound, not stored twice
    assert await admin.gateway.settle()


async def test_refusals_with_json_still_exit_non_zero(admin: AdminEnv, tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    for args in (("account", "delete", "acc_missing"), ("chain", "delete", "chn_missing"),
                 ("apikey", "revoke", "key_missing"),
                 ("trusted-ca", "delete", "acc_missing", "tca_x")):
        _, out, err = await cli(*args, "--json", ok=False)
        assert err.startswith("error: ") and out == "", args


async def test_api_refuses_a_repeated_domain_too(admin: AdminEnv) -> None:
    """The API's body has one ``domain``: naming it twice is refused, not "last one wins"."""
    acc = await _account(admin, "a.test", "b.test")
    path = f"{ACCOUNTS}/{acc}/chains"
    before = (await admin.api.ok("GET", path))["chains"]
    body = b'{"purpose": "tls", "domain": "a.test", "domain": "b.test"}'
    refused = (await admin.api.call("POST", path + "/generate", data=body,
                                    headers={"Content-Type": "application/json"})
               ).problem(422, "invalid-request")
    assert "'domain' is repeated" in refused["detail"]
    assert refused["errors"] == [{"field": "domain", "message": "repeated field",
                                  "type": "repeated_field"}]
    nested = b'{"name": "x", "kind": "vendor", "domains": [], "name": "y"}'
    (await admin.api.call("POST", ACCOUNTS, data=nested,
                          headers={"Content-Type": "application/json"})
     ).problem(422, "invalid-request")
    assert (await admin.api.ok("GET", path))["chains"] == before  # nothing issued
    ok = await admin.api.ok("POST", path + "/generate", 201,
                            json_body={"purpose": "tls", "domain": "b.test"})
    assert ok["dns_names"] == ["b.test"]
