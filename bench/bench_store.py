"""Certificate-store benchmark: PKCS#12 import, chain generation, select() scaling.

Run: .venv/bin/python bench/bench_store.py [--quick]
Prints one line per figure. select() must stay flat from 10 to 100,000 accounts (it is two
dict look-ups); import and generation show where the CPU goes (PBKDF2/MAC, key generation).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certstore.ca import create_ca
from certstore.chains import prepare_generated, prepare_import
from certstore.sealing import Sealer
from certstore.snapshot import AccountEntry, ServedChain, Snapshot
from certstore.store import CertStore
from tests.certfactory import make_ca, make_leaf, new_key, p12

NOW = dt.datetime.now(dt.UTC)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls, in seconds."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(label: str, samples: list[float], unit: str = "ms") -> None:
    scale = 1e3 if unit == "ms" else 1e9
    med = statistics.median(samples) * scale
    p95 = sorted(samples)[int(len(samples) * 0.95) - 1] * scale if len(samples) > 1 else med
    print(f"{label:<48} median {med:10.3f} {unit}   p95 {p95:10.3f} {unit}   n={len(samples)}")


def bench_import(repeat: int) -> None:
    root = make_ca("Bench Root")
    inter = make_ca("Bench Issuing", issuer=root)
    for kind in ("ec", "rsa"):
        leaf = make_leaf(inter, dns=["bench.example"], key=new_key(kind))
        data = p12(leaf, b"bench-password")
        report(
            f"PKCS#12 import rules ({kind}, AES-256/PBKDF2)",
            timed(
                lambda data=data: prepare_import(
                    data=data,
                    password=b"bench-password",
                    domains=frozenset({"bench.example"}),
                    now=NOW,
                ),
                repeat,
            ),
        )


def bench_generate(repeat: int) -> None:
    authority = create_ca(now=NOW, key_type="rsa-3072")
    for key_type in ("ecdsa-p256", "rsa-2048"):
        report(
            f"chain generation ({key_type})",
            timed(
                lambda kt=key_type: prepare_generated(
                    authority=authority,
                    purpose="tls",
                    domain="bench.example",
                    common_name="bench.example",
                    key_type=kt,
                    now=NOW,
                ),
                repeat,
            ),
        )


def _snapshot(accounts: int) -> tuple[Snapshot, list[str]]:
    entries = []
    names = []
    for i in range(accounts):
        domain = f"tenant{i}.bench.example"
        names.append(domain)
        chains = (
            ServedChain(
                chain_id=f"c{i}",
                account_id=f"a{i}",
                names=(domain, "*." + domain),
                not_before_ts=0.0,
                not_after_ts=4e9,
                chain_pem=b"",
                sealed_key=b"",
                key_type="ecdsa-p256",
                fingerprint_sha256="",
            ),
        )
        entries.append(
            AccountEntry(
                account_id=f"a{i}", domains=frozenset({domain}), bindings={}, chains=chains
            )
        )
    return Snapshot.build(entries, seq=1), names


def _per_call(snap: Snapshot, probes: list[str]) -> float:
    now = time.time()
    start = time.perf_counter()
    for name in probes:
        snap.select(name, now)
    return (time.perf_counter() - start) / len(probes)


def bench_select(sizes: list[int], lookups: int) -> None:
    """Two probe sets per size: 1,000 hot names (shows the algorithm is O(1)) and names
    spread over every account (adds CPU-cache misses, which grow with the map, not the
    number of steps)."""
    for size in sizes:
        start = time.perf_counter()
        snap, names = _snapshot(size)
        build = time.perf_counter() - start
        hot = [names[(i * 7919) % size] for i in range(min(size, 1000))]
        hot = (hot * (lookups // len(hot) + 1))[:lookups]
        spread = [names[(i * 7919) % size] for i in range(lookups)]
        print(
            f"select() with {size:>7} accounts: exact {_per_call(snap, hot) * 1e9:6.0f} ns, "
            f"wildcard {_per_call(snap, ['x.' + n for n in hot]) * 1e9:6.0f} ns "
            f"(1,000 hot names); spread over all {_per_call(snap, spread) * 1e9:6.0f} ns; "
            f"snapshot built in {build * 1e3:.0f} ms"
        )


async def bench_store_roundtrip(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = await CertStore.initialize(
            Path(tmp) / "db.sqlite", Sealer.new_master_key(), ca_key_type="ecdsa-p256"
        )
        try:
            acc = await store.create_account(
                name="Bench", kind="customer", domains=["bench.example"]
            )
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                await store.generate_chain(acc.id, purpose="tls", domain="bench.example")
                samples.append(time.perf_counter() - start)
            report("store.generate_chain (P-256, sealed, committed)", samples)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 5 if args.quick else 30
    bench_import(repeat)
    bench_generate(repeat)
    asyncio.run(bench_store_roundtrip(repeat))
    bench_select([10, 1_000, 100_000], 20_000 if args.quick else 200_000)


if __name__ == "__main__":
    main()
