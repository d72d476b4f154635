"""A file and a cursor in, ranked suggestions out: the completion path without an editor.

hole -> windows -> infill request -> backend (engine in-process or the worker) ->
post-processing -> ranking. The backend is passed in, so this module never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from . import postprocess
from .hole import NONE, Document, Hole, classify, indent_unit, window
from .languages import Language
from .model.api import InfillRequest, InfillResult
from .options import DEFAULTS, Options
from .rank import Candidate, rank


class InfillBackend(Protocol):
    def count_tokens(self, text: str) -> int: ...

    def infill(self, req: InfillRequest, *, n: int, canvas_length: int, budget_ms: float,
               seed: int | None) -> InfillResult: ...


@dataclass
class Completion:
    hole: Hole
    suggestions: list[Candidate]  # best first; each replaces [start, end)
    start: int  # character offsets into the document
    end: int
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (text, why)
    timing: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    canvas_length: int = 0
    stop_reason: str = ""


@dataclass
class Prepared:
    """Everything decided before the model runs; `finish` turns the model's answer into a Completion."""

    doc: Document
    hole: Hole
    request: InfillRequest | None  # None: no code belongs here, nothing to ask
    canvas_length: int
    budget_ms: float
    context: postprocess.Context | None
    lead: str  # text every suggestion starts with (a line break into a new block)
    started: float


def prepare(
    text: str,
    offset: int,
    language: Language,
    count_tokens,
    *,
    path: str = "",
    options: Options = DEFAULTS,
    mode: str = "auto",
    budget_ms: float | None = None,
) -> Prepared:
    started = time.perf_counter()
    doc = Document(text, language)
    hole = classify(doc, offset, mode)
    if hole.kind == NONE:
        return Prepared(doc, hole, None, 0, 0.0, None, "", started)
    w = window(doc, offset, count_tokens, options.prefix_tokens, options.suffix_tokens)
    # At the end of a line that opens a block, the middle starts on the next line: the model
    # is shown that line's indentation, and the suggestion carries the line break.
    lead = "\n" + hole.indent if hole.needs_newline else ""
    req = InfillRequest(w.prefix + lead, w.suffix, language=language.name, path=path)
    ctx = postprocess.Context(hole, text[:offset] + lead, text[offset:], indent_unit(text, language))
    budget = budget_ms if budget_ms is not None else options.budget_for(hole.kind)
    return Prepared(doc, hole, req, options.canvas_for(hole.kind), budget, ctx, lead, started)


def finish(prep: Prepared, result: InfillResult | None) -> Completion:
    offset = prep.hole.offset
    if prep.request is None or result is None:
        return Completion(prep.hole, [], offset, offset, timing={"total_ms": (time.perf_counter() - prep.started) * 1e3})
    kept, rejected = [], []
    for cand in result.candidates:
        middle, dropped_by = postprocess.run(cand.text, prep.context)
        if middle is None:
            rejected.append((cand.text, f"dropped by {dropped_by}"))
        else:
            kept.append(Candidate(prep.lead + middle, cand.confidence, cand.steps))
    ranked = rank(prep.doc, offset, offset, kept)
    rejected += [(c.text, why) for c, why in ranked.rejected]
    return Completion(
        prep.hole, ranked.accepted, offset, offset, rejected,
        timing={"encode_ms": result.encode_ms, "denoise_ms": result.denoise_ms,
                "total_ms": (time.perf_counter() - prep.started) * 1e3},
        prompt_tokens=result.prompt_tokens, canvas_length=result.canvas_length, stop_reason=result.stop_reason)


def complete(
    backend: InfillBackend,
    text: str,
    offset: int,
    language: Language,
    *,
    path: str = "",
    options: Options = DEFAULTS,
    mode: str = "auto",
    n: int | None = None,
    budget_ms: float | None = None,
    seed: int | None = None,
) -> Completion:
    """The whole path with a synchronous backend (the engine in-process)."""
    prep = prepare(text, offset, language, backend.count_tokens, path=path, options=options, mode=mode,
                   budget_ms=budget_ms)
    if prep.request is None:
        return finish(prep, None)
    result = backend.infill(prep.request, n=n or options.candidates_invoked, canvas_length=prep.canvas_length,
                            budget_ms=prep.budget_ms, seed=seed)
    return finish(prep, result)
