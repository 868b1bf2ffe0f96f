"""Wake-ups when a directory's files change: Linux inotify, through the C library.

The change-feed follower uses it to learn at once that another process (the CLI, another
worker, an admin service) committed to the store: SQLite writes the database or its WAL, and
the kernel reports the write. Without it the follower has to poll; with it an idle gateway
does nothing at all and a commit is seen within microseconds. The standard library has no
inotify binding, and the three calls needed do not justify a dependency.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

log = logging.getLogger("certgate.reload")

# <sys/inotify.h>: a write, a file closed after writing, a file created or moved in.
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


class DirectoryWatch:
    """An inotify descriptor watching one directory; readable when something changed."""

    def __init__(self, directory: Path) -> None:
        """Watch ``directory``; raises ``OSError`` where inotify is unavailable."""
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except AttributeError as e:
            raise OSError("inotify is not available on this system") from e
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        if add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self._fd: int = fd

    def fileno(self) -> int:
        """The descriptor to wait on."""
        return self._fd

    def drain(self) -> bool:
        """Consume the pending events; True if there were any. Their content does not
        matter: any change means "read the feed"."""
        seen = False
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return seen
            except BlockingIOError:
                return seen
            seen = True

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def watch_directory(directory: Path) -> DirectoryWatch | None:
    """A watch on ``directory``, or None (logged) where the system cannot provide one."""
    try:
        return DirectoryWatch(directory)
    except OSError as e:
        log.warning("cannot watch %s for store changes (%s); polling instead", directory, e)
        return None
