"""A file and a cursor in, ranked suggestions out: the completion path, editor or not.

hole -> windows -> infill call -> backend (the worker, a vLLM server, or the engine in this
process) -> post-processing -> ranking -> each suggestion's final text over its replace range.
The backend is passed in, so this module never imports torch. The language server runs
`prepare`, the backend and `finish` itself (between them: caches, fallback, status); the CLI
runs `complete`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import postprocess
from .backends.base import Backend, Cancel
from .hole import NONE, Document, Hole, classify, indent_unit, line_bounds, window
from .languages import Language
from .model.api import InfillCall, InfillRequest, InfillResult
from .options import DEFAULTS, Options
from .rank import Candidate, rank


@dataclass
class Completion:
    hole: Hole
    suggestions: list[Candidate]  # best first: the code written at the cursor
    start: int  # the range every item replaces, as character offsets into the document:
    end: int  # the cursor, and on a line hole the auto-closed characters right of it
    texts: list[str] = field(default_factory=list)  # what each suggestion inserts over [start, end)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (text, why)
    timing: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    canvas_length: int = 0
    stop_reason: str = ""
    note: str | None = None  # the backend gave less than asked (out of memory)


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

    def call(self, n: int, seed: int | None = None) -> InfillCall:
        return InfillCall(self.request, n=n, canvas_length=self.canvas_length, budget_ms=self.budget_ms, seed=seed,
                          hole=self.hole.kind)


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


def replace_range(text: str, offset: int, middles: list[str]) -> tuple[int, list[str]]:
    """Where the items end and what each inserts. One-line middles also replace the
    characters right of the cursor on its line (the post-processing cut the auto-closed ones
    out of the middle), so an editor shows `foo(x)` over `foo(|)` without a doubled
    parenthesis; a multi-line middle is inserted at the cursor."""
    end = line_bounds(text, offset)[1]
    rest = text[offset:end]
    if not rest.strip() or any("\n" in m for m in middles):
        return offset, list(middles)
    return end, [m + rest for m in middles]


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
    end, texts = replace_range(prep.doc.text, offset, [c.text for c in ranked.accepted])
    return Completion(
        prep.hole, ranked.accepted, offset, end, texts, rejected,
        timing={"encode_ms": result.encode_ms, "denoise_ms": result.denoise_ms,
                "total_ms": (time.perf_counter() - prep.started) * 1e3},
        prompt_tokens=result.prompt_tokens, canvas_length=result.canvas_length, stop_reason=result.stop_reason,
        note=result.note)


async def complete(
    backend: Backend,
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
    cancel: Cancel | None = None,
) -> Completion:
    """The whole path through any backend (what the CLI runs)."""
    prep = prepare(text, offset, language, backend.count_tokens, path=path, options=options, mode=mode,
                   budget_ms=budget_ms)
    if prep.request is None:
        return finish(prep, None)
    result = await backend.infill(prep.call(n or options.candidates_invoked, seed), cancel or Cancel())
    return finish(prep, result)
