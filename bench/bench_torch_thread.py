"""Where torch runs: a denoising step on the thread that loaded the model, against one on
another thread of the same process.

    python bench/bench_torch_thread.py [--rounds 3]

Each placement runs in a fresh process (a model of dgls-tiny's dimensions, random weights,
2 canvases of 32 tokens over a 292-token prompt, 8 steps, 4 times; the median step is kept),
the placements interleaved round by round:

- one thread: load and denoise on the main thread (the CLI's in-process engine now);
- one other thread: load and denoise both on one pool thread (the worker);
- two threads: load on the main thread, denoise on a pool thread (the CLI's engine before).

With libgomp each thread that runs a parallel region gets an OpenMP team of its own; with
more team threads than cores it stops spinning between regions, and a step is hundreds of
small regions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEMENTS = ("one thread", "one other thread", "two threads")


def load():
    sys.path.insert(0, str(ROOT))
    from dgls.model import random_checkpoint
    from dgls.model.engine import Engine

    model = ROOT / "bench" / "out" / "tiny-random-spm-8"
    if not (model / "config.json").exists():
        random_checkpoint.write(model, "dgls-tiny", fim_order="spm", max_steps=8)
    return Engine.load(model, device="cpu", prompt_cache_mib=0)


def steps(engine) -> float:
    medians = []
    for _ in range(4):
        ts = [time.perf_counter()]
        engine.infill_ids(list(range(5, 297)), n=2, canvas_length=32, max_steps=8, seed=0,
                          on_step=lambda _: ts.append(time.perf_counter()) and False)
        medians.append(statistics.median(b - a for a, b in zip(ts[1:], ts[2:])) * 1e3)  # steps 2..8: no encode
    return statistics.median(medians)


def child(placement: str) -> float:
    pool = ThreadPoolExecutor(max_workers=1)
    if placement == "one thread":
        return steps(load())
    if placement == "one other thread":
        return pool.submit(lambda: steps(load())).result()
    engine = load()
    return pool.submit(steps, engine).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=PLACEMENTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    ms: dict[str, list[float]] = {p: [] for p in PLACEMENTS}
    for _ in range(args.rounds):
        for placement in PLACEMENTS:
            out = subprocess.run([sys.executable, __file__, "--child", placement], check=True, capture_output=True,
                                 text=True).stdout
            ms[placement].append(json.loads(out))
    import torch

    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}); median denoising step, 2 x 32 tokens, {args.rounds} rounds")
    base = statistics.median(ms["one thread"])
    for placement, values in ms.items():
        median = statistics.median(values)
        print(f"{placement:17s} {median:6.1f} ms a step ({', '.join(f'{v:.1f}' for v in values)}): "
              f"{median / base:.2f}x the one-thread step")


if __name__ == "__main__":
    main()
