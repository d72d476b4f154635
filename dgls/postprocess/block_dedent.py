"""A block hole ends before the first line indented less than the hole: that line belongs to
the enclosing code (a dedent in Python, the closing brace in C-like languages)."""

from ..text import indent_width, indentation, split_lines
from ..hole import BLOCK
from . import Context


def apply(text: str, ctx: Context) -> str:
    if ctx.hole.kind != BLOCK:
        return text
    floor = indent_width(ctx.hole.indent)
    lines = split_lines(text)
    # The first line continues the cursor's line (already indented) unless the middle starts
    # with a newline; either way only later lines are judged.
    for i in range(1, len(lines)):
        line = lines[i]
        if line.strip() and indent_width(indentation(line)) < floor:
            return "\n".join(lines[:i]).rstrip()
    return text.rstrip() if len(lines) > 1 else text
