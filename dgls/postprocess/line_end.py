"""A line hole ends at the end of the line."""

from ..hole import LINE
from . import Context


def apply(text: str, ctx: Context) -> str:
    if ctx.hole.kind != LINE:
        return text
    for i, ch in enumerate(text):
        if ch in "\r\n":
            return text[:i]
    return text
