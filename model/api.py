"""What crosses between the editor-facing side and the engine: plain data, no torch.

The server, the CLI, the worker protocol and the engine all speak these types."""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(ValueError):
    """A request the engine cannot run (e.g. a prompt longer than the model's positions)."""


@dataclass(frozen=True)
class InfillRequest:
    prefix: str
    suffix: str
    language: str = ""  # e.g. "python"; may be empty
    path: str = ""  # file path shown to the model as context; may be empty


@dataclass
class InfillCandidate:
    text: str  # the middle, cut at the first stop token
    token_ids: list[int]
    steps: int  # denoising steps this canvas took
    confidence: float  # mean top probability up to the stop token
    accepted_per_step: list[int]
    ended: bool  # a stop token closed the middle inside the canvas


@dataclass
class InfillResult:
    candidates: list[InfillCandidate]
    prompt_tokens: int
    canvas_length: int
    encode_ms: float
    denoise_ms: float
    stop_reason: str  # "converged" | "max_steps" | "callback" (cancelled or out of budget)
    reused_tokens: int = 0  # prompt tokens whose encoding came from an earlier request's
    note: str | None = None  # less than asked was given (out of memory: fewer candidates, a shorter canvas)


@dataclass(frozen=True)
class InfillCall:
    """One request to a backend: the prompt's text and how to run it."""

    request: InfillRequest
    n: int = 1  # candidates
    canvas_length: int | None = None  # tokens; None: the model's own
    budget_ms: float | None = None  # None: no clock; the step limit ends the canvas
    seed: int | None = None  # a seeded request answers the same every time
    hole: str = ""  # "line" | "block": for settings that depend on it (a vLLM server's step limit)
