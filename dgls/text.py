"""Lines and positions in document text.

LSP counts lines at "\n", "\r\n" and "\r" only; `str.splitlines` also breaks at form feeds,
\x1c-\x1e, \x85 and U+2028/2029, which would shift every position after them. Columns
here are code points; LSP position encodings are converted in the server.
"""

from __future__ import annotations

import re

_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines without their terminators; "a\\n" is ["a", ""] (the empty last line is a line)."""
    return _BREAK.split(text)


def line_starts(text: str) -> list[int]:
    """Offset of the first character of each line."""
    return [0] + [m.end() for m in _BREAK.finditer(text)]


def offset_at(text: str, line: int, column: int) -> int:
    """Offset of (line, column), both 0-based, column in code points; clamped into the text."""
    starts = line_starts(text)
    if line < 0:
        return 0
    if line >= len(starts):
        return len(text)
    start = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    line_text = text[start:end].rstrip("\r\n")
    return start + max(0, min(column, len(line_text)))


def position_at(text: str, offset: int) -> tuple[int, int]:
    """(line, column) of an offset, both 0-based."""
    starts = line_starts(text)
    lo, hi = 0, len(starts) - 1
    while lo < hi:  # last start <= offset
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo, offset - starts[lo]


def indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(ws: str, tab_size: int = 4) -> int:
    return sum(tab_size if c == "\t" else 1 for c in ws)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(text: str) -> str:
    """Lone surrogates (JSON can carry "\\ud800"; pairs arrive joined) replaced by U+FFFD, one
    code point for one: the tokenizer, tree-sitter and msgpack take only valid Unicode, and
    every offset stays where it was."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text
