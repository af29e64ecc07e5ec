"""One run per run directory: an advisory lock that dies with its process.

``fcntl.flock`` is released by the kernel when the holder exits, even on SIGKILL, so a
crashed run never leaves a stale lock behind; a second live run is refused clearly.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from primus.core.errors import PrimusUserError

LOCK_NAME = ".primus.lock"


class RunDirLock:
    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PrimusUserError(
                f"run directory {self.path.parent} is in use by another Primus run (pid {holder})",
                key="run_dir",
                hint="wait for it to finish, or choose another --run_dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def check_free(self) -> None:
        """The "in use" error now, if a live run holds the directory (creates nothing)."""
        if self.path.exists():
            self.acquire()
            self.release()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
