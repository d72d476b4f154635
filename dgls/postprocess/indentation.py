"""Write the middle's indentation in the file's own style (tabs or its number of spaces)."""

from ..text import indentation, split_lines
from . import Context


def _convert(ws: str, unit: str) -> str:
    if unit == "\t":
        spaces = ws.replace("\t", "    ")
        return "\t" * (len(spaces) // 4) + " " * (len(spaces) % 4)
    return ws.replace("\t", unit)


def apply(text: str, ctx: Context) -> str:
    lines = split_lines(text)
    if len(lines) == 1:
        return text
    out = [lines[0]]
    for line in lines[1:]:
        ws = indentation(line)
        out.append(_convert(ws, ctx.indent_unit) + line[len(ws):])
    return "\n".join(out)
