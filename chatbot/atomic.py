"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> Path:
    """Write beside the target, fsync, then rename over it (rename is atomic on POSIX).

    The temporary name is unique to this call (NAME.PID.RANDOM.tmp, created exclusively), so
    two writers of one file never share a temporary file: the last rename wins, whole."""
    path = Path(path)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as umask allows
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a permission error, a signal: leave no half file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Delete NAME.PID.*.tmp files left by writers of `path` that were killed mid-write (their
    process is gone), so kills leave no debris past the next write; a live writer's are kept."""
    try:
        candidates = list(path.parent.glob(f"{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return
    for tmp in candidates:
        pid = tmp.name[len(path.name) + 1:].split(".")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass  # alive (another user's), or not a process id


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
