"""bf16 against fp32 weights on this CPU: a keystroke's suggestion, and whether its tokens change.

    python bench/bench_cpu_dtype.py [--model DIR] [--lines 3] [--steps 8] [--threads N] [--limit N]

The keystrokes of bench_prompt_cache.py (lines of real files deleted and re-typed, the
worker's suggestion path in-process: tree-sitter hole, default windows, line canvas, the
automatic candidates, prompt store on) are replayed on two engines of one checkpoint, fp32
and bf16, one keystroke on each in turn so that both see the same machine load. Reported:
p50/p95 per suggestion, encode and denoise p50, and how often the two agree under the same
seed (whole candidates, and characters position by position). Without --model, a random
checkpoint of dgls-tiny's dimensions with a fixed step count: its distributions are near
uniform, every draw is a near-tie, so its agreement says little; pass a trained model for that.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from bench_prompt_cache import complete, keystrokes, pct  # noqa: E402
from dgls.backends.engine import EngineBackend  # noqa: E402
from dgls.languages import by_name  # noqa: E402
from dgls.model import random_checkpoint  # noqa: E402
from dgls.model.engine import Engine  # noqa: E402
from dgls.model.loader import cpu_has_native_bf16  # noqa: E402
from dgls.options import DEFAULTS  # noqa: E402


def suggest(engine: Engine, text: str, offset: int):
    t0 = time.perf_counter()
    c = complete(EngineBackend(engine), text, offset, by_name("python"), path="bench.py",
                 n=DEFAULTS.candidates_automatic, budget_ms=math.inf, seed=0, mode="line")
    return c, (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a trained checkpoint (default: random, dgls-tiny's dimensions)")
    ap.add_argument("--files", nargs="+", type=Path, default=[ROOT / "dgls" / "hole.py", ROOT / "dgls" / "cache.py"])
    ap.add_argument("--lines", type=int, default=3, help="lines typed per file")
    ap.add_argument("--steps", type=int, default=8, help="random model: its fixed denoising steps per suggestion")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N keystrokes (0: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = args.model
    if model is None:
        model = ROOT / "bench" / "out" / f"tiny-random-spm-{args.steps}"
        if not (model / "config.json").exists():
            random_checkpoint.write(model, "dgls-tiny", fim_order="spm", max_steps=args.steps)
    engines = {name: Engine.load(model, device="cpu", dtype=name) for name in ("float32", "bfloat16")}
    strokes = keystrokes(args.files, args.lines)
    if args.limit:
        strokes = strokes[: args.limit]
    runs = {name: {"ms": [], "encode": [], "denoise": [], "texts": []} for name in engines}
    for name, engine in engines.items():  # first-call allocations, outside the measurement
        suggest(engine, *strokes[0])
        engine.prompts.clear()
    for text, offset in strokes:
        for name, engine in engines.items():
            c, ms = suggest(engine, text, offset)
            if not c.prompt_tokens:  # no hole here: no model run
                continue
            run = runs[name]
            run["ms"].append(ms)
            run["encode"].append(c.timing["encode_ms"])
            run["denoise"].append(c.timing["denoise_ms"])
            run["texts"].append(tuple(c.texts))

    f32, b16 = runs["float32"], runs["bfloat16"]
    same = sum(a == b for a, b in zip(f32["texts"], b16["texts"]))
    chars = [(sum(x == y for x, y in zip(a, b)), max(len(a), len(b)))
             for ta, tb in zip(f32["texts"], b16["texts"]) for a, b in zip(ta, tb)]
    char_agree = sum(s for s, _ in chars) / max(1, sum(n for _, n in chars))
    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}); model: {model.name}; "
          f"{DEFAULTS.candidates_automatic} candidates of the line canvas; {len(f32['ms'])} suggestions")
    for name, run in runs.items():
        print(f"{name:9s} p50 {pct(run['ms'], .5):7.1f} ms  p95 {pct(run['ms'], .95):7.1f} ms  "
              f"(encode p50 {pct(run['encode'], .5):.1f}, denoise p50 {pct(run['denoise'], .5):.1f})")
    print(f"speed-up bf16 over fp32: p50 {pct(f32['ms'], .5) / pct(b16['ms'], .5):.2f}x, "
          f"denoise {pct(f32['denoise'], .5) / pct(b16['denoise'], .5):.2f}x, "
          f"encode {pct(f32['encode'], .5) / pct(b16['encode'], .5):.2f}x")
    print(f"agreement (same seed): all candidates equal in {same}/{len(f32['texts'])} suggestions; "
          f"characters equal position by position {char_agree:.1%}")


if __name__ == "__main__":
    main()
