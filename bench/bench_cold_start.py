"""Cold start: how long until the first suggestion, with and without the worker's warm-up.

    python bench/bench_cold_start.py [--model DIR] [--runs 3]

Each run is a fresh process (first-call costs are per process): load the model, then,
as the worker does before it says "ready", warm up (one real denoising pass per canvas
length) or not, then ask the first line suggestion and a second one (warm). Reported per
variant, medians over runs: load, warm-up, first request and warm request latency, and the
ratio first/warm (1.0 = the user's first keystroke is served like every later one). Then
the real path: a worker spawned by the client, spawn -> ready and the first suggestion.
Without --model, a random checkpoint of dgls-tiny's dimensions (the steps, not the answer,
matter here; the step count is fixed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "import os\n\n\ndef size(path):\n    return os.path.getsize(path)\n\n\ndef total(paths):\n    return "
STEPS = 12  # fixed: random weights never converge, so every request runs the same steps


def one_process(model: str, warm: bool) -> dict:
    from dgls.model.api import InfillRequest
    from dgls.model.config import CANVAS
    from dgls.model.engine import BatchItem, Engine

    t0 = time.perf_counter()
    engine = Engine.load(model, device="cpu")
    t1 = time.perf_counter()
    if warm:
        engine.warm_up((CANVAS.line, CANVAS.block))
    t2 = time.perf_counter()
    req = InfillRequest(PREFIX, "\n", language="python", path="m.py")
    times = []
    for _ in range(2):
        s = time.perf_counter()
        engine.infill_many([BatchItem(req, n=1)], canvas_length=CANVAS.line, max_steps=STEPS)
        times.append((time.perf_counter() - s) * 1e3)
    return {"load_ms": (t1 - t0) * 1e3, "warm_up_ms": (t2 - t1) * 1e3, "first_ms": times[0], "warm_ms": times[1]}


async def real_worker(model: str, runtime: Path) -> dict:
    from dgls.model.api import InfillCall, InfillRequest
    from dgls.worker_client import WorkerClient, WorkerSpec, unwrap

    os.environ["DGLS_RUNTIME_DIR"] = str(runtime)
    client = WorkerClient(WorkerSpec(model, "cpu", idle_timeout=30))
    t0 = time.perf_counter()
    health = {}
    try:
        while True:  # spawn, then poll health until the model is ready
            health = await client.request("health")
            if health["state"] != "loading":
                break
            await asyncio.sleep(0.02)
        t1 = time.perf_counter()
        _, reply = await client.infill(InfillCall(InfillRequest(PREFIX, "\n", language="python", path="m.py"), n=1,
                                                  canvas_length=32, seed=0))
        unwrap(await reply)
        t2 = time.perf_counter()
    finally:
        await client.close()
        if "pid" in health:  # the worker would otherwise wait out its idle timeout
            os.kill(health["pid"], 15)
    return {"spawn_to_ready_ms": (t1 - t0) * 1e3, "first_suggestion_ms": (t2 - t1) * 1e3,
            "spawn_to_first_suggestion_ms": (t2 - t0) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--_child", choices=["warm", "cold"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(one_process(args.model, args._child == "warm")))
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from dgls.model import random_checkpoint
            model = str(random_checkpoint.write(Path(tmp) / "ckpt", "dgls-tiny", seed=0))
            gen = Path(model) / "generation_config.json"  # the real worker's path reads its steps here
            gen.write_text(json.dumps({**json.loads(gen.read_text()), "max_denoising_steps": STEPS}))
        results: dict[str, list[dict]] = {"cold": [], "warm": []}
        for _ in range(args.runs):
            for variant in ("cold", "warm"):  # interleaved: the machine's drift hits both
                out = subprocess.run([sys.executable, __file__, "--model", model, "--_child", variant],
                                     capture_output=True, text=True, check=True)
                results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
        runtime = Path(tmp) / "rt"
        runtime.mkdir(mode=0o700)
        real = asyncio.run(real_worker(model, runtime))

    print(f"device: CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"model {args.model or 'random dgls-tiny'}, line canvas, {STEPS} steps; medians of {args.runs} processes")
    print(f"{'':>22} {'load':>8} {'warm-up':>8} {'first':>8} {'warm':>8} {'first/warm':>10}")
    for variant, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        name = "with warm-up (dgls)" if variant == "warm" else "without (baseline)"
        print(f"{name:>22} {med['load_ms']:>7.0f}ms {med['warm_up_ms']:>7.0f}ms {med['first_ms']:>7.0f}ms "
              f"{med['warm_ms']:>7.0f}ms {med['first_ms'] / med['warm_ms']:>9.2f}x")
    print("real worker: " + ", ".join(f"{k} {v:.0f} ms" for k, v in real.items()))


if __name__ == "__main__":
    main()
