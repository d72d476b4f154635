"""Typing through the engine with and without the prompt store: what a keystroke costs.

    python bench/bench_prompt_cache.py [--files dgls/hole.py dgls/cache.py] [--lines 6] [--steps 8]

Lines of real files are deleted and re-typed one character at a time. After each character
the suggestion path runs in-process as the worker runs it (dgls.complete: tree-sitter hole,
windows at the default 1024/256 tokens, the line canvas, the automatic candidates), on a
model of dgls-tiny's dimensions with random weights in suffix-prefix-middle order and a fixed
number of denoising steps (a random model never converges, so every request does the same
work). The same keystrokes are replayed with the store off (baseline: every prompt encoded
whole, as before the store) and on, in one process; reported per keystroke: latency
p50/p95, the share of prompt tokens encoded, candidate tokens equal between the two runs
(same seed), and the process's RSS without and with the store full.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
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


def replay(engine: Engine, strokes: list[tuple[str, int]]) -> dict:
    python = by_name("python")
    ms, encode_ms, denoise_ms, prompt, tokens = [], [], [], 0, []
    for text, offset in strokes:
        t0 = time.perf_counter()
        c = complete(EngineBackend(engine), text, offset, python, path="bench.py", n=DEFAULTS.candidates_automatic,
                     budget_ms=None, seed=0, mode="line")
        if not c.prompt_tokens:  # no hole here (inside a string, mid-word): no model run
            continue
        ms.append((time.perf_counter() - t0) * 1e3)
        encode_ms.append(c.timing["encode_ms"])
        denoise_ms.append(c.timing["denoise_ms"])
        tokens.append([s.text for s in c.suggestions] + [t for t, _ in c.rejected])
        prompt += c.prompt_tokens
    stats = engine.prompts.stats()
    encoded = stats["encoded_tokens"]
    return {"ms": ms, "encode_ms": encode_ms, "denoise_ms": denoise_ms, "tokens": tokens, "prompt_tokens": prompt,
            "encoded_tokens": encoded, "store": stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", type=Path, default=[ROOT / "dgls" / "hole.py", ROOT / "dgls" / "cache.py"])
    ap.add_argument("--lines", type=int, default=6, help="lines typed per file")
    ap.add_argument("--steps", type=int, default=8, help="denoising steps per suggestion")
    args = ap.parse_args()

    out = ROOT / "bench" / "out"
    model = out / f"tiny-random-spm-{args.steps}"
    if not (model / "config.json").exists():
        random_checkpoint.write(model, "dgls-tiny", fim_order="spm", max_steps=args.steps)
    strokes = keystrokes(args.files, args.lines)

    off = Engine.load(model, device="cpu", prompt_cache_mib=0)
    replay(off, strokes[:3])  # first-call allocations, outside the measurement
    off.prompts.clear()
    rss_off = rss_mib()
    base = replay(off, strokes)
    on = Engine.load(model, device="cpu")
    replay(on, strokes[:3])
    on.prompts.clear()
    cached = replay(on, strokes)
    # Fill the store to its bound with other files (each path starts a prompt of its own).
    per_entry, k = on.prompts.entries[-1].state.nbytes, 0
    while on.prompts.nbytes + per_entry <= on.prompts.max_bytes:
        text, offset = strokes[k * 37 % len(strokes)]
        complete(EngineBackend(on), text, offset, by_name("python"), path=f"fill{k}.py", n=1, budget_ms=None, seed=0)
        k += 1
    rss_full = rss_mib()

    same = sum(a == b for a, b in zip(base["tokens"], cached["tokens"]))
    b50, b95, c50, c95 = pct(base["ms"], .5), pct(base["ms"], .95), pct(cached["ms"], .5), pct(cached["ms"], .95)
    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads); "
          f"model: dgls-tiny dimensions, random weights, SPM, {args.steps} steps, {DEFAULTS.candidates_automatic} candidates "
          f"of {DEFAULTS.line_canvas} tokens; {len(strokes)} keystrokes in {', '.join(f.name for f in args.files)}")
    for name, run in (("store off (baseline)", base), ("store on", cached)):
        print(f"{name:21s} p50 {pct(run['ms'], .5):.1f} ms, p95 {pct(run['ms'], .95):.1f} ms "
              f"(encode p50 {pct(run['encode_ms'], .5):.1f} ms, denoise p50 {pct(run['denoise_ms'], .5):.1f} ms); "
              f"encoded {run['encoded_tokens'] / run['prompt_tokens']:.1%} of {run['prompt_tokens'] / len(run['ms']):.0f} "
              f"prompt tokens per suggestion")
    print(f"speed-up: p50 {b50 / c50:.2f}x, p95 {b95 / c95:.2f}x; same candidates (same seed) in {same}/{len(base['ms'])} "
          f"suggestions ({len(strokes) - len(base['ms'])} keystrokes had no hole)")
    print(f"RSS: {rss_off:.0f} MiB with the store off, {rss_full:.0f} MiB with it full "
          f"({on.prompts.stats()['entries']} entries, {on.prompts.nbytes / 2**20:.0f} MiB): {rss_full / rss_off:.2f}x")
    (out / "prompt_cache.json").write_text(json.dumps({"off": {k: v for k, v in base.items() if k != "tokens"},
                                                        "on": {k: v for k, v in cached.items() if k != "tokens"},
                                                        "rss_mib": [rss_off, rss_full], "same": same}, indent=1))


if __name__ == "__main__":
    main()
