"""Which implementation runs each op: the fused Triton kernels or the plain-PyTorch references.

The kernels are chosen once per process: `DGLS_KERNELS=torch|triton` when set, else "triton"
where CUDA and triton are both present, else "torch". Even under "triton" a call goes to the
reference when the kernels cannot take it: tensors on the CPU (unless `TRITON_INTERPRET=1`,
Triton's CPU interpreter, which the CPU test suite uses), dtypes other than fp32/bf16/fp16,
or inputs that need autograd (the kernels have no backward; training takes the reference).

triton is imported only when a kernel first runs, so `import dgls.kernels` works without it.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from . import ops

KERNELS = ("torch", "triton")
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class KernelChoiceError(RuntimeError):
    """DGLS_KERNELS asks for something this machine cannot run; the message is one line."""


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def probe() -> str:
    """The kernels, "torch" or "triton", chosen on first use; `probe.cache_clear()` re-reads the environment."""
    requested = os.environ.get("DGLS_KERNELS", "").strip().lower()
    if not requested:
        return "triton" if has_triton() and torch.cuda.is_available() else "torch"
    if requested not in KERNELS:
        raise KernelChoiceError(f"DGLS_KERNELS={requested!r} is not a kernel backend; use one of {', '.join(KERNELS)}")
    if requested == "triton":
        if not has_triton():
            raise KernelChoiceError("DGLS_KERNELS=triton but triton is not installed (pip install triton)")
        if not (torch.cuda.is_available() or interpreting()):
            raise KernelChoiceError("DGLS_KERNELS=triton needs a CUDA device, or TRITON_INTERPRET=1 to run on the CPU")
    return requested


def _use_triton(*tensors: torch.Tensor | None) -> bool:
    if probe() != "triton":
        return False
    present = [t for t in tensors if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return False
    first = present[0]
    return first.dtype in KERNEL_DTYPES and (first.is_cuda or interpreting())


def runs_triton(*tensors: torch.Tensor | None) -> bool:
    """Whether the Triton kernels take these tensors here (for callers whose reference path
    differs from the op's own reference, as the sampler's does)."""
    return _use_triton(*tensors)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    if _use_triton(x, weight):
        from . import rmsnorm_triton

        return rmsnorm_triton.rms_norm(x, weight, eps)
    return ops.rms_norm(x, weight, eps)


def rms_norm_add(x: torch.Tensor, weight: torch.Tensor | None, eps: float, residual: torch.Tensor) -> torch.Tensor:
    if _use_triton(x, weight, residual):
        from . import rmsnorm_triton

        return rmsnorm_triton.rms_norm_add(x, weight, eps, residual)
    return ops.rms_norm_add(x, weight, eps, residual)


def moe(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, topk_weights: torch.Tensor,
        topk_ids: torch.Tensor, act: str) -> torch.Tensor:
    if _use_triton(x, gate_up, down, topk_weights) and x.dtype == gate_up.dtype == down.dtype:
        from . import moe_triton

        return moe_triton.fused_moe(x, gate_up, down, topk_weights, topk_ids, act)
    return ops.moe(x, gate_up, down, topk_weights, topk_ids, act)


def logit_stats(logits: torch.Tensor, temperature: float | torch.Tensor, softcap: float | None) -> ops.LogitStats:
    if _use_triton(logits):
        from . import sampler_triton

        return sampler_triton.logit_stats(logits, temperature, softcap)
    return ops.logit_stats(logits, temperature, softcap)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    # The encoder's causal / sliding attention over the prompt (once per request): SDPA
    # (flash / memory-efficient on CUDA) under both backends.
    return ops.attention(q, k, v, mask)


def canvas_attention(q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor, key_start: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's attention, every denoising step: see `ops.canvas_attention`."""
    if _use_triton(q, cache_k, cache_v, k, v) and q.dtype == cache_k.dtype == k.dtype:
        from . import attention_triton

        return attention_triton.canvas_attention(q, cache_k, cache_v, k, v, key_start)
    return ops.canvas_attention(q, cache_k, cache_v, k, v, key_start)
