"""certgate as a compared server: ``certgate serve`` on a store holding every tenant.

``prepare`` (not timed) loads the tenants into a fresh store in one transaction through
certstore's own database and sealing modules: account, domain, chain, sealed key. It skips
the PKCS#12 import rules, which would take minutes for 10,000 tenants and are not what this
benchmark measures. ``start`` runs the real ``certgate serve`` pinned to the server CPUs.

A chain change goes the way an admin's does, durably: the new chain is wrapped in a PKCS#12
file and imported with ``CertStore.import_chain`` (every import rule applies, the key is
sealed, the commit appends to the change feed), then bound to the tenant's domain. The
running gateway follows the feed (10 ms poll across processes) and serves it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..certs import Tenant, TenantSet
from ..loadgen import pinned
from .base import ChainChange, Server, ServerError, Upstream, launch, stop_process, tail

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from certstore.keys import key_to_der  # noqa: E402
from certstore.model import Account, Chain  # noqa: E402
from certstore.persistence.keyfile import create_master_key, read_master_key  # noqa: E402
from certstore.persistence.location import open_database  # noqa: E402
from certstore.sealing import Sealer, record_aad  # noqa: E402
from certstore.store import CertStore  # noqa: E402
from certstore.x509info import describe, key_type  # noqa: E402

PASSWORD = b"bench-change"
T = TypeVar("T")


async def _bulk_load(db_path: Path, master_key: bytes, tenants: TenantSet) -> dict[str, str]:
    """Accounts, domains and chains for every tenant; returns ``name -> account id``."""
    store, _ = await CertStore.initialize(db_path, master_key, ca_key_type="ecdsa-p256")
    await store.close()
    sealer = Sealer(master_key)
    db = await open_database(db_path)
    now = dt.datetime.now(dt.UTC)
    ids: dict[str, str] = {}
    try:
        async with db.write(now) as w:
            for i, tenant in enumerate(tenants.tenants):
                account_id, chain_id = f"acc_bench{i:06d}", f"chn_bench{i:06d}"
                await w.insert_account(Account(id=account_id, name=tenant.name,
                                               kind="customer", parent_id=None, domains=(),
                                               created_at=now))
                await w.insert_domain(account_id, tenant.name)
                pem = tenant.chain_path.read_bytes()
                leaf = describe(x509.load_pem_x509_certificates(pem)[0])
                # The bench made these keys: skip RSA validation (~40 ms a key, minutes for
                # 10,000) in this untimed preparation.
                key = serialization.load_pem_private_key(
                    tenant.key_path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
                chain = Chain(id=chain_id, account_id=account_id, purpose="tls",
                              origin="imported", key_type=key_type(key),
                              dns_names=(tenant.name,), subject=leaf.subject,
                              issuer=leaf.issuer, serial=leaf.serial,
                              not_before=leaf.not_before, not_after=leaf.not_after,
                              fingerprint_sha256=leaf.fingerprint_sha256,
                              chain_pem=pem.decode(), created_at=now)
                sealed = sealer.seal(key_to_der(key),
                                     aad=record_aad("chain", chain_id, account_id))
                await w.insert_chain(chain, sealed)
                ids[tenant.name] = account_id
            await w.change("bench.loaded", None, None)
    finally:
        await db.close()
    return ids


class _AdminSide:
    """An open store on its own event loop thread, as a running admin service holds one."""

    def __init__(self, db_path: Path, master_key: bytes) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = self.run(CertStore.open(db_path, master_key))

    def run(self, coro: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def change(self, account_id: str, p12: bytes) -> None:
        # Import and bind in one transaction: served at once, whatever its expiry.
        await self.store.import_chain(account_id, p12, PASSWORD, bind=True)

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class CertgateServer(Server):
    """``certgate serve`` (one worker, uvloop) with every tenant in its SQLite store."""

    name = "certgate"

    def __init__(self, workdir: Path, cpus: str | None) -> None:
        """See :class:`Server`."""
        super().__init__(workdir, cpus)
        self.proc: subprocess.Popen[bytes] | None = None
        self.data = workdir / "var"
        self.config = workdir / "certgate.yaml"
        self.accounts: dict[str, str] = {}
        self.admin: _AdminSide | None = None
        self._p12: bytes | None = None

    @classmethod
    def available(cls) -> str | None:
        """See :class:`Server`."""
        try:
            import gateway.cli  # noqa: F401
        except ImportError as e:
            return f"certgate is not importable ({e}); run `make install`"
        return None

    def version(self) -> str:
        """See :class:`Server`."""
        import ssl

        try:
            import uvloop

            loop = f"uvloop {uvloop.__version__}"
        except ImportError:
            loop = "asyncio"
        return f"certgate (Python {sys.version.split()[0]}, {loop}); {ssl.OPENSSL_VERSION}"

    def prepare(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`: a fresh store holding every tenant, and the config."""
        self.stop()
        if self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(mode=0o700)
        create_master_key(self.data / "master.key")
        master = read_master_key(self.data / "master.key")
        self.accounts = asyncio.run(_bulk_load(self.data / "certgate.sqlite", master, tenants))
        # Access log off, as nginx (`access_log off`) and haproxy (no logging) run here.
        self.config.write_text(json.dumps({
            "data_dir": str(self.data), "ca": {"key_type": "ecdsa-p256"}, "access_log": False,
            "listeners": [{"name": "bench", "kind": "https", "bind": f"127.0.0.1:{port}",
                           "upstream": upstream.url, "max_connections": 9000,
                           "default_chain": "chn_bench000000", "idle_timeout_s": 120,
                           "upstream_response_timeout_s": 120}],
        }))

    def start(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`."""
        cmd = [sys.executable, "-m", "gateway.cli", "-c", str(self.config), "serve"]
        env_log = self.workdir / "certgate.log"
        os.environ.setdefault("CERTGATE_LOG_LEVEL", "WARNING")
        self.proc = launch(pinned(cmd, self.cpus), env_log)

    def stop(self) -> None:
        """See :class:`Server`: SIGTERM drains, then exits."""
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None
        if self.admin is not None:
            self.admin.close()
            self.admin = None

    def log_tail(self, lines: int = 5) -> str:
        """See :class:`Server`."""
        return tail(self.workdir / "certgate.log", lines)

    def pids(self) -> list[int]:
        """See :class:`Server`."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServerError(f"certgate is not running; see {self.workdir / 'certgate.log'}")
        return [self.proc.pid]

    def prepare_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> None:
        """See :class:`Server`: the PKCS#12 file an admin uploads, and the admin service's
        open store (a running admin API holds one)."""
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        # Encrypted as `openssl pkcs12 -export` does by default (PBES2/AES-256, 2048 PBKDF2
        # and MAC iterations): what an admin uploads. The KDF still runs on import.
        encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                      .kdf_rounds(2048).key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                      .hmac_hash(hashes.SHA256()).build(PASSWORD))
        self._p12 = pkcs12.serialize_key_and_certificates(
            b"bench", key, certs[0], certs[1:], encryption)  # type: ignore[arg-type]
        if self.admin is None:
            self.admin = _AdminSide(self.data / "certgate.sqlite",
                                    read_master_key(self.data / "master.key"))

    def apply_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> ChainChange:
        """Import the prepared PKCS#12 through the store API and bind it (durable)."""
        if self.admin is None or self._p12 is None:
            self.prepare_chain_change(tenant, chain_pem, key_pem)
        assert self.admin is not None and self._p12 is not None
        p12, self._p12 = self._p12, None
        started = time.perf_counter()
        self.admin.run(self.admin.change(self.accounts[tenant.name], p12))
        return ChainChange(method="CertStore.import_chain(bind=True): PKCS#12, all rules, "
                                  "bound in the same commit, from an open store in another "
                                  "process; the gateway follows the change feed",
                           durable=True, command_s=time.perf_counter() - started)
