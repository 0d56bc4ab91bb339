"""One training run per output folder: an OS lock (flock) on OUT/.train.lock.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so a
lock is never stale. The file holds the holder's process id and host, for the refusal.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import ChatbotError

LOCK_FILE = ".train.lock"


class FolderLock:
    def __init__(self, folder: Path, fd: int):
        self.folder, self._fd = Path(folder), fd

    def release(self) -> None:
        """Remove the file while still holding the lock, then unlock: a process that opened
        the old file meanwhile sees it was removed and locks the new one (see lock_folder)."""
        if self._fd is None:
            return
        try:
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None


def lock_folder(folder: Path, what: str = "--out") -> FolderLock:
    """Take the folder's lock or raise ChatbotError naming the process that holds it."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ChatbotError(f"cannot write to {what} {folder} ({exc.strerror}). Choose a folder "
                               f"you can write to.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = (f"process {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "")
                   if holder else "another process")
            raise ChatbotError(f"{folder} is in use by another training run ({who}); two runs "
                               f"would mix their files. Wait for it to finish or stop it, or "
                               f"choose another {what}.") from None
        try:  # the holder may have removed the file just before we locked it: lock the one there
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return FolderLock(folder, fd)
