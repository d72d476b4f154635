"""Open documents, kept by the server itself: incremental changes applied with dgls's own
line splitter (LSP's three line breaks only) and the negotiated position encoding.

A position is (line, character) where character counts UTF-8 bytes, UTF-16 code units or
code points. Positions past a line's end, past the last line, or inside a character (half a
surrogate pair, part of a UTF-8 sequence) are clamped to the nearest character boundary
before them, as the protocol asks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .text import line_starts

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(ch: str, encoding: str) -> int:
    if encoding == UTF8:
        return len(ch.encode("utf-8", "surrogatepass"))
    if encoding == UTF16:
        return 2 if ord(ch) > 0xFFFF else 1
    return 1


def _line_span(text: str, starts: list[int], line: int) -> tuple[int, int]:
    start = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return start, end


def to_offset(text: str, line: int, character: int, encoding: str = UTF16) -> int:
    starts = line_starts(text)
    if line < 0:
        return 0
    if line >= len(starts):
        return len(text)
    start, end = _line_span(text, starts, line)
    if encoding == UTF32:
        return start + max(0, min(character, end - start))
    units, offset = 0, start
    while offset < end:
        width = _units(text[offset], encoding)
        if units + width > character:
            break
        units += width
        offset += 1
    return offset


def from_offset(text: str, offset: int, encoding: str = UTF16) -> tuple[int, int]:
    starts = line_starts(text)
    offset = max(0, min(offset, len(text)))
    lo = bisect.bisect_right(starts, offset) - 1  # the last line starting at or before it
    segment = text[starts[lo]:offset]
    if encoding == UTF32:
        return lo, len(segment)
    return lo, sum(_units(ch, encoding) for ch in segment)


@dataclass
class TextDocument:
    uri: str
    language_id: str
    version: int
    text: str


class DocumentStore:
    def __init__(self) -> None:
        self._docs: dict[str, TextDocument] = {}

    def open(self, uri: str, language_id: str, version: int, text: str) -> None:
        self._docs[uri] = TextDocument(uri, language_id, version, text)

    def get(self, uri: str) -> TextDocument | None:
        return self._docs.get(uri)

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def change(self, uri: str, version: int, changes: list, encoding: str) -> TextDocument | None:
        """Apply content changes in order: each has `text`, and `range` unless it replaces all."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        text = doc.text
        for change in changes:
            rng = getattr(change, "range", None)
            if rng is None:
                text = change.text
                continue
            a = to_offset(text, rng.start.line, rng.start.character, encoding)
            b = to_offset(text, rng.end.line, rng.end.character, encoding)
            a, b = min(a, b), max(a, b)
            text = text[:a] + change.text + text[b:]
        doc.text, doc.version = text, version
        return doc
