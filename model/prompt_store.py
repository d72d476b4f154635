"""The encoder states of recent prompts, so that a prompt sharing its start with one of them
is encoded only from the first token that differs.

Typing at the cursor changes the end of the prefix. In the suffix-prefix-middle order the
path, the suffix and most of the prefix come before that point, so a keystroke re-encodes a
few tokens instead of the whole window (bench/RESULTS.md, "Prompt cache").

Bounded by bytes (keys and values of every layer, on the model's device), least recently
used first out. An entry that a new prompt extends from most of its length is replaced by
the new one: the user has moved on from that text, and one file being typed in keeps one
entry instead of one per keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import DiffusionGemma, EncoderState


@dataclass
class Entry:
    ids: list[int]
    state: EncoderState


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens a and b have in common."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PromptStore:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: list[Entry] = []  # least recently used first
        self.encoded_tokens = 0  # tokens the encoder computed, over all requests
        self.reused_tokens = 0  # tokens taken from an entry instead

    @property
    def nbytes(self) -> int:
        return sum(e.state.nbytes for e in self.entries)

    def encode(self, model: DiffusionGemma, ids: list[int]) -> tuple[EncoderState, int]:
        """The encoder state of `ids`, and how many of its tokens came from the store."""
        best, shared = None, 0
        for entry in self.entries:
            n = shared_prefix(entry.ids, ids)
            if n > shared:
                best, shared = entry, n
        if best is not None and shared == len(ids) == best.state.length:
            self._touch(best)
            self.reused_tokens += shared
            return best.state, shared
        # The last token is always encoded: a prompt is never a strict prefix of the state
        # it reads (a shorter prompt than the entry keeps only the shared part).
        reuse = min(shared, len(ids) - 1)
        prompt = torch.tensor([ids], dtype=torch.long, device=model.device)
        state = model.extend(prompt, best.state if reuse else None, reuse)
        self.encoded_tokens += len(ids) - reuse
        self.reused_tokens += reuse
        if best is not None and reuse * 2 >= best.state.length:
            self.entries.remove(best)
        self._add(Entry(list(ids), state))
        return state, reuse

    def clear(self) -> None:
        """Forget every entry and the counts."""
        self.entries.clear()
        self.encoded_tokens = self.reused_tokens = 0

    def stats(self) -> dict:
        total = self.encoded_tokens + self.reused_tokens
        return {"entries": len(self.entries), "mib": round(self.nbytes / 2**20, 1),
                "max_mib": round(self.max_bytes / 2**20, 1),
                "encoded_tokens": self.encoded_tokens, "reused_tokens": self.reused_tokens,
                "reused_share": round(self.reused_tokens / total, 4) if total else 0.0}

    def _touch(self, entry: Entry) -> None:
        self.entries.remove(entry)
        self.entries.append(entry)

    def _add(self, entry: Entry) -> None:
        if entry.state.nbytes > self.max_bytes:
            return
        self.entries.append(entry)
        while self.nbytes > self.max_bytes:
            self.entries.pop(0)
