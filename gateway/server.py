"""The running gateway: listeners, the change-feed follower, the admin listener, signals.

``serve(config)`` runs until SIGTERM/SIGINT (or ``shutdown_trigger``): it stops accepting,
lets in-flight requests finish within ``graceful_timeout_s``, then exits. SIGHUP re-reads the
config file: listeners that changed are replaced (the new socket binds beside the old one
with SO_REUSEPORT before the old one stops accepting), removed ones drained, new ones started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path

# certstore imports jwt and its PKCS#12 parser lazily (the CLI's start-up time); the server
# loads them here, at start, rather than in the event loop during a request.
import jwt  # noqa: F401
from aiohttp import web

import certstore.pkcs12  # noqa: F401
from certstore.errors import NotFound
from certstore.persistence.keyfile import read_master_key
from certstore.snapshot import ServedChain, Snapshot
from certstore.store import CertStore
from gateway.admin.app import SERVER_LOG, create_app
from gateway.admin.https_only import HttpsOnly
from gateway.admin.limits import MutationLimits
from gateway.admin.workers import ProcessOffload
from gateway.config import Config, ListenerConfig, load_config
from gateway.errors import ConfigError
from gateway.fleet import NodeReporter
from gateway.lifecycle import Lifecycle
from gateway.listener import Listener, open_socket, server_policy
from gateway.observe import AccessLog, Metrics
from gateway.reload import FULL_POLL_S, SAFETY_POLL_S, Follower
from gateway.tls.contexts import ChainContext, ContextCache, admin_context, chain_context
from gateway.tls.policy import ServerPolicy
from gateway.tls.selector import SnapshotRef
from gateway.workershare import PUBLISH_S, WorkerShare

WARM_ACCOUNTS = 4
"""Changed accounts whose contexts are rebuilt at once (more: built on demand)."""
WARM_CHAINS = 2
"""Chains per changed account rebuilt at once."""
log = logging.getLogger("certgate")
DEFAULT_NAME = "default.certgate.invalid"  # RFC 2606 .invalid: never a tenant's name


_SCHEMES = {"https": "https", "ipps": "ipps", "tcp": "tls"}


def _url(scheme: str, bind: str, bound: socket.socket | int) -> str:
    """Where a listener answers: its bind address with the port it really got (port 0)."""
    host = bind.rpartition(":")[0]
    port = bound if isinstance(bound, int) else bound.getsockname()[1]
    return f"{scheme}://{host}:{port}"


def _upstreams(cfg: ListenerConfig) -> str:
    if cfg.upstream is not None:
        return cfg.upstream
    return ", ".join(f"{r.prefix} {r.upstream}" for r in cfg.routes)


def _bind_ips(binds: list[str]) -> tuple[str, ...]:
    ips = []
    for bind in binds:
        host = bind.rpartition(":")[0].strip("[]")
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(host).is_unspecified:
                ips.append(host)
    return tuple(dict.fromkeys(ips))


class Gateway:
    """All running parts of one gateway process."""

    def __init__(self, config: Config, store: CertStore, *, reuse_port: bool) -> None:
        self.config = config
        self.store = store
        self.ref = SnapshotRef(snapshot=None)  # type: ignore[arg-type]  # set in start()
        self.cache = ContextCache(store.open_key, config.context_cache_size)
        # With --workers N, the siblings' published metrics (see gateway.workershare).
        self._share = WorkerShare.from_environment()
        self.metrics = Metrics(lambda: self.ref.snapshot, active=self._active,
                               context_cache=lambda: len(self.cache),
                               siblings=self._share.siblings if self._share else list,
                               store_connected=lambda: store.health.connected)
        self.access_log = AccessLog(enabled=config.access_log)
        self.listeners: dict[str, Listener] = {}
        self._retiring: set[Listener] = set()  # replaced by a reload, still draining
        self._reuse_port = reuse_port
        self._follower_task: asyncio.Task[None] | None = None
        self._follower: Follower | None = None
        self._admin: web.AppRunner | None = None
        self._admin_sock: socket.socket | None = None
        self._admin_accept: HttpsOnly | None = None
        self._offload: ProcessOffload | None = None
        self._generated_default: tuple[ServedChain, bytes] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifecycle: Lifecycle | None = None
        self.node: NodeReporter | None = None

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @classmethod
    async def start(cls, config: Config, *, reuse_port: bool = True) -> Gateway:
        """Open the store, build the snapshot, start every listener and the admin API."""
        store = await CertStore.open(config.database_location,
                                     read_master_key(config.master_key_path),
                                     token_issuer=config.token_issuer)
        store.lifetimes = config.lifecycle.lifetimes()
        gateway = cls(config, store, reuse_port=reuse_port)
        try:
            await gateway._start()
        except BaseException:
            await gateway.close()
            raise
        return gateway

    async def _start(self) -> None:
        started = time.monotonic()
        # Start-up allocates ~10 objects per tenant and none of them is garbage: with the
        # collector off, loading 10,000 tenants does not rescan them (about a third of the
        # load's time otherwise). The modules imported so far are frozen out of its scans.
        gc.freeze()
        gc.disable()
        try:
            # The gateway's own chains need key generation (RSA-2048 for the no-SNI default:
            # 10-130 ms): it runs in a thread while the snapshot loads.
            self.ref.snapshot, admin_chain = await asyncio.gather(
                self.store.snapshot(), self._own_chains())
        finally:
            gc.enable()
        watch_dir = self.store.database.watch_directory
        # PostgreSQL: NOTIFY wakes the follower; the poll is only the slow safety net.
        follower = Follower(self.store, self.ref, poll_s=self.config.store_poll_interval_s
                            if watch_dir is not None else SAFETY_POLL_S,
                            full_poll_s=FULL_POLL_S if watch_dir is not None
                            else SAFETY_POLL_S,
                            watch_dir=None if watch_dir is None else Path(watch_dir),
                            on_accounts_changed=self._changed,
                            on_reload=self._on_reload)
        self._follower = follower
        self._follower_task = asyncio.create_task(follower.run(), name="certgate-follower")
        name = self.config.fleet_node_name
        if self._share is not None:  # --workers N: each worker follows on its own
            name = f"{name}/{os.getpid()}"
        self.node = NodeReporter(self.store.database, name, self.ref.snapshot.seq)
        self.spawn(self.node.run())
        for cfg in self.config.listeners:
            self.listeners[cfg.name] = await self._start_listener(cfg)
        if admin_chain is not None:
            await self._start_admin(admin_chain)
        if self._share is not None:
            self.spawn(self._publish_metrics(self._share))
        self._lifecycle = Lifecycle(self.store, self.config.lifecycle, self.metrics)
        self.spawn(self._lifecycle.run())
        # Imported here: dnspython costs ~0.25 s of start-up that CLI commands never need.
        from gateway.dnscheck import check_pending_forever, txt_lookup

        dns = self.config.dns
        if dns.check_interval_s > 0:
            self.spawn(check_pending_forever(
                self.store, txt_lookup(dns.resolvers, dns.timeout_s), dns.check_interval_s))
        # What start-up built (modules, the snapshot) lives as long as the process: keep it
        # out of the collector's scans, which otherwise walk it again and again while
        # connections churn short-lived objects. (No collection first: start-up makes
        # next to no cyclic garbage, and a full collection costs ~60 ms here.)
        gc.freeze()
        gc.set_threshold(20000, 20, 20)
        for cfg in self.config.listeners:
            listener = self.listeners[cfg.name]
            log.info("listener %s (%s) on %s -> %s", cfg.name, cfg.kind,
                     _url(_SCHEMES[cfg.kind], cfg.bind, listener.port), _upstreams(cfg))
        if self._admin_sock is not None and self._admin_accept is not None:
            log.info("admin API on %s (TLS with a certgate CA chain: `certgate ca show`)",
                     self._admin_accept.url)
        log.info("certgate started %d listener(s) in %.0f ms", len(self.listeners),
                 (time.monotonic() - started) * 1000)

    async def settle(self, timeout_s: float = 2.0) -> bool:
        """Wait until every change committed so far is served (bounded); True if it is."""
        if self._follower is None:
            return True
        return await self._follower.wait_applied(await self.store.last_seq(), timeout_s)

    def _on_reload(self, snapshot: Snapshot) -> None:
        self.metrics.reloads += 1
        if self.node is not None:
            self.node.applied(snapshot.seq)

    async def _publish_metrics(self, share: WorkerShare) -> None:
        while True:
            share.publish(self.metrics.state())
            await asyncio.sleep(PUBLISH_S)

    def _changed(self, account_ids: set[str]) -> None:
        dropped = self.cache.drop_accounts(account_ids)
        if len(dropped) > WARM_ACCOUNTS:
            return  # a bulk change: contexts are built as handshakes ask for them
        # Accounts whose chains were in use get their new contexts now, right after the
        # swap, instead of in the next client's handshake (about 0.7 ms each).
        snapshot = self.ref.snapshot
        for account_id, policies in dropped.items():
            for served in snapshot.selected(account_id)[:WARM_CHAINS]:
                for policy in policies:
                    try:
                        self.cache.get(served, policy)
                    except Exception:  # the handshake that needs it reports it
                        log.warning("chain %s: context not built in advance", served.chain_id)

    def _active(self) -> dict[str, int]:
        return {name: listener.active for name, listener in self.listeners.items()}

    async def _default_context(self, cfg: ListenerConfig, policy: ServerPolicy,
                               index: int) -> ChainContext:
        if cfg.default_chain is not None:
            try:
                served = await self.store.served_chain(cfg.default_chain)
            except NotFound as e:
                raise ConfigError(f"listeners.{index}.default_chain: no chain with id "
                                  f"{cfg.default_chain!r}", key=f"listeners.{index}.default_chain"
                                  ) from e
            return self.cache.get(served, policy)
        return chain_context(*await self._generated_default_chain(), policy)

    async def _generated_default_chain(self) -> tuple[ServedChain, bytes]:
        """The chain for clients without SNI on listeners that name none, made once (never
        stored; RSA: old terminals want it)."""
        if self._generated_default is None:
            binds = [c.bind for c in self.config.listeners]
            self._generated_default = await self.store.ephemeral_chain(
                name=DEFAULT_NAME, ip_addresses=_bind_ips(binds))
        return self._generated_default

    async def _own_chains(self) -> tuple[ServedChain, bytes] | None:
        """Make the chains the gateway makes for itself side by side: the no-SNI default
        (when a listener needs it) and the admin API's, which is returned (None without an
        admin API)."""
        async def default() -> None:
            if any(c.default_chain is None for c in self.config.listeners):
                await self._generated_default_chain()

        async def admin() -> tuple[ServedChain, bytes] | None:
            if self.config.admin is None:
                return None
            return await self.store.ephemeral_chain(
                name="localhost", ip_addresses=_bind_ips([self.config.admin.bind]),
                key_type="ecdsa-p256")

        _, made_admin = await asyncio.gather(default(), admin())
        return made_admin

    async def _start_listener(self, cfg: ListenerConfig,
                              config: Config | None = None) -> Listener:
        """Open and start one listener of ``config`` (the running one by default).

        The listener is returned, not yet tracked: the caller decides when it replaces one.
        """
        index = list((config or self.config).listeners).index(cfg)
        default = await self._default_context(cfg, server_policy(cfg), index)
        listener = Listener(cfg, ref=self.ref, cache=self.cache, default=default,
                            metrics=self.metrics, access_log=self.access_log,
                            reuse_port=self._reuse_port)
        try:
            await listener.start()
        except OSError as e:
            raise ConfigError(f"listener {cfg.name!r} cannot bind {cfg.bind}: {e.strerror}",
                              key=f"listeners.{index}.bind") from e
        return listener

    async def _start_admin(self, chain: tuple[ServedChain, bytes]) -> None:
        assert self.config.admin is not None
        bind = self.config.admin.bind
        ctx = admin_context(*chain)
        admin = self.config.admin
        # Admin requests' heavy crypto runs in worker processes, off this process's GIL
        # (issue 10): the handshakes of every listener never wait for an import.
        if admin.crypto_workers:  # 0 keeps the in-thread default, to measure the difference
            self._offload = ProcessOffload(admin.crypto_workers, queue=admin.crypto_queue,
                                           job_timeout_s=admin.crypto_job_timeout_s,
                                           lowest_priority=admin.crypto_lowest_priority)
            self.store.offload = self._offload
        limits = MutationLimits(per_key=admin.max_mutations_per_key,
                                per_account=admin.max_mutations_per_account)
        from gateway.dnscheck import txt_lookup

        app = create_app(self.metrics, self.store, max_upload_bytes=admin.max_upload_bytes,
                         settle=self.settle, session_ttl_s=admin.session_ttl_s,
                         lookup=txt_lookup(self.config.dns.resolvers, self.config.dns.timeout_s),
                         limits=limits)
        # No access log, and server errors without request bytes: admin requests carry API
        # keys and uploads (the audit log records who did what).
        self._admin = web.AppRunner(app, access_log=None, logger=SERVER_LOG)
        await self._admin.setup()
        try:
            sock = open_socket(bind, reuse_port=self._reuse_port)
        except OSError as e:
            raise ConfigError(f"admin cannot bind {bind}: {e.strerror}", key="admin.bind"
                              ) from e
        self._admin_sock = sock
        assert self._admin.server is not None  # set by setup()
        self._admin_accept = HttpsOnly(sock, self._admin.server, ctx,
                                       url=f"{_url('https', bind, sock)}/api/v1/")
        self._admin_accept.start()

    @property
    def admin_port(self) -> int | None:
        """The admin listener's bound port."""
        if self._admin_sock is None:
            return None
        return int(self._admin_sock.getsockname()[1])

    async def reload_config(self, new: Config) -> None:
        """Apply a re-read config: replace changed listeners, drop removed, start new.

        All or nothing: every new or changed listener is started first (a changed one binds
        beside its old socket with SO_REUSEPORT). If one cannot start (its port is taken,
        say), those started for this reload are closed again, the running listeners and
        config stay exactly as they were, and the error says why. Only then are the old
        listeners retired; they stay tracked while they drain, so a later SIGTERM still
        waits for their requests in flight.
        """
        old = {c.name: c for c in self.config.listeners}
        started: dict[str, Listener] = {}
        try:
            for cfg in new.listeners:
                if old.get(cfg.name) != cfg:
                    started[cfg.name] = await self._start_listener(cfg, new)
        except BaseException:
            for listener in started.values():
                await listener.close()
            raise
        self.config = new
        for name, listener in started.items():
            previous = self.listeners.get(name)
            self.listeners[name] = listener
            if previous is not None:
                self._retire(previous)
        for name in set(old) - {c.name for c in new.listeners}:
            self._retire(self.listeners.pop(name))
        log.info("configuration reloaded: %s", ", ".join(self.listeners) or "no listeners")

    def _retire(self, listener: Listener) -> None:
        """Stop accepting on ``listener`` and close it once its connections are done."""
        listener.stop_accepting()
        listener.drain()
        self._retiring.add(listener)
        self.spawn(self._close_when_idle(listener))

    async def _close_when_idle(self, listener: Listener) -> None:
        await self._wait_idle([listener], self.config.graceful_timeout_s)
        self._retiring.discard(listener)
        await listener.close()

    @staticmethod
    async def _wait_idle(listeners: list[Listener], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while any(listener.active for listener in listeners):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close everything."""
        listeners = [*self.listeners.values(), *self._retiring]
        for listener in listeners:
            listener.stop_accepting()
            listener.drain()
        if not await self._wait_idle(listeners, self.config.graceful_timeout_s):
            log.warning("graceful timeout: closing %d connection(s)",
                        sum(x.active for x in listeners))
        await self.close()

    async def close(self) -> None:
        """Close everything now."""
        if self.node is not None:
            await self.node.leave()
        if self._follower_task is not None:
            self._follower_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower_task
        for task in list(self._tasks):
            task.cancel()
        if self._lifecycle is not None:
            await self._lifecycle.close()
        for listener in [*self.listeners.values(), *self._retiring]:
            await listener.close()
        self.listeners.clear()
        self._retiring.clear()
        if self._admin_accept is not None:
            await self._admin_accept.close()
            self._admin_accept = None
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._offload is not None:
            await self._offload.close()
            self._offload = None
        if self._share is not None and self.ref.snapshot is not None:
            self._share.publish(self.metrics.state())  # this worker's final counts
        self.access_log.flush()
        await self.store.close()


async def serve(config: Config, *, config_path: Path | None = None,
                shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
                reuse_port: bool = True) -> None:
    """Run the gateway until SIGTERM/SIGINT or ``shutdown_trigger`` completes."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hup = asyncio.Event()
    # Handlers first: a signal that arrives while listeners start must not kill the process
    # (SIGHUP's default action); it is acted on once the gateway runs.
    installed = []
    for sig, handler in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set),
                         (signal.SIGHUP, hup.set)):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        gateway = await Gateway.start(config, reuse_port=reuse_port)
    except BaseException:
        for sig in installed:
            loop.remove_signal_handler(sig)
        raise
    reloads = asyncio.create_task(_reload_on_hup(gateway, hup, config_path))
    waiters: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
    if shutdown_trigger is not None:
        waiters.append(asyncio.create_task(_await(shutdown_trigger)))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*waiters, reloads]:
            task.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        active = sum(listener.active for listener in gateway.listeners.values())
        log.info("certgate stopping: %d connection(s) open, waiting up to %.0f s for them",
                 active, config.graceful_timeout_s)
        stopping = time.monotonic()
        await gateway.shutdown()
        log.info("certgate stopped in %.1f s", time.monotonic() - stopping)


async def _reload_on_hup(gateway: Gateway, hup: asyncio.Event, path: Path | None) -> None:
    """Re-read the config file on each SIGHUP; a bad file keeps the running config."""
    while True:
        await hup.wait()
        hup.clear()
        if path is None:
            log.warning("SIGHUP ignored: no config file to re-read")
            continue
        try:
            await gateway.reload_config(load_config(path))
        except Exception as e:
            log.error("configuration not reloaded (the running listeners keep serving): %s", e)


async def _await(fn: Callable[[], Awaitable[object]]) -> None:
    await fn()
