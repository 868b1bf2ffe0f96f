"""Memory of the per-chain server contexts: why "RSS < 100 MB with 10,000 tenants" is out of reach.

Run: .venv/bin/python bench/context_memory.py [--chains 2000]

Issue 3 asks for one server ``SSLContext`` per chain, built on first use and cached, and
for an RSS under 100 MB after a handshake load over 10,000 tenants (every chain in use).
This script builds ``--chains`` contexts exactly as the gateway does
(``gateway.tls.contexts.chain_context``: leaf + issuing CA + key, ALPN) and measures the
process's RSS growth per context. It also measures what parsing the same certificates and
keys costs without any context (``SSL_CTX``), through the OpenSSL that ``_ssl`` links:
the floor for a design that attached a chain per connection instead. It prints both,
extrapolated to 10,000 tenants, next to the interpreter's own RSS. Chains are ECDSA P-256,
the smaller case (an RSA-2048 key and certificate take more).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from certstore.ca import create_ca, issue_chain  # noqa: E402
from certstore.snapshot import ServedChain  # noqa: E402
from gateway.tls.contexts import chain_context  # noqa: E402
from gateway.tls.policy import ServerPolicy  # noqa: E402

TENANTS = 10_000


def rss_kb() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_chains(count: int) -> list[tuple[ServedChain, bytes, bytes]]:
    """``count`` generated ECDSA P-256 chains: (served chain, PKCS#8 key DER, leaf DER)."""
    now = dt.datetime.now(dt.UTC)
    ca = create_ca(now=now, key_type="ecdsa-p256")
    out: list[tuple[ServedChain, bytes, bytes]] = []
    for i in range(count):
        name = f"tenant{i}.bench.example"
        issued = issue_chain(ca, purpose="tls", common_name=name, dns_name=name,
                             key_type="ecdsa-p256", now=now)
        leaf, issuing = issued.certificates
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, issuing))
        key_der = issued.key.private_bytes(serialization.Encoding.DER,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        served = ServedChain(chain_id=f"chn_{i}", account_id=f"acc_{i}", names=(name,),
                             not_before_ts=0.0, not_after_ts=2e9, chain_pem=pem,
                             sealed_key=b"", key_type="ecdsa-p256", fingerprint_sha256=str(i))
        out.append((served, key_der, leaf.public_bytes(serialization.Encoding.DER)))
    return out


def measure_contexts(chains: list[tuple[ServedChain, bytes, bytes]], keep: list[object]
                     ) -> dict[str, float]:
    """RSS growth and build time per context built like the gateway's (kept in ``keep``)."""
    gc.collect()
    before = rss_kb()
    started = time.perf_counter()
    policy = ServerPolicy(alpn=("http/1.1",))
    kept = [chain_context(served, key_der, policy) for served, key_der, _ in chains]
    elapsed = time.perf_counter() - started
    grown = rss_kb() - before
    keep.append(kept)
    return {"kb_per_chain": grown / len(chains), "ms_per_build": elapsed * 1000 / len(chains)}


def measure_parsed(chains: list[tuple[ServedChain, bytes, bytes]], keep: list[object]
                   ) -> dict[str, float]:
    """RSS growth per parsed leaf + key (OpenSSL ``X509`` and ``EVP_PKEY``), no context.

    The parsed objects are never freed: ``keep`` holds their addresses until the end.
    """
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)  # resolves the libcrypto that _ssl is linked with
    pointer = ctypes.POINTER(ctypes.c_char_p)
    lib.d2i_X509.argtypes = [ctypes.c_void_p, pointer, ctypes.c_long]
    lib.d2i_X509.restype = ctypes.c_void_p
    lib.d2i_AutoPrivateKey.argtypes = [ctypes.c_void_p, pointer, ctypes.c_long]
    lib.d2i_AutoPrivateKey.restype = ctypes.c_void_p
    gc.collect()
    before = rss_kb()
    started = time.perf_counter()
    kept: list[tuple[int, int]] = []
    for _served, key_der, leaf_der in chains:
        cert_p = ctypes.c_char_p(leaf_der)
        key_p = ctypes.c_char_p(key_der)
        cert = lib.d2i_X509(None, ctypes.byref(cert_p), len(leaf_der))
        key = lib.d2i_AutoPrivateKey(None, ctypes.byref(key_p), len(key_der))
        if not cert or not key:
            raise RuntimeError("OpenSSL could not parse a generated leaf or key")
        kept.append((cert, key))
    keep.append(kept)
    elapsed = time.perf_counter() - started
    grown = rss_kb() - before
    return {"kb_per_chain": grown / len(chains), "us_per_parse": elapsed * 1e6 / len(chains)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2000)
    args = parser.parse_args()
    if args.chains < 100:
        parser.error("--chains must be at least 100 for a meaningful average")
    import gateway.server  # noqa: F401  (what `certgate serve` imports, for the baseline)

    baseline_mb = rss_kb() / 1024
    chains = make_chains(args.chains)
    # Everything measured stays allocated until the end, so that one measurement cannot
    # reuse memory another one freed.
    keep: list[object] = []
    contexts = measure_contexts(chains, keep)
    parsed = measure_parsed(chains, keep)
    result = {
        "key_type": "ecdsa-p256",
        "chains": args.chains,
        "interpreter_and_libraries_mb": round(baseline_mb, 1),
        "context": {k: round(v, 2) for k, v in contexts.items()},
        "parsed_leaf_and_key": {k: round(v, 2) for k, v in parsed.items()},
        "contexts_for_10000_tenants_mb": round(contexts["kb_per_chain"] * TENANTS / 1024),
        "parsed_for_10000_tenants_mb": round(parsed["kb_per_chain"] * TENANTS / 1024),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
