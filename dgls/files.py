"""Reading a source file the user points at: size, binary and encoding checks with one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path


class SourceError(ValueError):
    """A file dgls will not complete in; the message is one line."""


def read_source(path: str | Path, max_bytes: int) -> str:
    p = Path(path)
    try:
        if p.is_dir():
            raise SourceError(f"{p} is a directory")
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or /dev/zero would block or never end
            raise SourceError(f"{p} is not a regular file")
        size = info.st_size
        if size > max_bytes:
            raise SourceError(f"{p} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        data = p.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file") from None
    except PermissionError:
        raise SourceError(f"{p}: permission denied") from None
    except OSError as e:
        raise SourceError(f"{p}: {e.strerror or e}") from None
    if b"\x00" in data[:8192]:
        raise SourceError(f"{p} looks binary (NUL bytes); dgls completes text files")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(f"{p} is not UTF-8 text (invalid byte at offset {e.start})") from None
