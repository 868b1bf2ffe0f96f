"""How fast the ``certgate`` CLI answers, against the bare start of the same interpreter.

Runs ``python -c pass``, ``certgate --help`` and ``certgate account list --json`` (on a fresh
store in a temporary directory) N times each, interleaved so that a load change on the
machine hits all three alike, and prints the medians and the ratios to the bare start.
The README's targets: ``--help`` under 5x, ``account list --json`` under 8x.

    .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"help": 5.0, "account_list_json": 8.0}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), to state next to every figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - started


def measure(runs: int) -> dict[str, object]:
    """Median wall times (s) of the three commands and the ratios to the bare start."""
    certgate = str(Path(sys.executable).with_name("certgate"))
    env = {k: v for k, v in os.environ.items() if k != "CERTGATE_CONFIG"}
    with tempfile.TemporaryDirectory(prefix="certgate-cli-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "certgate.yaml").write_text("ca: {key_type: ecdsa-p256}\n")
        subprocess.run([certgate, "init"], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        commands = {"python_pass": [sys.executable, "-c", "pass"],
                    "help": [certgate, "--help"],
                    "account_list_json": [certgate, "account", "list", "--json"]}
        for argv in commands.values():  # warm the page cache once
            _time(argv, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_time(argv, cwd, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    bare = medians["python_pass"]
    ratios = {name: medians[name] / bare for name in TARGETS}
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "runs": runs,
            "median_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
            "ratio_to_bare_python": {k: round(v, 2) for k, v in ratios.items()},
            "target": TARGETS,
            "holds": {k: ratios[k] < TARGETS[k] for k in TARGETS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not 3 <= args.runs <= 200:
        parser.error("--runs must be 3-200")
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
