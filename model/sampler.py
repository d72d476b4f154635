"""The uniform-state diffusion sampler of DiffusionGemma, as the reference runs it.

The canvas starts as uniform random tokens. Each step the decoder predicts every position;
a linear temperature schedule scales the logits; a token is sampled per position; the
lowest-entropy samples are accepted under an entropy bound and the rest re-noised with
fresh random tokens; a canvas stops when its argmax is stable and its mean entropy is low.
The output is the argmax canvas. In the "reference" mode random draws happen in the
reference's order and the statistics come from the reference's own ops, so the same seed gives
the same tokens as transformers' `generate`; the engine runs the "lean" mode (`MODES`).

dgls adds a per-step callback that may stop the loop (cancellation, latency budget) and
keep the best canvas so far, and per-canvas statistics.

Shape legend: B canvases, L canvas length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dgls.kernels import dispatch

from .config import SamplerConfig
from .network import DiffusionGemma, PromptCache


MODES = ("reference", "accepted", "lean")


@dataclass
class StepState:
    """What the callback sees after each denoising step."""

    step: int  # denoising steps run so far (1-based)
    max_steps: int
    argmax: torch.Tensor  # [B, L] the current best canvases
    finished: torch.Tensor  # [B] bool, canvases that met the stopping rule
    accepted: torch.Tensor  # [B] tokens accepted this step


@dataclass
class DenoiseResult:
    tokens: torch.Tensor  # [B, L] final argmax canvases
    steps: list[int]  # decoder passes each canvas took before it stopped
    accepted_per_step: list[list[int]]  # per canvas, tokens accepted at each of its steps
    confidence: list[float]  # per canvas, mean top probability up to and including its first EOS
    stop_reason: str  # "converged" | "max_steps" | "callback"
    finished: list[bool] = field(default_factory=list)  # per canvas, met the stopping rule


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy per position [B, L] of logits [B, L, V], computed as torch.distributions does."""
    return torch.distributions.Categorical(logits=logits, validate_args=False).entropy()


def position_stats(logits: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax, entropy and top probability per position [B, L] of the processed logits [B, L, V]
    (probs = their softmax, which sampling needs anyway).

    Under the Triton backend: one streaming pass of the statistics kernel over the vocabulary
    instead of four. The argmax is the same; entropy and top probability may differ from the
    ops below in the last fp32 bits, so an acceptance sitting exactly on the entropy bound
    could flip. Otherwise the reference's own ops, which keep the torch backend token- and
    step-identical to transformers' `generate`."""
    if dispatch.runs_triton(logits):
        stats = dispatch.logit_stats(logits, 1.0, None)  # already soft-capped and tempered
        return stats.argmax, stats.entropy, stats.max_prob
    return logits.argmax(dim=-1), token_entropy(logits), probs.max(dim=-1).values


def lean_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probabilities [B, L, V], argmax, entropy and top probability [B, L] of the processed
    logits in one softmax, a subtraction and one dot product over the vocabulary, where the
    reference's ops take about ten passes. Overwrites `logits` (with logits - max).

    entropy = logsumexp(z) - sum(p * z) = sum(p * (max z - z)) - log(max p): two non-negative
    terms, and the first is summed from differences to the maximum, which are small exactly
    where p is large, so a peaked distribution's entropy keeps its relative precision (the
    plain sum(p * z) loses ~1e-4 to cancellation at logits of ~75). It differs from the
    reference's value in the last bits, which can flip an acceptance lying on the bound."""
    probs = torch.softmax(logits, dim=-1)
    argmax = logits.argmax(dim=-1)
    at_max = argmax[..., None]
    max_prob = probs.gather(-1, at_max).squeeze(-1)
    below_max = logits.sub_(logits.gather(-1, at_max))  # z - max z <= 0
    entropy = (-torch.linalg.vecdot(probs, below_max) - torch.log(max_prob)).clamp_(min=0)
    return probs, argmax, entropy, max_prob


def _mean_until_eos(values: torch.Tensor, tokens: torch.Tensor, eos_ids: tuple[int, ...]) -> list[float]:
    """Mean of values [B, L] over positions up to and including each row's first EOS."""
    if eos_ids:
        is_eos = torch.isin(tokens, torch.tensor(eos_ids, device=tokens.device))
        after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        keep = ~after_eos
    else:
        keep = torch.ones_like(tokens, dtype=torch.bool)
    total = (values * keep).sum(-1)
    return (total / keep.sum(-1).clamp(min=1)).tolist()


