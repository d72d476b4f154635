"""Trim the end of the middle where it repeats the start of what follows the cursor.

Only overlaps that cannot be coincidence are trimmed: whole lines, or at least 3 characters
that are not all whitespace ("x" followed by "x = 1" is not an overlap worth trusting)."""

from ..text import split_lines
from . import Context

MIN_CHARS = 3


def apply(text: str, ctx: Context) -> str:
    suffix = ctx.suffix
    if not suffix.strip() or not text:
        return text
    # Whole lines: the middle's last lines equal the next lines of the document.
    lines, following = split_lines(text), [line for line in split_lines(suffix) if line.strip()]
    for n in range(min(len(lines), len(following)), 0, -1):
        tail = lines[-n:]
        if all(a.strip() == b.strip() for a, b in zip(tail, following[:n])) and any(t.strip() for t in tail):
            return "\n".join(lines[:-n]).rstrip()
    # Characters: the longest end of the middle that starts the suffix (leading blanks aside).
    stripped = suffix.lstrip(" \t")
    for n in range(min(len(text), len(stripped)), MIN_CHARS - 1, -1):
        piece = text[-n:]
        if stripped.startswith(piece) and piece.strip() and len(piece.strip()) >= MIN_CHARS:
            return text[:-n].rstrip(" \t")
    return text
