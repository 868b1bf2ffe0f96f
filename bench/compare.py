"""Compare TLS-terminating proxies side by side: nginx, HAProxy (and certgate, once plugged in).

Run from the repository root::

    .venv/bin/python bench/compare.py --quick          # smoke check, ~2-3 minutes
    .venv/bin/python bench/compare.py                  # full run, ~10-15 minutes

See bench/README.md for what each figure means and what must be installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tls_compare.report import notes, table
from tls_compare.runner import RunConfig, Runner, log
from tls_compare.servers import REGISTRY, load_server_class


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: 2 s per figure, 1 and 1,000 tenants, one chain change",
    )
    p.add_argument(
        "--servers",
        default="nginx,haproxy,certgate",
        help="comma-separated servers; ratios are to nginx (default: %(default)s)",
    )
    p.add_argument(
        "--server-class",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="import and register an extra Server subclass (repeatable)",
    )
    p.add_argument("--key-types", default="ecdsa,rsa", help="default: %(default)s")
    p.add_argument(
        "--tenants",
        default=None,
        help="comma-separated tenant counts (default 1,1000,10000; quick 1,1000)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per throughput figure (default 5; quick 2)",
    )
    p.add_argument("--workers", type=int, default=32, help="handshake workers (default 32)")
    p.add_argument(
        "--connections", type=int, default=32, help="kept-alive connections for GETs (default 32)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="repeat each handshake/GET measurement, keep the median (default 3; quick 1)",
    )
    p.add_argument("--upload-mb", type=int, default=200, help="upload size, MB (default 200)")
    p.add_argument(
        "--chain-repeats",
        type=int,
        default=None,
        help="chain changes per server (default 3; quick 1)",
    )
    p.add_argument("--server-cpus", default="1", help="taskset -c list for the server")
    p.add_argument("--loadgen-cpus", default="0", help="taskset -c list for the load generator")
    p.add_argument("--upstream-cpus", default="0", help="taskset -c list for the upstream")
    p.add_argument(
        "--max-tls", choices=("1.2", "1.3"), default="1.3", help="highest TLS version offered"
    )
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="measure handshakes cold (default: one untimed handshake per tenant first)",
    )
    p.add_argument(
        "--no-interleave",
        action="store_true",
        help="one server at a time (default: all servers up at once, on --port, --port+1..., "
        "each figure's repeats alternating between them)",
    )
    p.add_argument("--port", type=int, default=18443)
    p.add_argument("--upstream-port", type=int, default=18080)
    p.add_argument(
        "--rsa-key-pool",
        type=int,
        default=16,
        help="distinct RSA leaf keys shared round-robin (0: one per leaf, slow)",
    )
    p.add_argument(
        "--ecdsa-key-pool",
        type=int,
        default=0,
        help="distinct ECDSA leaf keys (0: one per leaf, the default)",
    )
    p.add_argument(
        "--cert-dir",
        type=Path,
        default=None,
        help="generate certificates here and reuse them on later runs "
        "(default: inside the temporary work directory)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work directory (default: a temporary one, removed at the end)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary work directory")
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON results file (default: bench/results/compare.json, quick: compare-quick.json)",
    )
    return p.parse_args(argv)


def config_from(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    """Turn options into a :class:`RunConfig`."""
    tenants = args.tenants or ("1,1000" if args.quick else "1,1000,10000")
    return RunConfig(
        servers=_csv(args.servers),
        key_types=_csv(args.key_types),
        tenant_counts=[int(n) for n in _csv(tenants)],
        duration=args.duration or (2.0 if args.quick else 5.0),
        handshake_workers=args.workers,
        get_connections=args.connections,
        upload_mb=args.upload_mb,
        repeats=max(1, args.repeats or (1 if args.quick else 3)),
        chain_repeats=args.chain_repeats or (1 if args.quick else 3),
        server_cpus=args.server_cpus or None,
        loadgen_cpus=args.loadgen_cpus or None,
        upstream_cpus=args.upstream_cpus or None,
        interleave=not args.no_interleave,
        port=args.port,
        upstream_port=args.upstream_port,
        ecdsa_key_pool=args.ecdsa_key_pool,
        rsa_key_pool=args.rsa_key_pool,
        cert_dir=args.cert_dir,
        workdir=args.workdir,
        keep_workdir=args.keep_workdir,
        results_path=args.results
        or Path("bench/results/compare-quick.json" if args.quick else "bench/results/compare.json"),
        max_tls=args.max_tls,
        warmup=not args.no_warmup,
        command=shlex.join(["bench/compare.py", *argv]),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the JSON results."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for spec in args.server_class:
        load_server_class(spec)
    config = config_from(args, argv)
    unknown = [s for s in config.servers if s not in REGISTRY]
    if unknown:
        print(f"unknown server(s) {unknown}; known: {sorted(REGISTRY)}", file=sys.stderr)
        return 2
    runner = Runner(config)
    try:
        results = runner.run()
    finally:
        runner.results.write(config.results_path)
        log(f"results written to {config.results_path}")
    print()
    # Figures depend on the CPU (the README states it beside each): print it with them.
    print(f"CPU: {results.meta.get('cpu', 'unknown')}, {os.cpu_count()} cores")
    print()
    print(table(results))
    print()
    print(notes(results))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
