"""The checkpoint's tokenizer (tokenizer.json), through the `tokenizers` library."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer


class Tokenizer:
    def __init__(self, inner: _HFTokenizer):
        # User code that happens to contain "<|fim_prefix|>" or "<eos>" must stay text, so
        # special tokens are only ever inserted by id (see prompt.py).
        inner.encode_special_tokens = True
        self._tk = inner

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        return cls(_HFTokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token strings inside user text stay ordinary text."""
        if not text:
            return []
        return self._tk.encode(text, add_special_tokens=False, is_pretokenized=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tk.decode(ids, skip_special_tokens=False)

    def special_ids(self) -> set[int]:
        """Ids of the tokenizer's special (control) tokens."""
        return {i for i, tok in self._tk.get_added_tokens_decoder().items() if tok.special}

    def token_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def require(self, token: str) -> int:
        tid = self.token_id(token)
        if tid is None:
            raise KeyError(token)
        return tid
