"""Drop a multi-line middle that only repeats the lines right after the cursor."""

from ..text import split_lines
from . import Context


def apply(text: str, ctx: Context) -> str | None:
    mine = [line.strip() for line in split_lines(text) if line.strip()]
    if len(mine) < 2:
        return text
    following = [line.strip() for line in split_lines(ctx.suffix) if line.strip()]
    return None if following[: len(mine)] == mine else text
