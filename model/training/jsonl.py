"""One JSON object per line: the format of corpus shards and evaluation cases."""

from __future__ import annotations

import json


def parse_object(line: str, where: str, error: type[Exception], what: str) -> dict:
    """The object on one line, or `error` with a one-line message naming `where`."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise error(f"{where}: {what} must be a JSON object")
    return value
