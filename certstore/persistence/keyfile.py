"""The master key file: 32 random bytes, base64, mode 0600, outside the database."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from certstore.errors import StoreSetupError
from certstore.sealing import MASTER_KEY_BYTES, Sealer


def create_master_key(path: Path) -> bool:
    """Write a new master key to ``path`` unless one exists; True if written.

    ``O_EXCL`` and mode 0600 at creation: the key is never readable by others, not even
    for the instant between creating and chmod-ing the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(Sealer.new_master_key()) + b"\n")
    return True


def read_master_key(path: Path) -> bytes:
    """Read the master key, with an error that says how to fix each problem."""
    try:
        info = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise StoreSetupError(
            f"the master key file {path} is missing; without it no sealed key can be opened. "
            "Restore it from your backup, or run 'certgate init' for a new, empty store"
        ) from e
    except OSError as e:
        raise StoreSetupError(f"cannot read the master key file {path}: {e}") from e
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreSetupError(f"the master key file {path} is readable by other users; "
                              f"run 'chmod 600 {path}'")
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except binascii.Error as e:
        raise StoreSetupError(f"the master key file {path} is not valid base64") from e
    if len(key) != MASTER_KEY_BYTES:
        raise StoreSetupError(f"the master key in {path} has {len(key)} bytes, expected "
                              f"{MASTER_KEY_BYTES}")
    return key
