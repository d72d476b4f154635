"""The engine: a loaded model that turns (prefix, suffix) into n candidate middles.

The prompt is encoded once; the n canvases are denoised as one batch over that shared cache.
Recent prompts' encoder states are kept (model/prompt_store.py), so a prompt that starts like
one of them, as the next keystroke's does, is encoded only from where it differs.
This is the one entry point the worker and the CLI's in-process fallback call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import loader
from .api import EngineError, InfillCandidate, InfillRequest, InfillResult
from .prompt import build_prompt
from .network import EncoderState, PromptCache
from .config import PROMPT_CACHE_MIB
from .prompt_store import PromptStore
from .sampler import StepState, denoise


class Engine:
    def __init__(self, loaded: loader.LoadedModel, *, prompt_cache_mib: float = PROMPT_CACHE_MIB,
                 mode: str = "lean"):
        self.loaded = loaded
        # The sampler's mode (model/sampler.py MODES): "lean" draws only where a step accepts
        # and reads the vocabulary in one softmax; "reference" gives transformers' tokens for a
        # seed, at about twice the vocabulary-wide work a step (bench/RESULTS.md).
        self.mode = mode
        self.prompts = PromptStore(int(prompt_cache_mib * 2**20))
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.cfg = loaded.model.cfg
        # A middle is code: it ends at EOS or padding, and at any control token (a FIM or
        # chat-turn marker in the canvas means the model has left the hole).
        self.stop_ids = set(self.cfg.eos_ids) | {self.cfg.pad_id} | self.tokenizer.special_ids()

    @classmethod
    def load(cls, path: str | Path, *, prompt_cache_mib: float = PROMPT_CACHE_MIB, mode: str = "lean",
             **kwargs) -> Engine:
        return cls(loader.load(path, **kwargs), prompt_cache_mib=prompt_cache_mib, mode=mode)

    def _sync(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def prompt_ids(self, req: InfillRequest) -> list[int]:
        return build_prompt(self.loaded.family, self.tokenizer, req, self.cfg.bos_id)

    def infill(
        self,
        req: InfillRequest,
        *,
        n: int = 1,
        canvas_length: int | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
        budget_ms: float | None = None,
        on_step: Callable[[StepState], bool] | None = None,
    ) -> InfillResult:
        """n candidate middles. The loop stops early, keeping the best canvases so far, when
        `budget_ms` (counted from this call) runs out or `on_step` returns True."""
        return self.infill_ids(self.prompt_ids(req), n=n, canvas_length=canvas_length, max_steps=max_steps,
                               seed=seed, budget_ms=budget_ms, on_step=on_step)

    def infill_ids(
        self,
        ids: list[int],
        *,
        n: int = 1,
        canvas_length: int | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
        budget_ms: float | None = None,
        on_step: Callable[[StepState], bool] | None = None,
    ) -> InfillResult:
        """`infill` for a prompt already in token ids (e.g. one a server received)."""
        if n < 1:
            raise EngineError(f"n must be at least 1, got {n}")
        L = canvas_length or self.cfg.canvas_length
        if len(ids) + L > self.cfg.max_position_embeddings:
            raise EngineError(
                f"prompt of {len(ids)} tokens + canvas of {L} exceeds the model's "
                f"{self.cfg.max_position_embeddings} positions")
        sampler = self.loaded.sampler
        if max_steps is not None:
            sampler = dataclasses.replace(sampler, max_steps=max_steps)

        t0 = time.perf_counter()
        deadline = None if budget_ms is None else t0 + budget_ms / 1e3
        clock = StepClock(t0)

        def step_hook(state: StepState) -> bool:
            if deadline is not None:
                self._sync()
                now = time.perf_counter()
                if next_step_overruns(now, clock.tick(now), deadline):
                    return True
            return on_step is not None and on_step(state)

        state, reused = self.prompts.encode(self.model, ids)
        cache = state.prompt_cache()
        self._sync()
        t1 = clock.last = time.perf_counter()
        result = denoise(self.model, cache, n, sampler, canvas_length=L, seed=seed, on_step=step_hook,
                         mode=self.mode)
        self._sync()
        t2 = time.perf_counter()

        candidates = [self._candidate(tokens, result, row) for row, tokens in enumerate(result.tokens.tolist())]
        return InfillResult(candidates, len(ids), L, (t1 - t0) * 1e3, (t2 - t1) * 1e3, result.stop_reason, reused)

    def warm_up(self, canvas_lengths: tuple[int, ...], steps: int = 2) -> dict[int, float]:
        """A real infill at each canvas length, through the batched path the worker serves
        with, so the first user's request does not pay for first-call allocations and kernel
        choices. On a 2-core CPU the first request was measured no slower than later ones
        (bench/RESULTS.md, "Cold start"); on CUDA, first calls are. Returns the ms each took."""
        req = InfillRequest(WARM_UP_PREFIX, "\n", language="python", path="warm_up.py")
        took = {}
        for L in canvas_lengths:
            t0 = time.perf_counter()
            self.infill_many([BatchItem(req, n=1)], canvas_length=L, max_steps=steps)
            took[L] = (time.perf_counter() - t0) * 1e3
        return took

    def infill_many(self, items: list[BatchItem], *, canvas_length: int | None = None,
                    max_steps: int | None = None) -> list[InfillResult]:
        """Several requests denoised together (see `_infill_many`)."""
        sampler = self.loaded.sampler
        if max_steps is not None:
            sampler = dataclasses.replace(sampler, max_steps=min(max_steps, sampler.max_steps))
        return _infill_many(self, items, canvas_length or self.cfg.canvas_length, sampler)

    def _candidate(self, tokens: list[int], result, row: int) -> InfillCandidate:
        cut = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        middle = tokens if cut is None else tokens[:cut]
        return InfillCandidate(
            text=self.tokenizer.decode(middle),
            token_ids=middle,
            steps=result.steps[row],
            confidence=result.confidence[row],
            accepted_per_step=result.accepted_per_step[row],
            ended=cut is not None,
        )


class StepClock:
    """The longest denoising step so far, for `next_step_overruns`: the first step has no
    self-conditioning input and runs a little faster than the rest, so the longest, not the
    last, is the estimate (after the first step it may still be ~10% short)."""

    def __init__(self, start: float):
        self.last = start  # when the last step ended (the encode's end before the first)
        self.longest = 0.0

    def tick(self, now: float) -> float:
        self.longest = max(self.longest, now - self.last)
        self.last = now
        return self.longest


def next_step_overruns(now: float, step_s: float, deadline: float) -> bool:
    """Stop before the next denoising step when, taking `step_s`, it would end past the
    deadline: the budget is kept on a slow CPU too (a step there can be a large share of it),
    with the best canvas so far, instead of overrunning by up to one step. The first step
    always runs: before it the canvas is noise."""
    return now + step_s > deadline


WARM_UP_PREFIX = "import os\n\n\ndef read(path):\n    with open(path) as f:\n        return f.read()\n\n\ndef main():\n    "


@dataclass
class BatchItem:
    """One request of a batch run by `Engine.infill_many`."""

    request: InfillRequest
    n: int = 1
    budget_ms: float | None = None
    cancelled: Callable[[], bool] = lambda: False


def batch_cache(states: list[EncoderState], owner: torch.Tensor) -> PromptCache:
    """One decoder cache for prompts encoded one by one: each layer's keys left-padded to the
    longest, row r of the result holding prompt owner[r]'s. Each row's canvas starts right
    after its own prompt, so every row computes what its prompt alone would."""
    caches = [s.prompt_cache() for s in states]
    first = caches[0]
    if len(caches) == 1:
        return first  # one row, read by every canvas
    P = max(c.length for c in caches)
    device = first.keys[0].device

    def padded(tensors: list[torch.Tensor]) -> torch.Tensor:
        width = max(t.shape[2] for t in tensors)
        return torch.cat([F.pad(t, (0, 0, width - t.shape[2], 0)) for t in tensors]).index_select(0, owner)

    keys = [padded([c.keys[n] for c in caches]) for n in range(len(first.keys))]
    values = [padded([c.values[n] for c in caches]) for n in range(len(first.values))]
    lengths = torch.tensor([c.length for c in caches], device=device)
    mask = torch.arange(P, device=device)[None, :] >= (P - lengths)[:, None]
    return PromptCache(keys, values, P, mask.index_select(0, owner), canvas_start=lengths.index_select(0, owner))


def _infill_many(engine: Engine, items: list[BatchItem], canvas_length: int, sampler) -> list[InfillResult]:
    """Several requests in one batch: each prompt is encoded on its own (through the prompt
    store, so mostly only its new tokens), and all their canvases are denoised in the same
    steps. Each request still stops on its own cancel flag and budget. Random draws come
    from one shared stream, so batched requests take no seed."""
    model, L = engine.model, canvas_length
    ids = [engine.prompt_ids(item.request) for item in items]
    P = max(len(x) for x in ids)
    if P + L > engine.cfg.max_position_embeddings:
        raise EngineError(f"prompt of {P} tokens + canvas of {L} exceeds the model's "
                          f"{engine.cfg.max_position_embeddings} positions")
    device = model.device
    owner = torch.repeat_interleave(torch.arange(len(items), device=device),
                                    torch.tensor([item.n for item in items], device=device))  # [B]

    t0 = time.perf_counter()
    encoded = [engine.prompts.encode(model, x) for x in ids]
    cache = batch_cache([state for state, _ in encoded], owner)
    engine._sync()
    t1 = time.perf_counter()
    deadlines = [None if item.budget_ms is None else t0 + item.budget_ms / 1e3 for item in items]
    stopped = [False] * len(items)
    clock = StepClock(t1)

    def hook(state: StepState) -> torch.Tensor:
        engine._sync()
        now = time.perf_counter()
        took = clock.tick(now)
        for i, item in enumerate(items):
            stopped[i] = stopped[i] or item.cancelled() or (
                deadlines[i] is not None and next_step_overruns(now, took, deadlines[i]))
        return torch.tensor(stopped, device=device)[owner]

    result = denoise(model, cache, int(owner.numel()), sampler, canvas_length=L, on_step=hook, mode=engine.mode)
    engine._sync()
    t2 = time.perf_counter()

    out, row = [], 0
    tokens = result.tokens.tolist()
    for i, item in enumerate(items):
        rows = range(row, row + item.n)
        row += item.n
        converged = all(result.finished[r] for r in rows)
        reason = "callback" if stopped[i] else ("converged" if converged else "max_steps")
        cands = [engine._candidate(tokens[r], result, r) for r in rows]
        out.append(InfillResult(cands, len(ids[i]), L, (t1 - t0) * 1e3, (t2 - t1) * 1e3, reason, encoded[i][1]))
    return out
