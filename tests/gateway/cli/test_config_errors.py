"""``certgate init`` and ``certgate serve`` on a bad config: one ``error:`` line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CERTGATE = [sys.executable, "-m", "gateway.cli"]

CASES = {
    # name: (file content or None for a missing file, what the one line must name)
    "missing file": (None, ["no config file at", "c.yaml", "--config FILE",
                            "config.example.yaml"]),
    "bad yaml": ("listeners:\n  - name: a\n   kind: https\n",
                 ["c.yaml", "not valid YAML at line 3", "fix the syntax"]),
    "unknown key": ("data_dir: ./var\nadmn:\n  bind: '127.0.0.1:0'\n",
                    ["c.yaml", "unknown setting 'admn'", "did you mean 'admin'?", "remove it"]),
    "invalid value": ("listeners:\n  - {name: a, kind: ftp, bind: '127.0.0.1:0', "
                      "upstream: 'http://127.0.0.1:1'}\n",
                      ["c.yaml", "listeners.0.kind", "'https', 'ipps' or 'tcp'", "(got 'ftp')"]),
    "not a mapping": ("- a list\n", ["c.yaml", "top level must be a mapping"]),
}


@pytest.mark.parametrize("command", ["init", "serve"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_error_line(tmp_path: Path, command: str, case: str) -> None:
    content, wanted = CASES[case]
    config = tmp_path / "c.yaml"
    if content is not None:
        config.write_text(content)
    env = {k: v for k, v in os.environ.items() if k != "CERTGATE_CONFIG"}
    proc = subprocess.run([*CERTGATE, command, "-c", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for part in wanted:
        assert part in lines[0], lines[0]
    assert not (tmp_path / "var").exists()  # nothing was created on a refusal


def test_data_dir_that_cannot_be_created_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "c.yaml").write_text("data_dir: ./file/var\n")
    proc = subprocess.run([*CERTGATE, "-c", str(tmp_path / "c.yaml"), "init"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot create the data directory")
    assert "data_dir" in proc.stderr and "Traceback" not in proc.stderr


def test_a_config_with_only_listeners_is_enough(tmp_path: Path) -> None:
    """data_dir defaults to ./var beside the config file (not the working directory)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "c.yaml").write_text("listeners: []\n")
    proc = subprocess.run([*CERTGATE, "init", "-c", "etc/c.yaml", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "etc" / "var" / "master.key").exists()
    assert not (tmp_path / "var").exists()
