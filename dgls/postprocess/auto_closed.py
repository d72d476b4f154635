"""Closing characters already right of the cursor (the editor inserted them) are not written
twice: a line middle that ends with them drops them."""

from ..hole import LINE
from . import Context


def apply(text: str, ctx: Context) -> str:
    rest = ctx.hole.rest_of_line.strip()
    if ctx.hole.kind != LINE or not rest:
        return text
    body = text.rstrip()
    if body.endswith(rest):
        return body[: len(body) - len(rest)]
    return text
