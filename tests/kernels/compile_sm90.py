"""Compile every kernel launch the launchers make, for an H100 (sm_90), on a machine without a GPU.

The interpreter runs the kernels as NumPy: it accepts programs the compiler rejects (a dot
of two dtypes, a loop variable that changes type, an over-large block). This script runs
the real launchers on CPU tensors with each kernel swapped for a recorder, then compiles each
recorded launch, arguments and launch options as they were, with Triton's own compiler and
ptxas. Nothing runs. Run it without TRITON_INTERPRET (tests/kernels/test_compile.py does).

Prints one line per compiled launch; exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from dgls.kernels import attention_triton, moe_triton, rmsnorm_triton, sampler_triton
from dgls.kernels.moe_configs import MoeBlockConfig

TARGET = GPUTarget("cuda", 90, 32)
TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int32: "i32", torch.int64: "i64"}
OPTIONS = ("num_warps", "num_stages")


class Recorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](*args, **kwargs)` is written down."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.launches: list[tuple[tuple, dict]] = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((args, kwargs))


def arg_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + TYPES[value.dtype]
    if isinstance(value, bool):
        raise TypeError("a bool runtime argument; kernels take flags as constexprs")
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {value!r}")


def compile_launch(kernel, args: tuple, kwargs: dict) -> str:
    names = kernel.arg_names
    signature = {name: arg_type(value) for name, value in zip(names, args)}
    constexprs = {name: value for name, value in kwargs.items() if name not in OPTIONS}
    for name in constexprs:
        signature[name] = "constexpr"
    missing = set(names) - set(signature)
    if missing:
        raise TypeError(f"{kernel.__name__}: launch leaves {sorted(missing)} unset")
    source = ASTSource(kernel, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    options = {k: v for k, v in kwargs.items() if k in OPTIONS}
    compiled = triton.compile(source, target=TARGET, options=options)
    shown = ", ".join(f"{k}={v}" for k, v in constexprs.items())
    first = signature[names[0]]
    return f"{kernel.__name__}({first}, ...)[{shown}] {options}: {compiled.metadata.shared} B shared"


def launches() -> list[tuple[object, tuple, dict]]:
    recorders = {}
    for module, name in ((moe_triton, "_gate_up_kernel"), (moe_triton, "_down_kernel"),
                         (moe_triton, "_sum_topk_kernel"), (rmsnorm_triton, "_rms_norm_kernel"),
                         (sampler_triton, "_logit_stats_kernel"), (attention_triton, "_canvas_attention_kernel")):
        recorders[name] = Recorder(getattr(module, name))
        setattr(module, name, recorders[name])

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):
        # A DiffusionGemma-sized expert layer at a decode step's token count, top-k 8 and 1.
        T, D, E, I = 256, 2816, 8, 704  # E small: the weights are allocated on this CPU
        x = torch.randn(T, D, generator=g).to(dtype)
        gate_up, down = torch.empty(E, 2 * I, D, dtype=dtype), torch.empty(E, D, I, dtype=dtype)
        for K, config in ((8, None), (1, MoeBlockConfig(16, 32, 64, 1, num_warps=4, num_stages=4))):
            weights, ids = torch.topk(torch.rand(T, E, generator=g), K, dim=-1)
            for act in moe_triton.ACTIVATIONS:
                moe_triton.fused_moe(x, gate_up, down, weights, ids, act, config)
        weight = torch.ones(D, dtype=dtype)
        rmsnorm_triton.rms_norm(x, weight, 1e-6)
        rmsnorm_triton.rms_norm(x.view(T, 11, 256), None, 1e-6)
        rmsnorm_triton.rms_norm_add(x, weight, 1e-6, x)
        logits = torch.empty(4, 262_144, dtype=dtype)
        sampler_triton.logit_stats(logits, 0.6, 30.0)
        sampler_triton.logit_stats(logits, torch.full((4,), 0.6), None)
        # The decoder's attention at DiffusionGemma's geometry: 4 canvases of 256 over a 2k
        # prompt; sliding layers (8 KV heads of 256, a shared 1023-key cache), global layers
        # (2 KV heads of 512, a per-canvas cache with left padding).
        B, H, L = 4, 16, 256
        for Hkv, Dh, Bp, Pk, padded in ((8, 256, 1, 1023, False), (2, 512, 4, 2048, True)):
            q = torch.empty(B, H, L, Dh, dtype=dtype)
            cache, canvas = torch.empty(Bp, Hkv, Pk, Dh, dtype=dtype), torch.empty(B, Hkv, L, Dh, dtype=dtype)
            start = torch.zeros(Bp, dtype=torch.long) if padded else None
            attention_triton.canvas_attention(q, cache, cache, canvas, canvas, start)
    return [(rec.kernel, args, kwargs) for rec in recorders.values() for args, kwargs in rec.launches]


def main() -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_sm90: unset TRITON_INTERPRET (the interpreter's kernels cannot be compiled)", file=sys.stderr)
        return 2
    seen = set()
    for kernel, args, kwargs in launches():
        key = (kernel.__name__, tuple(arg_type(a) for a in args), tuple(sorted(kwargs.items())))
        if key in seen:
            continue
        seen.add(key)
        print(compile_launch(kernel, args, kwargs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
