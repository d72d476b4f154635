"""The decoder's attention at DiffusionGemma's real dimensions: the Triton canvas-attention
kernel against the reference path (keys concatenated, SDPA with an explicit mask), same
inputs, same run, same device.

    python bench/bench_attention.py [--prompt 2048] [--canvas 256] [--batch 1 4]
                                    [--dtype bfloat16] [--sweep] [--peak-gbps N]

Random inputs with the geometry of `diffusiongemma-26b-a4b` (model/config.py): 16 query
heads; sliding layers with 8 KV heads of 256 over the 1023 keys their cache keeps; global
layers with 2 KV heads of 512 over the whole prompt. For each layer kind and canvas count it
prints: the reference's time without padding (SDPA may pick flash) and with a left-padding
mask (the path batched requests take), the kernel's time with the default blocks (and with
`--sweep` the best of a few block shapes), the ratio to the masked reference, the bytes each
call must move, the kernel's achieved bandwidth as % of the device's peak, and its TFLOP/s
(with 256 canvas queries per head the matrix products, not the bytes, set the floor here:
compare with the device's dense bf16 peak). Then one denoising step's attention (sliding +
global layers in the model's proportion). Every kernel output is first checked against
the fp32 reference.

Needs a CUDA GPU. `--device cpu` runs Triton's interpreter at reduced sizes to check that the
script itself works; its timings say nothing about any GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Peak HBM bandwidth by device-name fragment (vendor data sheets), GB/s; --peak-gbps overrides.
PEAK_GBPS = {"H200": 4800.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0, "A100": 1555.0}


def peak_bandwidth(name: str) -> float | None:
    return next((gbps for fragment, gbps in PEAK_GBPS.items() if fragment in name), None)


def gpu_timer(fn: Callable[[], object]) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")


def cpu_timer(fn: Callable[[], object], reps: int = 2) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def make_inputs(B, H, Hkv, L, P, Pk, Dh, padded, dtype, device, seed=0):
    """q/k unit-RMS like the network's normed projections; a shared cache (batch 1) unless
    padded, where each canvas has its own cache row and rows lose 0, 1/4, 1/2, 3/4 of P."""
    g = torch.Generator().manual_seed(seed)

    def unit(*shape):
        x = torch.randn(*shape, generator=g)
        return (x * x.pow(2).mean(-1, keepdim=True).rsqrt()).to(device, dtype)

    Bp = B if padded else 1
    q = unit(B, L, H, Dh).transpose(1, 2)
    ck, cv = unit(Bp, Pk, Hkv, Dh).transpose(1, 2), unit(Bp, Pk, Hkv, Dh).transpose(1, 2)
    k, v = unit(B, L, Hkv, Dh).transpose(1, 2), unit(B, L, Hkv, Dh).transpose(1, 2)
    key_start = None
    if padded:
        starts = torch.tensor([(i % 4) * P // 4 for i in range(B)])  # first real prompt position
        key_start = (starts - (P - Pk)).to(device)
    return q, ck, cv, k, v, key_start


def bytes_moved(B, H, Hkv, L, Pk, Dh, Bp, dtype) -> int:
    """What one call must read and write at least: q, the cache once per cache row, the
    canvas keys/values, the output."""
    size = torch.tensor([], dtype=dtype).element_size()
    return size * Dh * (2 * B * H * L + 2 * Bp * Hkv * Pk + 2 * B * Hkv * L)


def flops(B, H, L, Pk, Dh) -> int:
    """The two matrix products (scores and values), 2 flops per multiply-add."""
    return 2 * 2 * B * H * L * (Pk + L) * Dh


def sweep_space(Dh: int):
    from dgls.kernels.attention_triton import AttentionBlocks

    shapes = [(16, 32), (32, 32), (32, 64), (64, 32), (64, 64), (128, 32), (128, 64)]
    out = []
    for bm, bn in shapes:
        if bm * Dh > 64 * 256 or bn * Dh > 64 * 512:  # accumulator / key tile too large for registers + smem
            continue
        for warps in (4, 8):
            for stages in (1, 2, 3):
                out.append(AttentionBlocks(bm, bn, warps, stages))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--canvas", type=int, default=256)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    ap.add_argument("--sweep", action="store_true", help="also time a few block shapes and report the best")
    ap.add_argument("--peak-gbps", type=float, help="the device's peak memory bandwidth (default: by device name)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_attention: needs a CUDA GPU (none here); `--device cpu` only checks the script "
              "under Triton's interpreter", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel module is imported
        os.environ["DGLS_KERNELS"] = "triton"
    from dgls.kernels import ops
    from dgls.kernels.attention_triton import canvas_attention, default_blocks
    from dgls.model.config import CONFIGS

    cfg = CONFIGS["diffusiongemma-26b-a4b"]
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    timer = gpu_timer if device.type == "cuda" else cpu_timer
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)"
    peak = args.peak_gbps or peak_bandwidth(name)
    print(f"device: {name}; torch {torch.__version__}; {args.dtype}; prompt {args.prompt}, canvas {args.canvas}; "
          f"peak bandwidth {peak or '?'} GB/s")
    kinds = {}
    for spec in cfg.layers:
        kinds.setdefault(spec, 0)
        kinds[spec] += 1
    H, P, L = cfg.num_heads, args.prompt, args.canvas
    print("| layer | canvases | padded | reference ms (no mask) | reference ms (mask) | kernel ms | "
          "kernel / masked ref | MB moved | kernel GB/s | % of peak | kernel TFLOP/s | best swept | max |diff| |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    step = {}
    for B in args.batch:
        for padded in (False, True):
            for spec, count in kinds.items():
                Pk = min(P, cfg.sliding_window - 1) if spec.sliding else P
                Hkv, Dh = spec.kv_heads, spec.head_dim
                q, ck, cv, k, v, key_start = make_inputs(B, H, Hkv, L, P, Pk, Dh, padded, dtype, device)
                expected = ops.canvas_attention(*(t.float() for t in (q, ck, cv, k, v)), key_start)
                got = canvas_attention(q, ck, cv, k, v, key_start)
                diff = (got.float() - expected).abs().max().item()
                ref_plain = timer(lambda: ops.canvas_attention(q, ck, cv, k, v, None))
                ref_mask = timer(lambda: ops.canvas_attention(
                    q, ck, cv, k, v, key_start if padded else torch.zeros(ck.shape[0], dtype=torch.long, device=device)))
                kernel = timer(lambda: canvas_attention(q, ck, cv, k, v, key_start))
                best = ""
                if args.sweep:
                    times = {}
                    for blocks in sweep_space(Dh):
                        try:
                            times[blocks] = timer(lambda: canvas_attention(q, ck, cv, k, v, key_start, blocks))
                        except Exception as err:  # out of shared memory / registers: not a candidate
                            print(f"  skip {blocks}: {str(err).splitlines()[0][:100]}", file=sys.stderr)
                    if times:
                        fastest = min(times, key=times.get)
                        best = f"{times[fastest]:.3f} ms {tuple(fastest)} (default {tuple(default_blocks(Dh))})"
                moved = bytes_moved(B, H, Hkv, L, Pk, Dh, ck.shape[0], dtype)
                gbps = moved / kernel / 1e6
                pct = f"{100 * gbps / peak:.0f}%" if peak else "?"
                tflops = flops(B, H, L, Pk, Dh) / kernel / 1e9
                kind = f"{'sliding' if spec.sliding else 'global'} Dh={Dh} Hkv={Hkv} keys={Pk}+{L}"
                print(f"| {kind} | {B} | {'yes' if padded else 'no'} | {ref_plain:.3f} | {ref_mask:.3f} | {kernel:.3f} | "
                      f"{kernel / ref_mask:.2f}x | {moved / 1e6:.1f} | {gbps:.0f} | {pct} | {tflops:.1f} | {best} | {diff:.2e} |")
                acc = step.setdefault((B, padded), [0.0, 0.0])
                acc[0] += count * ref_mask
                acc[1] += count * kernel
    counts = ", ".join(f"{n} {'sliding' if s.sliding else 'global'}" for s, n in kinds.items())
    print(f"\nattention of one denoising step ({counts} layers):")
    print("| canvases | padded | reference ms (mask) | kernel ms | speed-up |")
    print("|---:|---|---:|---:|---:|")
    for (B, padded), (ref, ker) in step.items():
        print(f"| {B} | {'yes' if padded else 'no'} | {ref:.2f} | {ker:.2f} | {ref / ker:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
