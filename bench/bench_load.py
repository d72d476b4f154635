"""Load: N editors (real `dgls serve` processes) typing into one worker, against one editor
alone, measured in the same run on the same machine.

    python bench/bench_load.py [--model DIR] [--editors 8] [--seconds 30]

Each editor types a character into one of its two documents and asks for a suggestion,
in a loop, waiting for each reply (as a user waiting for ghost text). Prints p50/p95
latency of each phase, the ratio of p95 under load to p95 alone, requests per second,
every request answered and checked against its own document, and the RSS of the servers
plus the worker before and after. Without --model it trains the tests' tiny fixed model
(about 25 s on CPU) into bench/out/.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import SMALL, worker_health  # noqa: E402
from tests.support.load import run_load  # noqa: E402
from tests.support.raw_lsp import RawServer  # noqa: E402


def worker_pid(runtime: Path) -> int:
    return worker_health(runtime)[0]["pid"]


def phase(n: int, model: Path, answer: str, seconds: float, runtime: Path):
    servers = [RawServer({"DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(model)}) for _ in range(n)]
    try:
        for s in servers:
            s.initialize(SMALL)
        return run_load(servers, lambda: worker_pid(runtime), answer, seconds)
    finally:
        for s in servers:
            s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--editors", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    model = args.model
    if model is None:
        from tests.support.fixed_model import train_fixed_model

        model = ROOT / "bench" / "out" / "fixed-model"
        if not (model / "ANSWER").exists():
            train_fixed_model(model)
    answer = (model / "ANSWER").read_text() if (model / "ANSWER").exists() else ""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "rt"
        runtime.mkdir(mode=0o700)
        try:
            alone = phase(1, model, answer, args.seconds, runtime)
            loaded = phase(args.editors, model, answer, args.seconds, runtime)
        finally:
            for sock in runtime.glob("*.sock"):
                try:
                    os.kill(worker_pid(runtime), signal.SIGTERM)
                except OSError:
                    pass
    print(f"device: cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores); model {model.name}")
    for name, r in (("1 editor", alone), (f"{args.editors} editors", loaded)):
        print(f"{name:>11}: {r.asked} requests in {r.seconds:.0f} s ({r.asked / r.seconds:.1f}/s), "
              f"{r.answered} answered, {len(r.wrong)} for the wrong document, {r.suggestions} with a suggestion; "
              f"p50 {r.p50_ms:.0f} ms, p95 {r.p95_ms:.0f} ms; RSS servers+worker {r.rss_start / 2**20:.0f} -> "
              f"{r.rss_end / 2**20:.0f} MiB")
    print(f"p95 under load / p95 alone: {loaded.p95_ms / alone.p95_ms:.2f}x; "
          f"throughput ratio: {(loaded.asked / loaded.seconds) / (alone.asked / alone.seconds):.2f}x")
    return 0 if loaded.answered == loaded.asked and not loaded.wrong else 1


if __name__ == "__main__":
    sys.exit(main())
