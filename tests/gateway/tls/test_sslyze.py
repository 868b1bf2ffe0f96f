"""sslyze's Mozilla "intermediate" check passes against the https and ipps listeners, for an
ECDSA and an RSA chain (sslyze runs from its own virtualenv, ``make tools``: it pins an
older ``cryptography`` than certgate's)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import init_store, running_gateway, upstream_server

ROOT = Path(__file__).resolve().parents[3]
SSLYZE = ROOT / ".venv-tools" / "bin" / "sslyze"


@pytest.fixture
async def tenants(tmp_path: Path) -> None:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acme = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
        await store.generate_chain(acme.id, purpose="tls", domain="acme.test")
        globex = await store.create_account(name="Globex", kind="customer",
                                            domains=["globex.test"])
        await store.generate_chain(globex.id, purpose="tls", domain="globex.test",
                                   key_type="rsa-2048")
    finally:
        await store.close()


@pytest.mark.timeout(600)
async def test_mozilla_intermediate_on_https_and_ipps(tmp_path: Path, tenants: None) -> None:
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
            subprocess.run, [str(SSLYZE), "--mozilla_config=intermediate", *targets],
            capture_output=True, text=True, timeout=540)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for target in targets:
        host_port = target.split("{")[0]
        assert f"{host_port}: OK - Compliant." in text, text
