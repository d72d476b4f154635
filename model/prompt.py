"""Infill prompts, one function per model family.

DiffusionGemma's tokenizer (Gemma 4) has no fill-in-the-middle tokens, so its infill prompt
is an instruction in its own chat template (thinking off). Models trained for FIM, such as
dgls-tiny, carry <|fim_prefix|> / <|fim_suffix|> / <|fim_middle|> and use them directly.
The family is chosen by what the tokenizer defines, never by the checkpoint's path.
Special tokens are inserted by id; user text never becomes a special token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .api import InfillRequest
from .tokenizer import Tokenizer

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
CHAT_TOKENS = ("<|turn>", "<turn|>", "<|channel>", "<channel|>")
HOLE = "<FILL_HERE>"


# A prompt is a list of parts: (True, control token) or (False, plain text). The engine
# encodes them (control tokens by id); a remote server that takes text gets them joined
# (`prompt_text`), so both paths show the model the same prompt.
Part = tuple[bool, str]


def fim_parts(req: InfillRequest) -> list[Part]:
    """Prefix-suffix-middle order (PSM)."""
    pre, suf, mid = FIM_TOKENS
    header = f"# path: {req.path}\n" if req.path else ""
    return [(True, pre), (False, header + req.prefix), (True, suf), (False, req.suffix), (True, mid)]


def fim_spm_parts(req: InfillRequest) -> list[Part]:
    """Suffix-prefix-middle order (SPM): what follows the cursor comes first. Typing at the
    cursor changes only the end of the prefix, so the suffix's and most of the prefix's
    cached keys stay valid between keystrokes; and the text just before the cursor sits
    next to the canvas. The path header leads, where it never moves."""
    pre, suf, mid = FIM_TOKENS
    header = f"# path: {req.path}\n" if req.path else ""
    return [(True, suf), (False, header + req.suffix), (True, pre), (False, req.prefix), (True, mid)]


def gemma_chat_parts(req: InfillRequest) -> list[Part]:
    turn, end_turn, channel, end_channel = CHAT_TOKENS
    where = f" of {req.path}" if req.path else ""
    instruction = (
        f"Write the code that replaces {HOLE} in the {req.language or 'source'} file{where} below. "
        "Reply with only that code: no explanation, no code fences, nothing before or after it.\n"
        f"```{req.language}\n"
    )
    return [(True, turn), (False, "user\n" + instruction + req.prefix + HOLE + req.suffix + "\n```"),
            (True, end_turn), (False, "\n"), (True, turn), (False, "model\n"),
            (True, channel), (False, "thought\n"), (True, end_channel)]


def encode_parts(tok: Tokenizer, parts: list[Part], bos: int | None) -> list[int]:
    ids = [bos] if bos is not None else []
    specials = [tok.require(text) for special, text in parts if special]  # KeyError before any work
    it = iter(specials)
    for special, text in parts:
        ids += [next(it)] if special else tok.encode(text)
    return ids


def fim_prompt(tok: Tokenizer, req: InfillRequest, bos: int | None, order: str = "psm") -> list[int]:
    return encode_parts(tok, FIM_ORDERS[order](req), bos)


# A FIM model's order is recorded by its trainer (generation_config.json "dgls_fim_order");
# models that do not say were trained in PSM order.
FIM_ORDERS = {"psm": fim_parts, "spm": fim_spm_parts}


def read_fim_order(directory: Path) -> str:
    """The order recorded beside a model's weights (torch-free: the server and the remote
    backend read it too). ValueError, one line, for an unreadable file or an unknown order."""
    path = directory / "generation_config.json"
    if not path.is_file():
        return "psm"
    try:
        order = json.loads(path.read_text()).get("dgls_fim_order", "psm")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    if order not in FIM_ORDERS:
        raise ValueError(f"{path}: dgls_fim_order must be one of {', '.join(FIM_ORDERS)}, not {order!r}")
    return order

FAMILIES: dict[str, tuple[tuple[str, ...], Callable[[InfillRequest], list[Part]]]] = {
    "fim": (FIM_TOKENS, fim_parts),
    "fim-spm": (FIM_TOKENS, fim_spm_parts),
    "gemma-chat": (CHAT_TOKENS, gemma_chat_parts),
}


def infill_family(tok: Tokenizer, fim_order: str = "psm") -> str | None:
    """The family whose special tokens the tokenizer defines (FIM in the model's order), or None."""
    if all(tok.token_id(t) is not None for t in FIM_TOKENS):
        return "fim" if fim_order == "psm" else "fim-spm"
    if all(tok.token_id(t) is not None for t in CHAT_TOKENS):
        return "gemma-chat"
    return None


def build_prompt(family: str, tok: Tokenizer, req: InfillRequest, bos: int | None) -> list[int]:
    return encode_parts(tok, FAMILIES[family][1](req), bos)


def prompt_text(family: str, req: InfillRequest) -> str:
    """The same prompt as text, control tokens spelled out (for a server that tokenizes it;
    the server adds BOS itself)."""
    return "".join(text for _, text in FAMILIES[family][1](req))
