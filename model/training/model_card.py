"""MODEL_CARD.md for a model trained by train.py: what it is, what it was trained on (with
the licenses of the data), how, and how far."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ModelConfig
from .fim import FimConfig, ObjectiveConfig
from .progress import clock

if TYPE_CHECKING:
    from .train import TrainConfig


PROMPTS = {
    "spm": "`<bos> <|fim_suffix|> # path: FILE + suffix <|fim_prefix|> prefix <|fim_middle|>`",
    "psm": "`<bos> <|fim_prefix|> # path: FILE + prefix <|fim_suffix|> suffix <|fim_middle|>`",
}


def render(cfg: TrainConfig, fim: FimConfig, obj: ObjectiveConfig, model_cfg: ModelConfig, params: int,
               manifest: dict, meta: dict, device: str) -> str:
    finished = meta["step"] >= cfg.steps
    licenses = "\n".join(f"| {name} | {count} |" for name, count in manifest.get("licenses", {}).items())
    excluded = ", ".join(f"{k} ({v})" for k, v in manifest.get("excluded_distributions", {}).items()) or "none"
    last = meta.get("last_log") or {}
    schedule = (f"cosine to x{cfg.min_lr_ratio} at step {cfg.steps}" if cfg.schedule == "cosine" else
                f"constant, then linear to x{cfg.min_lr_ratio} over {cfg.decay_steps} steps from step {cfg.decay_start}"
                if cfg.decay_start else "constant (no decay yet)")
    return f"""# {cfg.config}

A DiffusionGemma-architecture text-diffusion mixture-of-experts model that fills the middle
of Python code, trained from scratch by `python -m dgls.model.training.train`. **Status: {"trained" if finished else "partially trained"}
({meta["step"]} of {cfg.steps} steps).**

## Model

| | |
|---|---|
| parameters | {params / 1e6:.1f} M |
| layers | {model_cfg.num_layers} ({sum(s.sliding for s in model_cfg.layers)} sliding, window {model_cfg.sliding_window}) |
| hidden / heads | {model_cfg.hidden_size} / {model_cfg.num_heads} |
| experts | {model_cfg.num_experts}, top {model_cfg.top_k} |
| vocabulary | {model_cfg.vocab_size} (byte-level BPE, tokenizer.json) |
| canvas | {cfg.line_canvas} tokens for line holes, {cfg.block_canvas} for block holes |
| prompt | {PROMPTS[fim.order]}; the middle ends with `<eos>` (order `{fim.order}`, recorded as `dgls_fim_order` in generation_config.json) |
| weights | {cfg.export_dtype}, safetensors |

## Training data

Python source available offline on the training machine, never executed: the CPython
{manifest.get("python", "?")} standard library (PSF-2.0) and installed distributions whose metadata
declares a permissive license; deduplicated by normalised content; whole packages held out
for evaluation ({len(manifest.get("heldout_groups", []))} groups: {", ".join(manifest.get("heldout_groups", [])[:20])}).
Files: {manifest.get("files", {})}; characters: {manifest.get("characters", {})}.
Distributions left out for their license: {excluded}.

| license (as declared) | files |
|---|---|
{licenses}

Outputs can reproduce training code; the licenses above ask for attribution when substantial
portions are copied.

## Training

- Objective: uniform-state diffusion on FIM canvases (noise t ~ U(0,1) per example, uniform
  replacement tokens, cross-entropy at every canvas position; padding after EOS weighted
  {obj.pad_weight}), self-conditioning on {obj.sc_probability:.0%} of examples; plus {obj.ar_weight} x the
  next-token cross-entropy of every prompt token, read from the causal (encoder) pass through
  the tied head, which the exported checkpoint does not change.
- Holes: {fim.kind_weights()}; windows up to {fim.prefix_tokens} prefix and {fim.suffix_tokens} suffix tokens.
- AdamW, lr {cfg.lr} (warm-up {cfg.warmup_steps}, {schedule}), weight decay {cfg.weight_decay},
  batch {cfg.batch_size}, gradient clip {cfg.grad_clip}, seed {cfg.seed}.
- Steps {meta["step"]}; canvas tokens seen {meta.get("canvas_tokens", 0):,}; prompt tokens seen {meta.get("prompt_tokens", 0):,};
  training time {clock(meta.get("train_seconds", 0))} ({meta.get("cpu_seconds", 0) / 3600:.2f} CPU-hours) on {device}.
- Last logged loss {last.get("loss", float("nan")):.3f} (weighted), middle loss {last.get("middle_loss", float("nan")):.3f},
  middle token accuracy {last.get("middle_acc", float("nan")):.3f} (noisy training canvases, not an evaluation).

## Evaluation

Not part of training. Run `python -m dgls.model.training.evaluate run --model DIR --cases CASES.jsonl
--baseline-corpus CORPUS` on cases built from the held-out packages
(`python -m dgls.model.training.evaluate cases`); it reports exact match, edit similarity, pass@1
where cases carry tests, steps per canvas and latency, beside an n-gram baseline.

## Limitations

A small model trained on a few hundred MB of Python: expect plausible-looking but wrong code
often. Python only. Not instruction-following.
"""