@torch.no_grad()
def denoise(
    model: DiffusionGemma,
    cache: PromptCache,
    num_canvases: int,
    sampler: SamplerConfig,
    *,
    canvas_length: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    initial_canvas: torch.Tensor | None = None,
    on_step: Callable[[StepState], bool | torch.Tensor] | None = None,
    mode: str = "reference",
) -> DenoiseResult:
    """Denoise `num_canvases` canvases over one prompt cache.

    `mode` (`MODES`): "reference" samples a token at every position, then noise, and reads
    the logits with the reference's ops (same seed, same tokens as transformers). "accepted"
    samples only where the step accepts (acceptance depends on the entropies, not on the
    sample): the same distribution, a fraction of the random draws, which on a CPU cost more
    than the rest of the sampler. "lean" is "accepted" with `lean_stats` and the step's fp32
    probabilities handed to the next step's self-conditioning instead of recomputed (the same
    values for an fp32 model; a bf16 one's reference softmax reads logits rounded to bf16).

    `on_step` runs after every step; returning True stops the loop at once and the current
    argmax canvases are returned (stop_reason "callback"). It may instead return a bool
    tensor [B] of canvases to stop (a cancelled or out-of-budget request batched with
    others): those keep their best canvas and stop taking steps; the loop goes on for the rest."""
    cfg = model.cfg
    B, L, V = num_canvases, canvas_length or cfg.canvas_length, cfg.vocab_size
    device = model.device
    if generator is None:
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if cache.batch not in (1, B):
        raise ValueError(f"prompt cache has batch {cache.batch}, need 1 or {B}")

    if initial_canvas is None:
        canvas = torch.randint(0, V, (B, L), device=device, generator=generator)
    else:
        canvas = initial_canvas.to(device)
        if tuple(canvas.shape) != (B, L):
            raise ValueError(f"initial canvas has shape {tuple(canvas.shape)}, need {(B, L)}")
    argmax = canvas
    sc_logits = sc_probs = None
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)  # by the callback
    passes = torch.zeros(B, dtype=torch.long, device=device)
    history = None
    if sampler.stability_threshold > 0:
        history = torch.full((sampler.stability_threshold, B, L), -1, dtype=torch.long, device=device)
    accepted_log: list[torch.Tensor] = []
    top_prob = torch.zeros(B, L, device=device)
    stop_reason = "max_steps"
    S = sampler.max_steps

    for remaining in range(S, 0, -1):  # the reference counts steps down, S .. 1
        frozen = finished | stopped
        passes += ~frozen
        # Computed in fp32 from an int32 step, exactly as the reference does: a temperature one
        # ulp off flips near-tied acceptances and the canvases drift apart.
        step = torch.tensor(remaining, dtype=torch.int32, device=device)
        temperature = sampler.t_min + (sampler.t_max - sampler.t_min) * (step / S)
        # [B, L, V] fp32; divided in place: the same values as the reference's division
        logits = model.decode(canvas, cache, sc_logits, sc_probs=sc_probs).div_(temperature)
        if mode == "lean" and not dispatch.runs_triton(logits):  # the kernel is one pass already
            probs, new_argmax, entropy, max_prob = lean_stats(logits)  # logits spent
        else:
            probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
            if mode == "reference":
                sampled = torch.multinomial(probs.view(-1, V), 1, generator=generator).view(B, L)
            new_argmax, entropy, max_prob = position_stats(logits, probs)  # each [B, L]

        # Entropy-bound acceptance: the lowest-entropy positions whose summed entropy, less
        # the largest, stays within the bound.
        sorted_entropy, order = torch.sort(entropy, dim=-1)
        chosen = torch.cumsum(sorted_entropy, dim=-1) - sorted_entropy <= sampler.entropy_bound
        accept = torch.scatter(torch.zeros_like(chosen), -1, order, chosen)
        running = ~frozen
        if mode != "reference":  # draws for running canvases only: a frozen one keeps its own
            where = (accept & running[:, None]).nonzero(as_tuple=True)
            sampled = canvas.clone()
            if where[0].numel():
                sampled[where] = torch.multinomial(probs[where], 1, generator=generator).squeeze(-1)
        noise = torch.randint(0, V, (B, L), device=device, generator=generator)
        new_canvas = torch.where(accept, sampled, noise)

        accepted_log.append(torch.where(running, accept.sum(-1), 0))
        top_prob = torch.where(running[:, None], max_prob, top_prob)
        if frozen.any():  # finished canvases keep their state
            new_argmax = torch.where(frozen[:, None], argmax, new_argmax)
            new_canvas = torch.where(frozen[:, None], canvas, new_canvas)
            if mode == "lean":
                probs = torch.where(frozen[:, None, None], sc_probs, probs)
            else:
                logits = torch.where(frozen[:, None, None], sc_logits, logits)

        if history is None:
            stable = torch.ones(B, dtype=torch.bool, device=device)
        else:
            stable = (history == new_argmax[None]).all(dim=-1).all(dim=0)
            history = torch.roll(history, shifts=-1, dims=0)
            history[-1] = new_argmax
        confident = entropy.mean(dim=-1) < sampler.confidence_threshold
        finished = finished | (stable & confident & ~stopped)

        if mode == "lean":
            sc_probs = probs
        else:
            sc_logits = logits.to(model.dtype)
        canvas, argmax = new_canvas, new_argmax
        if (finished | stopped).all():
            stop_reason = "callback" if stopped.any() else "converged"
            break
        if on_step is not None:
            verdict = on_step(StepState(S - remaining + 1, S, argmax, finished, accepted_log[-1]))
            if verdict is True:
                stop_reason = "callback"
                break
            if isinstance(verdict, torch.Tensor):
                stopped = stopped | verdict.to(device)
                if (finished | stopped).all():
                    stop_reason = "callback"
                    break

    steps = passes.tolist()
    accepted = torch.stack(accepted_log, dim=1).tolist()  # [B, steps run]
    return DenoiseResult(
        tokens=argmax,
        steps=steps,
        accepted_per_step=[row[:n] for row, n in zip(accepted, steps)],
        confidence=_mean_until_eos(top_prob, argmax, model.cfg.eos_ids),
        stop_reason=stop_reason,
        finished=finished.tolist(),
    )
