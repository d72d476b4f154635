"""The engine: a loaded model that turns (prefix, suffix) into n candidate middles.

The prompt is encoded once; the n canvases are denoised as one batch over that shared cache.
This is the one entry point the worker and the CLI's in-process fallback call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import loader
from .api import InfillCandidate, InfillRequest, InfillResult
from .prompt import build_prompt
from .sampler import StepState, denoise


class EngineError(ValueError):
    """A request the engine cannot run (e.g. a prompt longer than the model's positions)."""


class Engine:
    def __init__(self, loaded: loader.LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.cfg = loaded.model.cfg
        # A middle is code: it ends at EOS or padding, and at any control token (a FIM or
        # chat-turn marker in the canvas means the model has left the hole).
        self.stop_ids = set(self.cfg.eos_ids) | {self.cfg.pad_id} | self.tokenizer.special_ids()

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> Engine:
        return cls(loader.load(path, **kwargs))

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
        if n < 1:
            raise EngineError(f"n must be at least 1, got {n}")
        L = canvas_length or self.cfg.canvas_length
        ids = self.prompt_ids(req)
        if len(ids) + L > self.cfg.max_position_embeddings:
            raise EngineError(
                f"prompt of {len(ids)} tokens + canvas of {L} exceeds the model's "
                f"{self.cfg.max_position_embeddings} positions")
        sampler = self.loaded.sampler
        if max_steps is not None:
            sampler = dataclasses.replace(sampler, max_steps=max_steps)

        t0 = time.perf_counter()
        deadline = None if budget_ms is None else t0 + budget_ms / 1e3

        def step_hook(state: StepState) -> bool:
            if deadline is not None:
                self._sync()
                if time.perf_counter() >= deadline:
                    return True
            return on_step is not None and on_step(state)

        prompt = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        cache = self.model.encode(prompt)
        self._sync()
        t1 = time.perf_counter()
        result = denoise(self.model, cache, n, sampler, canvas_length=L, seed=seed, on_step=step_hook)
        self._sync()
        t2 = time.perf_counter()

        candidates = []
        for row, tokens in enumerate(result.tokens.tolist()):
            cut = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
            middle = tokens if cut is None else tokens[:cut]
            candidates.append(InfillCandidate(
                text=self.tokenizer.decode(middle),
                token_ids=middle,
                steps=result.steps[row],
                confidence=result.confidence[row],
                accepted_per_step=result.accepted_per_step[row],
                ended=cut is not None,
            ))
        return InfillResult(candidates, len(ids), L, (t1 - t0) * 1e3, (t2 - t1) * 1e3, result.stop_reason)
