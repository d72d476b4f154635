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
