"""The baseline the model is reported against: a longest-match n-gram completer over the
training corpus.

Code is split into lexical tokens (words, numbers, single punctuation characters, runs of
spaces, and a line break together with the next line's indentation). To write the middle it
repeats: find the longest context among the last 24, 12, 6, 3 or 1 tokens that occurs in the
corpus, look at what followed it (up to `max_candidates` occurrences) and append the most
common next token. A cursor inside a word constrains the first token to start with that
word's beginning; when no context allows that, the corpus's most common token extending the
word is taken (order 0). A line hole stops at the line break; a block hole at the line the suffix
continues with, a file boundary, `max_lines` or `max_tokens`.

Each context order is a sorted array of 64-bit context hashes beside the positions they
occur at (numpy), searched by bisection: 12 bytes per corpus token per order, so the full
default corpus (~55 M tokens) takes a few GB and a couple of minutes to index.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections import Counter
from collections.abc import Iterable

import numpy as np

ORDERS = (24, 12, 6, 3, 1)
MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier mixing successive token hashes
TOKEN = re.compile(r"\n[ \t]*|[A-Za-z_]\w*|\d[\w.]*|[ \t]+|.", re.S)
FILE_BREAK = 0  # token id between files: no context or copy crosses it


def lex(text: str) -> list[str]:
    return TOKEN.findall(text)


class LongestMatchCompleter:
    def __init__(self, texts: Iterable[str], orders: tuple[int, ...] = ORDERS, max_candidates: int = 256):
        self.orders = tuple(sorted(orders, reverse=True))
        self.max_candidates = max_candidates
        self.vocab: dict[str, int] = {"\x00<file>": FILE_BREAK}
        ids = array("i")
        for text in texts:
            ids.extend(self.vocab.setdefault(t, len(self.vocab)) for t in lex(text))
            ids.append(FILE_BREAK)
        self.tokens = list(self.vocab)
        self.ids = np.frombuffer(ids, dtype=np.int32).copy()
        self.tokens_indexed = len(self.ids)
        # Order 0: token texts sorted, with their corpus counts, for "the most common word starting so".
        self.counts = np.bincount(self.ids, minlength=len(self.tokens))
        self.by_text = sorted(range(1, len(self.tokens)), key=self.tokens.__getitem__)
        self.sorted_text = [self.tokens[i] for i in self.by_text]
        # A random 64-bit value per token id makes the mixed context hashes well spread.
        self.salt = np.random.default_rng(0).integers(0, 2**64, size=len(self.vocab), dtype=np.uint64)
        h = self.salt[self.ids]
        self.index: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ctx = np.zeros(len(self.ids), dtype=np.uint64)  # ctx[i] mixes tokens i-k .. i-1
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash intends
            for k in range(1, max(self.orders) + 1):
                if k >= len(self.ids):
                    break
                shifted = np.zeros_like(h)
                shifted[k:] = h[:-k]
                ctx = ctx * MULT + shifted
                if k in self.orders:
                    order = np.argsort(ctx[k:], kind="stable")
                    self.index[k] = (ctx[k:][order], (order + k).astype(np.int32))

    def _context_hash(self, context: list[int]) -> np.uint64:
        h = np.uint64(0)
        with np.errstate(over="ignore"):
            for tid in reversed(context):
                h = h * MULT + self.salt[tid]
        return h

    def _next_token(self, context: list[int | None], partial: str) -> str | None:
        """The most common token after the longest occurring context (starting with `partial`).
        `context` holds None for tokens the corpus never had: no context through them occurs."""
        for k in self.orders:
            window = context[-k:]
            if k not in self.index or len(window) < k or None in window or FILE_BREAK in window:
                continue
            keys, positions = self.index[k]
            key = self._context_hash(window)
            lo = np.searchsorted(keys, key, "left")
            hi = min(np.searchsorted(keys, key, "right"), lo + self.max_candidates)
            if lo == hi:
                continue
            following = self.ids[positions[lo:hi]].tolist()
            votes = Counter(t for t in following if t != FILE_BREAK and self.tokens[t].startswith(partial))
            if votes:
                return self.tokens[votes.most_common(1)[0][0]]
        return self._most_common_extension(partial) if partial else None

    def _most_common_extension(self, partial: str) -> str | None:
        lo = bisect.bisect_left(self.sorted_text, partial)
        hi = bisect.bisect_left(self.sorted_text, partial + "\U0010ffff")
        if lo == hi:
            return None
        ids = self.by_text[lo:hi]
        return self.tokens[max(ids, key=lambda i: (self.counts[i], -i))]

    def complete(self, prefix: str, suffix: str, *, multiline: bool, max_lines: int = 16, max_tokens: int = 256) -> str:
        """The middle to insert at the end of `prefix` ("" when no context occurs)."""
        tail = lex(prefix[-2000:])
        partial = ""
        if tail and re.fullmatch(r"\w+", tail[-1]) and not re.match(r"\w", suffix):
            partial = tail.pop()  # the cursor ends a word that may go on: the next token must extend it
        context: list[int | None] = [self.vocab.get(t) for t in tail]
        rest = suffix.split("\n", 1)[1] if "\n" in suffix else ""
        stop_line = next((x.strip() for x in rest.split("\n") if x.strip()), None)
        out: list[str] = []
        lines = 0
        for _ in range(max_tokens):
            token = self._next_token(context, partial)
            if token is None:
                break
            if token.startswith("\n"):
                finished = "".join(out).split("\n")[-1].strip()
                lines += 1
                if not multiline or lines >= max_lines or (lines > 1 and finished == stop_line):
                    break
            out.append(token[len(partial):])
            partial = ""
            context.append(self.vocab[token])
        middle = "".join(out).split("\n")
        if len(middle) > 1 and middle[-1].strip() == stop_line:
            middle.pop()  # the suffix goes on with this line: it is not part of the middle
        return "\n".join(middle).rstrip()
