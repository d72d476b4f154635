"""Typing through the engine, technique by technique: what a keystroke costs.

    python bench/bench_prompt_cache.py [--files dgls/hole.py dgls/cache.py] [--lines 6] [--steps 8]

Lines of real files are deleted and re-typed one character at a time. After each character
the suggestion path runs in-process (dgls.complete: tree-sitter hole, windows at the default
1024/256 tokens, the line canvas, the automatic candidates; one request at a time through
`Engine.infill`, where the worker batches through `infill_many`), on a
model of dgls-tiny's dimensions with random weights in suffix-prefix-middle order and a fixed
number of denoising steps (a random model never converges, so every request does the same
work). One engine per configuration (`CONFIGS`: the store and the sampler as before the
latency work, then each technique added in turn; every row has today's in-place soft-cap and
runs on the thread that loaded it), all in one process and interleaved keystroke by keystroke, so a
drift of the machine touches every configuration alike. Reported per configuration: latency
p50/p95, encode and denoise p50, the share of prompt tokens encoded, candidates equal to the
baseline's (same seed); then, in a process of its own with one engine, the RSS with the
prompt store empty and full.
"""

from __future__ import annotations

import argparse
import math
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dgls.backends.engine import EngineBackend  # noqa: E402
from dgls.complete import complete as complete_async  # noqa: E402
from dgls.hole import NONE, Document, classify  # noqa: E402
from dgls.languages import by_name  # noqa: E402
from dgls.model import random_checkpoint  # noqa: E402
from dgls.model.engine import Engine  # noqa: E402
from dgls.model.prompt_store import PromptStore  # noqa: E402
from dgls.options import DEFAULTS  # noqa: E402


