"""What kind of hole the cursor is in, and the prefix/suffix windows around it.

Kinds: "none" (no code belongs here: inside a string or comment, in the middle of a word,
text right of the cursor), "line" (finish this line) and "block" (a new statement or body:
a blank line, the end of a line that opens a block). The kind picks the canvas length and
the post-processing rules.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .languages import Language, parse
from .text import indent_width, indentation, line_starts

NONE, LINE, BLOCK = "none", "line", "block"

# What may stand right of the cursor for a completion to still make sense there: the
# closing characters editors insert automatically, and statement punctuation.
CLOSERS = set(")]}\"'`;,:") | {" ", "\t"}
_WORD = re.compile(r"\w")


class Document:
    """Text, its language and its syntax tree; converts character and UTF-8 byte offsets
    (tree-sitter's unit) line by line, so conversions stay cheap in large files."""

    def __init__(self, text: str, language: Language):
        self.text = text
        self.language = language
        self.tree = parse(language, text)
        self._ascii = text.isascii()
        self._char_starts = line_starts(text)
        self._byte_starts: list[int] = []
        if not self._ascii:
            total = 0
            for i, start in enumerate(self._char_starts):
                self._byte_starts.append(total)
                end = self._char_starts[i + 1] if i + 1 < len(self._char_starts) else len(text)
                total += len(text[start:end].encode("utf-8", "surrogatepass"))

    def byte_offset(self, offset: int) -> int:
        if self._ascii:
            return offset
        line = bisect.bisect_right(self._char_starts, offset) - 1
        start = self._char_starts[line]
        return self._byte_starts[line] + len(self.text[start:offset].encode("utf-8", "surrogatepass"))

    def char_offset(self, byte: int) -> int:
        if self._ascii:
            return byte
        line = bisect.bisect_right(self._byte_starts, byte) - 1
        start = self._char_starts[line]
        end = self._char_starts[line + 1] if line + 1 < len(self._char_starts) else len(self.text)
        raw = self.text[start:end].encode("utf-8", "surrogatepass")[: byte - self._byte_starts[line]]
        return start + len(raw.decode("utf-8", "ignore"))


@dataclass(frozen=True)
class Hole:
    kind: str  # none | line | block
    reason: str  # why, in a few words (shown by `dgls complete --json`)
    offset: int  # the cursor, as a character offset
    indent: str  # block: indentation of the hole's lines; line: the cursor line's
    needs_newline: bool  # the cursor ends a line that opens a block: the middle starts below
    rest_of_line: str  # text right of the cursor on its line


def indent_unit(text: str, language: Language) -> str:
    """The file's own indentation step (tab, or the most common increase in spaces)."""
    steps: Counter[str] = Counter()
    previous = 0
    for line in text.splitlines()[:2000]:
        if not line.strip():
            continue
        ws = indentation(line)
        if ws.startswith("\t"):
            steps["\t"] += 1
        width = indent_width(ws)
        if width > previous and not ws.startswith("\t"):
            steps[" " * (width - previous)] += 1
        previous = width
    return steps.most_common(1)[0][0] if steps else language.indent_unit


def _line_start(text: str, offset: int) -> int:
    return max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1


def line_bounds(text: str, offset: int) -> tuple[int, int]:
    m = re.compile(r"\r|\n").search(text, offset)
    return _line_start(text, offset), (m.start() if m else len(text))


def _inside_open_quote(before: str, lang: Language) -> bool:
    """Whether the line so far leaves a string open (tree-sitter gives an ERROR node for an
    unterminated string, so this lexical check covers the string being typed)."""
    i, quote = 0, None
    while i < len(before):
        if quote is None:
            if before.startswith(lang.line_comment, i):
                return False
            match = next((q for q in lang.quotes if before.startswith(q, i)), None)
            if match:
                quote, i = match, i + len(match)
                continue
        elif before[i] == "\\":
            i += 2
            continue
        elif before.startswith(quote, i):
            i, quote = i + len(quote), None
            continue
        i += 1
    return quote is not None


def _syntax_context(doc: Document, offset: int) -> str | None:
    """"string" or "comment" when tree-sitter puts the cursor inside one, "code" inside a
    string's interpolation, None when the tree says nothing."""
    b = doc.byte_offset(offset)
    node = doc.tree.root_node.descendant_for_byte_range(max(b - 1, 0), b)
    lang = doc.language
    while node is not None:
        if node.type in lang.code_in_string_types and node.start_byte < b < node.end_byte:
            return "code"  # an f-string's or template literal's interpolation
        if node.type in lang.comment_types:
            text = doc.text[doc.char_offset(node.start_byte):doc.char_offset(node.end_byte)]
            closed_block = text.startswith("/*") and text.endswith("*/")
            if node.start_byte < b < node.end_byte or (b == node.end_byte and not closed_block):
                return "comment"
        if node.type in lang.string_types and node.start_byte < b < node.end_byte:
            return "string"
        node = node.parent
    return None


def _opens_block(line: str, lang: Language) -> bool:
    code = line.rstrip()
    if not code.endswith(lang.block_openers):
        return False
    if lang.block_keywords:  # Python: only a compound-statement header opens a block with ':'
        if code.endswith(":"):
            first = code.lstrip().split(maxsplit=1)[0].rstrip(":") if code.strip() else ""
            return first in lang.block_keywords
        return True
    return True


def _previous_code_line(text: str, line_start: int) -> str:
    for line in reversed(re.split(r"\r\n|\r|\n", text[:line_start])):
        if line.strip():
            return line
    return ""


def classify(doc: Document, offset: int, mode: str = "auto") -> Hole:
    """The hole at `offset`. `mode` "line" or "block" forces the kind where code may go."""
    text, lang = doc.text, doc.language
    start, end = line_bounds(text, offset)
    before, after = text[start:offset], text[offset:end]
    unit = indent_unit(text, lang)

    def hole(kind: str, reason: str, indent: str = "", needs_newline: bool = False) -> Hole:
        if mode != "auto" and kind != NONE:
            kind = mode
        return Hole(kind, reason, offset, indent, needs_newline, after)

    context = _syntax_context(doc, offset)
    if context is None and _inside_open_quote(before, lang):
        context = "string"
    if context in ("string", "comment"):
        return hole(NONE, f"inside a {context}")
    if before and after and _WORD.match(before[-1]) and _WORD.match(after[0]):
        return hole(NONE, "in the middle of a word")
    if not set(after) <= CLOSERS:
        return hole(NONE, "text right of the cursor")

    if not before.strip():
        previous = _previous_code_line(text, start)
        if previous and _opens_block(previous, lang):
            deeper = indentation(previous) + unit
            indent = before if indent_width(before) > indent_width(deeper) else deeper
            return hole(BLOCK, "new body after a block opener", indent)
        return hole(BLOCK, "blank line", before)
    if not after.strip() and _opens_block(before, lang):
        return hole(BLOCK, "end of a line that opens a block", indentation(before) + unit, needs_newline=True)
    return hole(LINE, "finish the line", indentation(before))


# --- windows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    prefix: str
    suffix: str
    prefix_start: int  # character offsets into the document
    suffix_end: int


def _statement_bounds(doc: Document, offset: int) -> tuple[list[int], list[int]]:
    """Where a window may be cut: the line starts (ends) of the statements around the cursor,
    i.e. of the children of every node enclosing it. Cutting there never splits a statement,
    and never keeps the tail of an unrelated function body."""
    text = doc.text
    b = doc.byte_offset(offset)
    node = doc.tree.root_node.descendant_for_byte_range(b, b)
    starts, ends = {0}, {len(text)}
    while node is not None:
        for child in node.named_children:
            s, e = doc.char_offset(child.start_byte), doc.char_offset(child.end_byte)
            line_start = _line_start(text, s)
            if not text[line_start:s].strip():
                starts.add(line_start)
            if e >= len(text) or text[e] in "\r\n":
                ends.add(e)
        node = node.parent
    return sorted(starts), sorted(ends)


def window(
    doc: Document,
    offset: int,
    count_tokens: Callable[[str], int],
    prefix_tokens: int,
    suffix_tokens: int,
) -> Window:
    """The longest prefix and suffix that fit their token budgets, cut at statement bounds
    (whole lines when no statement bound fits, characters as a last resort)."""
    text = doc.text
    # Windows wider than 16 characters a token are never needed in code; capping keeps the
    # token counting and tree walk of huge files bounded.
    lo_cap = max(0, offset - prefix_tokens * 16)
    hi_cap = min(len(text), offset + suffix_tokens * 16)
    starts, ends = _statement_bounds(doc, offset)

    line_cuts = [i for i in line_starts(text) if lo_cap <= i <= offset]
    start = _earliest_fitting([s for s in starts if lo_cap <= s <= offset], lambda s: count_tokens(text[s:offset]) <= prefix_tokens)
    if start is None:
        start = _earliest_fitting(line_cuts, lambda s: count_tokens(text[s:offset]) <= prefix_tokens)
    if start is None:
        start = _earliest_fitting(list(range(lo_cap, offset + 1)), lambda s: count_tokens(text[s:offset]) <= prefix_tokens)

    line_ends = [m.start() for m in re.finditer(r"\r|\n", text[offset:hi_cap])]
    line_ends = [offset + i for i in line_ends] + ([len(text)] if hi_cap == len(text) else [])
    fits_suffix = lambda e: count_tokens(text[offset:e]) <= suffix_tokens  # noqa: E731
    end = _latest_fitting([e for e in ends if offset <= e <= hi_cap], fits_suffix)
    if end is None:
        end = _latest_fitting(line_ends, fits_suffix)
    if end is None:
        end = _latest_fitting(list(range(offset, hi_cap + 1)), fits_suffix)
    start = offset if start is None else start
    end = offset if end is None else end
    return Window(text[start:offset], text[offset:end], start, end)


def _earliest_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int | None:
    """First candidate that fits, where fitting is monotone (once one fits, all later ones do)."""
    i = bisect.bisect_left(candidates, True, key=fits)
    return candidates[i] if i < len(candidates) else None


def _latest_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int | None:
    """Last candidate that fits, where the earlier ones fit more (the same search, reversed)."""
    return _earliest_fitting(candidates[::-1], fits)
