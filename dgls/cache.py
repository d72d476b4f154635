"""Suggestion caches.

- Exact: the same prompt (windows, hole, candidates) asked again within the TTL gets the same
  suggestions without the model. LRU-bounded.
- Typed-through: after a suggestion is shown, the user typing its first characters gets the
  rest at once, without the model, as long as nothing else in the document changed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


class ExactCache:
    def __init__(self, entries: int, ttl_s: float, clock=time.monotonic):
        self.entries = entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._data: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def get(self, key: Hashable):
        item = self._data.get(key)
        if item is None or self.clock() - item[0] > self.ttl_s:
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, value: object) -> None:
        if self.entries <= 0:
            return
        self._data[key] = (self.clock(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class Shown:
    before: str  # document text before the cursor when the suggestions were shown
    after: str  # and after it
    texts: tuple[str, ...]  # the suggestions, best first


class TypedThrough:
    """Per document, the suggestions last shown there."""

    def __init__(self) -> None:
        self._shown: dict[str, Shown] = {}

    def remember(self, uri: str, before: str, after: str, texts: list[str]) -> None:
        if texts:
            self._shown[uri] = Shown(before, after, tuple(texts))

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def continue_(self, uri: str, before: str, after: str) -> list[str] | None:
        """The rest of each shown suggestion the user has been typing, if they have."""
        shown = self._shown.get(uri)
        if shown is None or after != shown.after or not before.startswith(shown.before):
            return None
        typed = before[len(shown.before):]
        if not typed:
            return None
        rests = [t[len(typed):] for t in shown.texts if t.startswith(typed) and len(t) > len(typed)]
        return rests or None