def complete(backend, *args, **kwargs):
    return asyncio.run(complete_async(backend, *args, **kwargs))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def keystrokes(files: list[Path], lines_per_file: int) -> list[tuple[str, int]]:
    """(document text, cursor offset) after each typed character, in typing order."""
    out = []
    for path in files:
        text = path.read_text()
        lines = text.split("\n")
        doc = Document(text, by_name("python"))
        ends = [sum(len(x) + 1 for x in lines[: i + 1]) - 1 for i in range(len(lines))]
        # Code lines only: the end of a docstring or comment line has no hole to fill.
        sites = [(i, ln) for i, ln in enumerate(lines)
                 if 8 <= len(ln.strip()) <= 70 and classify(doc, ends[i]).kind != NONE]
        step = max(1, len(sites) // lines_per_file)
        for line_no, line in sites[::step][:lines_per_file]:
            start = sum(len(x) + 1 for x in lines[:line_no])
            indent = len(line) - len(line.lstrip())
            for col in range(indent + 1, len(line) + 1):
                out.append((text[: start + col] + text[start + len(line):], start + col))
    return out


# (name, prompt store MiB, sampler mode): each row adds one technique to the row above.
CONFIGS = (
    ("before (store off, reference sampler)", 0, "reference"),
    ("+ draws only where accepted", 0, "accepted"),
    ("+ lean vocabulary statistics", 0, "lean"),
    ("+ prompt store (the engine now)", DEFAULTS.prompt_cache_mib, "lean"),
)


def suggest(engine: Engine, text: str, offset: int):
    # No latency budget: a budget stops every configuration at the same deadline, so a faster
    # encode would only buy more denoising steps and every row would take the same time.
    return complete(EngineBackend(engine), text, offset, by_name("python"), path="bench.py",
                    n=DEFAULTS.candidates_automatic, budget_ms=math.inf, seed=0, mode="line")


def replay(engines: list[Engine], strokes: list[tuple[str, int]]) -> list[dict]:
    runs = [{"ms": [], "encode_ms": [], "denoise_ms": [], "tokens": [], "prompt_tokens": 0} for _ in engines]
    for k, (text, offset) in enumerate(strokes):
        order = list(range(len(engines)))
        order = order[k % len(order):] + order[:k % len(order)]  # nobody always runs first
        for i in order:
            t0 = time.perf_counter()
            c = suggest(engines[i], text, offset)
            if not c.prompt_tokens:  # no hole here (inside a string, mid-word): no model run
                continue
            run = runs[i]
            run["ms"].append((time.perf_counter() - t0) * 1e3)
            run["encode_ms"].append(c.timing["encode_ms"])
            run["denoise_ms"].append(c.timing["denoise_ms"])
            run["tokens"].append([s.text for s in c.suggestions] + [t for t, _ in c.rejected])
            run["prompt_tokens"] += c.prompt_tokens
    for engine, run in zip(engines, runs):
        run["encoded_tokens"] = engine.prompts.stats()["encoded_tokens"] if engine.prompts.max_bytes else run["prompt_tokens"]
    return runs


def memory(model: Path, strokes: list[tuple[str, int]]) -> dict:
    """RSS of a process holding one engine (the engine now) after the keystrokes with the
    prompt store off, then with it on and filled to its bound."""
    engine = Engine.load(model, device="cpu", prompt_cache_mib=0)
    for text, offset in strokes:
        suggest(engine, text, offset)
    rss_off = rss_mib()
    engine.prompts = PromptStore(DEFAULTS.prompt_cache_mib * 2**20)
    for text, offset in strokes:
        suggest(engine, text, offset)
    # Fill the store to its bound with other files (each path starts a prompt of its own).
    per_entry, k = engine.prompts.entries[-1].state.nbytes, 0
    while engine.prompts.nbytes + per_entry <= engine.prompts.max_bytes:
        text, offset = strokes[k * 37 % len(strokes)]
        complete(EngineBackend(engine), text, offset, by_name("python"), path=f"fill{k}.py", n=1, budget_ms=math.inf, seed=0)
        k += 1
    return {"off": rss_off, "full": rss_mib(), "entries": engine.prompts.stats()["entries"],
            "store_mib": engine.prompts.nbytes / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", type=Path, default=[ROOT / "dgls" / "hole.py", ROOT / "dgls" / "cache.py"])
    ap.add_argument("--lines", type=int, default=6, help="lines typed per file")
    ap.add_argument("--steps", type=int, default=8, help="denoising steps per suggestion")
    ap.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)  # the RSS child process
    args = ap.parse_args()

    out = ROOT / "bench" / "out"
    model = out / f"tiny-random-spm-{args.steps}"
    if not (model / "config.json").exists():
        random_checkpoint.write(model, "dgls-tiny", fim_order="spm", max_steps=args.steps)
    strokes = keystrokes(args.files, args.lines)
    if args.memory_only:
        print(json.dumps(memory(model, strokes)))
        return

    engines = [Engine.load(model, device="cpu", prompt_cache_mib=mib, mode=mode) for _, mib, mode in CONFIGS]
    replay(engines, strokes[:3])  # first-call allocations, outside the measurement
    for engine in engines:
        engine.prompts.clear()
    runs = replay(engines, strokes)
    rss = json.loads(subprocess.run([sys.executable, __file__, "--memory-only", "--steps", str(args.steps),
                                     "--lines", str(args.lines), "--files", *map(str, args.files)],
                                    check=True, capture_output=True, text=True).stdout)

    base = runs[0]
    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}); model: dgls-tiny dimensions, random weights, SPM, "
          f"{args.steps} steps, {DEFAULTS.candidates_automatic} candidates of {DEFAULTS.line_canvas} tokens; "
          f"{len(strokes)} keystrokes in {', '.join(f.name for f in args.files)}, {len(base['ms'])} with a hole")
    print("| configuration | p50 ms | p95 ms | encode p50 | denoise p50 | prompt encoded | p50 vs before | same as before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, _, _), run in zip(CONFIGS, runs):
        same = sum(a == b for a, b in zip(base["tokens"], run["tokens"]))
        print(f"| {name} | {pct(run['ms'], .5):.1f} | {pct(run['ms'], .95):.1f} | {pct(run['encode_ms'], .5):.1f} | "
              f"{pct(run['denoise_ms'], .5):.1f} | {run['encoded_tokens'] / run['prompt_tokens']:.1%} | "
              f"{pct(base['ms'], .5) / pct(run['ms'], .5):.2f}x | {same}/{len(base['ms'])} |")
    print(f"prompt tokens per suggestion: {base['prompt_tokens'] / len(base['ms']):.0f}")
    print(f"RSS (one engine, the engine now): {rss['off']:.0f} MiB with the store off, {rss['full']:.0f} MiB "
          f"with it full ({rss['entries']} entries, {rss['store_mib']:.0f} MiB): {rss['full'] / rss['off']:.2f}x")
    (out / "prompt_cache.json").write_text(json.dumps(
        {"configs": [c[0] for c in CONFIGS], "runs": [{k: v for k, v in r.items() if k != "tokens"} for r in runs],
         "rss_mib": rss}, indent=1))


if __name__ == "__main__":
    main()
