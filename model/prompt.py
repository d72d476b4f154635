"""Infill prompts, one function per model family.

DiffusionGemma's tokenizer (Gemma 4) has no fill-in-the-middle tokens, so its infill prompt
is an instruction in its own chat template (thinking off). Models trained for FIM, such as
dgls-tiny, carry <|fim_prefix|> / <|fim_suffix|> / <|fim_middle|> and use them directly.
The family is chosen by what the tokenizer defines, never by the checkpoint's path.
Special tokens are inserted by id; user text never becomes a special token.
"""

from __future__ import annotations

from collections.abc import Callable

from .api import InfillRequest
from .tokenizer import Tokenizer

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
CHAT_TOKENS = ("<|turn>", "<turn|>", "<|channel>", "<channel|>")
HOLE = "<FILL_HERE>"


def fim_prompt(tok: Tokenizer, req: InfillRequest, bos: int | None) -> list[int]:
    pre, suf, mid = (tok.require(t) for t in FIM_TOKENS)
    header = f"# path: {req.path}\n" if req.path else ""
    ids = [bos] if bos is not None else []
    return ids + [pre] + tok.encode(header + req.prefix) + [suf] + tok.encode(req.suffix) + [mid]


def gemma_chat_prompt(tok: Tokenizer, req: InfillRequest, bos: int | None) -> list[int]:
    turn, end_turn, channel, end_channel = (tok.require(t) for t in CHAT_TOKENS)
    where = f" of {req.path}" if req.path else ""
    instruction = (
        f"Write the code that replaces {HOLE} in the {req.language or 'source'} file{where} below. "
        "Reply with only that code: no explanation, no code fences, nothing before or after it.\n"
        f"```{req.language}\n"
    )
    ids = [bos] if bos is not None else []
    ids += [turn] + tok.encode("user\n" + instruction + req.prefix + HOLE + req.suffix + "\n```")
    ids += [end_turn] + tok.encode("\n") + [turn] + tok.encode("model\n")
    ids += [channel] + tok.encode("thought\n") + [end_channel]
    return ids


FAMILIES: dict[str, tuple[tuple[str, ...], Callable[[Tokenizer, InfillRequest, int | None], list[int]]]] = {
    "fim": (FIM_TOKENS, fim_prompt),
    "gemma-chat": (CHAT_TOKENS, gemma_chat_prompt),
}


def infill_family(tok: Tokenizer) -> str | None:
    """The first family whose special tokens the tokenizer defines, or None."""
    for name, (tokens, _) in FAMILIES.items():
        if all(tok.token_id(t) is not None for t in tokens):
            return name
    return None


def build_prompt(family: str, tok: Tokenizer, req: InfillRequest, bos: int | None) -> list[int]:
    return FAMILIES[family][1](tok, req, bos)
