"""One writer per run directory: an OS lock that a killed process gives back by itself.

``flock`` on ``DIR/.lock`` is held for as long as a command writes into ``DIR``; the kernel
releases it when the process ends in any way (``kill -9`` included), so no stale lock ever
blocks ``--resume``. The file names the holder (pid and host) for the second process's
message. Locks are re-entrant within one process (``cluster`` holds its run directory
while ``train`` runs inside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cluster_ssl.runtime.errors import UserError

LOCK_FILE = ".lock"
_held: set[Path] = set()


@contextlib.contextmanager
def lock_directory(directory: str | Path, option: str = "--out") -> Iterator[None]:
    """Hold ``directory``'s lock for the ``with`` block.

    Args:
        directory: the run, report or scratch directory (created if missing, and removed
            again if the block wrote nothing into it).
        option: the command-line option that named it, for the message.

    Raises:
        UserError: another process holds it (naming its pid and host), or the directory
            cannot be created.
    """
    directory = Path(directory).resolve()
    if directory in _held:
        yield
        return
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise UserError(f"{option} {directory}: cannot write there ({error.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split() or ["?", "?"]
            raise UserError(
                f"{option} {directory} is in use by another cluster-ssl process (pid "
                f"{holder[0]} on {holder[-1]}); wait for it to finish, or choose another "
                f"{option}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        _held.add(directory)
        try:
            yield
        finally:
            _held.discard(directory)
            if created and [entry.name for entry in directory.iterdir()] == [LOCK_FILE]:
                (directory / LOCK_FILE).unlink()  # a command that wrote nothing leaves nothing
                directory.rmdir()
    finally:
        os.close(fd)  # releases the lock
