"""Nothing to show: an empty or whitespace-only middle is dropped."""

from . import Context


def apply(text: str, ctx: Context) -> str | None:
    return text if text.strip() else None
