"""Chat-style models may wrap code in Markdown fences: keep what is inside."""

import re

from . import Context

_OPEN = re.compile(r"^\s*```[\w+#.-]*[ \t]*\r?\n")


def apply(text: str, ctx: Context) -> str:
    if not text.lstrip().startswith("```"):
        return text
    inner = _OPEN.sub("", text, count=1)
    close = inner.find("```")
    return inner[:close].rstrip("\r\n") if close >= 0 else inner
