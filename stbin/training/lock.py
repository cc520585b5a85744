"""An exclusive lock on a run folder, so that two runs never write into the same folder.

:func:`run_folder_lock` takes an advisory ``flock`` on ``<folder>/.stbin-lock`` (holding the
PID of its owner) for the duration of a run. The kernel releases the lock when its process
ends, however it ends (even SIGKILL), so a lock file left by a dead process is stale by
construction and is simply taken over. A second run into a folder in use is refused with
:class:`RunFolderInUse`, naming the PID of the holder.

While the lock is held nobody else writes into the folder, so leftovers of interrupted
atomic writes (``.<name>.<random>.tmp``, see :mod:`stbin._io`) are removed on entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".stbin-lock"


class RunFolderInUse(OSError):
    """The run folder is locked by another live process."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


def acquire(folder: str | os.PathLike) -> int:
    """Lock ``folder`` (created if missing); the open file descriptor holding the lock."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderInUse(f"the output folder {folder} is in use by another stbin run ({_holder(path)}); "
                                 "wait for it to end or choose another folder") from None
        # the holder may have removed the file between our open and our lock: lock the current file
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(folder: str | os.PathLike, fd: int) -> None:
    """Remove the lock file and release the lock."""
    with contextlib.suppress(OSError):
        os.unlink(Path(folder) / LOCK_NAME)
    os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in ``folder`` (call while holding the lock)."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of ``folder`` (if ``enabled``: rank 0 of a distributed run) and clean leftovers."""
    if not enabled:
        yield
        return
    fd = acquire(folder)
    try:
        remove_stale_temporaries(folder)
        yield
    finally:
        release(folder, fd)


__all__ = ["RunFolderInUse", "run_folder_lock", "acquire", "release", "remove_stale_temporaries", "LOCK_NAME"]
