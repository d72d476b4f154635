"""The engine: a loaded model that turns (prefix, suffix) into n candidate middles.

The prompt is encoded once; the n canvases are denoised as one batch over that shared cache.
This is the one entry point the worker and the CLI's in-process fallback call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import loader
from .prompt import InfillRequest, build_prompt
from .sampler import StepState, denoise


class EngineError(ValueError):
    """A request the engine cannot run (e.g. a prompt longer than the model's positions)."""


@dataclass
class Candidate:
    text: str  # the middle, cut at the first stop token
    token_ids: list[int]
    steps: int  # denoising steps this canvas took
    confidence: float  # mean top probability up to the stop token
    accepted_per_step: list[int]
    ended: bool  # a stop token closed the middle inside the canvas


@dataclass
class InfillResult:
    candidates: list[Candidate]
    prompt_tokens: int
    canvas_length: int
    encode_ms: float
    denoise_ms: float
    stop_reason: str  # "converged" | "max_steps" | "callback"


class Engine:
    def __init__(self, loaded: loader.LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.cfg = loaded.model.cfg
        self.stop_ids = set(self.cfg.eos_ids) | {self.cfg.pad_id}

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> Engine:
        return cls(loader.load(path, **kwargs))

    def _sync(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()

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
        on_step: Callable[[StepState], bool] | None = None,
    ) -> InfillResult:
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
        prompt = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        cache = self.model.encode(prompt)
        self._sync()
        t1 = time.perf_counter()
        result = denoise(self.model, cache, n, sampler, canvas_length=L, seed=seed, on_step=on_step)
        self._sync()
        t2 = time.perf_counter()

        candidates = []
        for row, tokens in enumerate(result.tokens.tolist()):
            cut = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
            middle = tokens if cut is None else tokens[:cut]
            candidates.append(Candidate(
                text=self.tokenizer.decode(middle),
                token_ids=middle,
                steps=result.steps[row],
                confidence=result.confidence[row],
                accepted_per_step=result.accepted_per_step[row],
                ended=cut is not None,
            ))
        return InfillResult(candidates, len(ids), L, (t1 - t0) * 1e3, (t2 - t1) * 1e3, result.stop_reason)
