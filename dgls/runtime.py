"""Where the worker's socket lives: a per-user runtime directory only its owner can enter.

$DGLS_RUNTIME_DIR, else $XDG_RUNTIME_DIR/dgls, else /tmp/dgls-<uid>. The directory is created
0700; an existing one owned by someone else, or open to others, is refused rather than used,
so no other user can plant or reach a socket there.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

# A worker with nothing to do exits after this long (options.py `workerIdleS` sets it).
WORKER_IDLE_S = 600.0


class RuntimeDirError(RuntimeError):
    pass


def runtime_dir() -> Path:
    if os.environ.get("DGLS_RUNTIME_DIR"):
        base = Path(os.environ["DGLS_RUNTIME_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "dgls"
    else:
        base = Path(f"/tmp/dgls-{os.getuid()}")
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = base.lstat()
    except OSError as e:
        raise RuntimeDirError(f"cannot create runtime directory {base}: {e.strerror or e}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"runtime directory {base} is not a directory")
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"runtime directory {base} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise RuntimeDirError(f"runtime directory {base} is open to other users (mode {stat.S_IMODE(info.st_mode):o})")
    return base


def worker_key(model: str, device: str | None, dtype: str) -> str:
    """One worker per (model, device, dtype): servers configured alike share it."""
    return hashlib.sha256(f"{model}\0{device}\0{dtype}".encode()).hexdigest()[:16]


def socket_path(key: str) -> Path:
    return runtime_dir() / f"worker-{key}.sock"
