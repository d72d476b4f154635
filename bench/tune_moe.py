"""Tune the fused MoE kernel's block sizes for this device and a model's expert shape.

    python bench/tune_moe.py [--model diffusiongemma-26b-a4b | --model /path/to/checkpoint]
                             [--tokens 1 16 64 256 1024 4096] [--dtype bfloat16] [--quick]

For each token count T it times every block config of the search space on random inputs
routed like the network routes them, checks the fastest against the torch reference, and
writes kernels/configs/E=<experts>,N=<expert width>,device_name=<GPU>.json, which the kernel
reads by nearest T. It prints the device and, per T, the best config's time against the
default config's and the torch reference's, measured in the same run.

Meant for a GPU. `--device cpu` runs Triton's interpreter (TRITON_INTERPRET=1): its timings
say nothing about any GPU; it tunes only how fast the CPU test suite runs the kernel.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dgls.kernels import ops
from dgls.kernels.moe_configs import CONFIG_DIR, MoeBlockConfig, default_config, device_name, write_configs

DEFAULT_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ExpertShape:
    """What the kernel's speed depends on: D hidden, E experts, I expert width, K per token."""

    hidden: int
    experts: int
    width: int
    top_k: int


def expert_shape(model: str) -> ExpertShape:
    """From a named config (model/config.py) or a checkpoint directory's config.json."""
    from dgls.model.config import from_name
    from dgls.model.loader import read_config

    cfg = read_config(Path(model))[0] if Path(model).is_dir() else from_name(model)
    return ExpertShape(cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size, cfg.top_k)


def search_space(quick: bool) -> list[MoeBlockConfig]:
    if quick:
        dims = dict(block_m=(16, 64), block_n=(64, 128), block_k=(64,), group_m=(1, 8), num_warps=(4,), num_stages=(3,))
    else:
        dims = dict(block_m=(16, 32, 64, 128), block_n=(32, 64, 128, 256), block_k=(32, 64, 128),
                    group_m=(1, 16), num_warps=(4, 8), num_stages=(2, 3, 4))
    return [MoeBlockConfig(**dict(zip(dims, values))) for values in itertools.product(*dims.values())]


def make_inputs(tokens: int, shape: ExpertShape, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """x [T, D], gate_up [E, 2I, D], down [E, D, I], weights [T, K] fp32, ids [T, K]: routed
    by a random softmax router as `Layer.route` does, so expert loads are realistically uneven."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    D, E, I, K = shape.hidden, shape.experts, shape.width, shape.top_k
    x = torch.randn(tokens, D, generator=g)
    gate_up = torch.randn(E, 2 * I, D, generator=g) * D**-0.5
    down = torch.randn(E, D, I, generator=g) * I**-0.5
    probs = torch.softmax(torch.randn(tokens, E, generator=g), dim=-1)
    weights, ids = torch.topk(probs, K, dim=-1)
    weights = weights / weights.sum(-1, keepdim=True)
    return (x.to(device, dtype), gate_up.to(device, dtype), down.to(device, dtype), weights.to(device), ids.to(device))


def gpu_timer(fn: Callable[[], object]) -> float:
    """Milliseconds per call, median over triton's own repetitions (L2 flushed between them)."""
    import triton.testing

    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")


def cpu_timer(fn: Callable[[], object], reps: int = 3) -> float:
    """Milliseconds per call, best of `reps` after a warm-up (the interpreter's times are noisy)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def tune(tokens: list[int], shape: ExpertShape, dtype: torch.dtype, device: torch.device,
         space: list[MoeBlockConfig], timer: Callable[[Callable[[], object]], float],
         act: str = "gelu_pytorch_tanh", log: Callable[[str], None] = print) -> dict[int, MoeBlockConfig]:
    """The fastest config of `space` per token count, each checked against `ops.moe`."""
    from triton.runtime.errors import OutOfResources

    from dgls.kernels.moe_triton import fused_moe

    best: dict[int, MoeBlockConfig] = {}
    for T in tokens:
        inputs = make_inputs(T, shape, dtype, device)
        times: dict[MoeBlockConfig, float] = {}
        skipped = 0
        for config in space:
            try:
                times[config] = timer(lambda: fused_moe(*inputs, act, config))
            except OutOfResources:  # too much shared memory / registers on this GPU: not a candidate
                skipped += 1
        if not times:
            raise RuntimeError(f"T={T}: no config of the search space fits this device")
        winner = min(times, key=times.get)
        # Checked against the reference in fp32 on the same (rounded) inputs; the bf16/fp16
        # tolerance is the one tests/kernels/test_moe_triton.py states for the GPU.
        expected = ops.moe(*[t.float() if t.is_floating_point() else t for t in inputs], act)
        got = fused_moe(*inputs, act, winner)
        tol = 1e-4 if dtype == torch.float32 else 3e-2
        torch.testing.assert_close(got.float(), expected, rtol=tol, atol=tol)
        default = timer(lambda: fused_moe(*inputs, act, default_config(T, shape.experts)))
        reference = timer(lambda: ops.moe(*inputs, act))
        log(f"T={T:5d}  best {times[winner]:8.3f} ms  default {default:8.3f} ms ({default / times[winner]:.2f}x)  "
            f"torch {reference:8.3f} ms ({reference / times[winner]:.2f}x)  [{len(times)} timed, {skipped} too big]  "
            f"{winner.to_json()}")
        best[T] = winner
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="diffusiongemma-26b-a4b", help="a named config or a checkpoint directory")
    ap.add_argument("--tokens", type=int, nargs="+", default=list(DEFAULT_TOKENS))
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true", help="a small search space")
    ap.add_argument("--out", type=Path, default=CONFIG_DIR, help="directory for the JSON file")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("tune_moe: no CUDA device; tuning is for GPUs (--device cpu tunes the interpreter only)", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are first imported, in tune()
    device = torch.device(args.device)
    shape = expert_shape(args.model)
    name = device_name(device)
    print(f"device {name}; experts E={shape.experts} width N={shape.width} hidden D={shape.hidden} "
          f"top-k {shape.top_k}; {args.dtype}")
    timer = gpu_timer if device.type == "cuda" else cpu_timer
    best = tune(args.tokens, shape, DTYPES[args.dtype], device, search_space(args.quick), timer)
    path = write_configs(best, shape.experts, shape.width, name, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
