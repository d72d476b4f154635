"""Keystroke replay: type real files through the real server and measure what a user sees.

    python bench/bench_keystrokes.py [--files dgls/hole.py dgls/cache.py] [--lines 12] [--gap-ms 90]

For each chosen line of each file, the line is deleted and re-typed one character at a time
over the real protocol (didChange, then an automatic textDocument/inlineCompletion, as
VS Code sends them), `--gap-ms` apart like a fast typist. Reported: latency from request to
suggestion (p50/p95, over requests that returned one), cache-hit rate, suggestions shown per
100 keystrokes; and, as the baseline measured in the same run, the same engine called
directly in-process (`dgls.complete.complete`). The baseline
re-asks exactly the requests the server answered (same text, position and options), so the
ratio is what the protocol, the scheduler (debounce included) and the worker hop cost.

`--model fixed` (default) is the e2e tests' fixed-answer model (real weights trained in
seconds on CPU, see tests/support/fixed_model.py): it converges in 2-3 denoising steps, so
the figures isolate the plumbing rather than a large model's compute. `--model tiny-random`
is a model of dgls-tiny's dimensions with random weights, in suffix-prefix-middle order, that
runs `--steps` denoising steps per suggestion, at the default windows, canvases and budgets
(debounce 50 ms): what a user of the CPU default waits for; the worker's prompt store counts
are reported with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsprotocol import types as t  # noqa: E402
from pytest_lsp import ClientServerConfig  # noqa: E402

from tests.e2e.conftest import SMALL, vscode, worker_pids  # noqa: E402
from tests.support.fixed_model import train_fixed_model  # noqa: E402


async def timed(request) -> tuple[object, float]:
    sent = time.perf_counter()
    result = await request
    return result, (time.perf_counter() - sent) * 1e3


def request(uri: str, line: int, character: int, kind) -> t.InlineCompletionParams:
    return t.InlineCompletionParams(text_document=t.TextDocumentIdentifier(uri=uri),
                                    position=t.Position(line=line, character=character),
                                    context=t.InlineCompletionContext(trigger_kind=kind))


def edit(uri: str, version: int, line: int, start: int, end: int, text: str) -> t.DidChangeTextDocumentParams:
    return t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(start=t.Position(line=line, character=start), end=t.Position(line=line, character=end)),
            text=text)])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def typing_sites(path: Path, count: int) -> list[tuple[int, str]]:
    """Up to `count` non-blank lines spread over the file: (line index, its text)."""
    lines = path.read_text().split("\n")
    candidates = [(i, line) for i, line in enumerate(lines) if 8 <= len(line.strip()) <= 70]
    step = max(1, len(candidates) // count)
    return candidates[::step][:count]


async def replay(model: Path, files: list[Path], sites: int, gap_s: float, runtime: Path, settings: dict,
                 every_reply: bool = False) -> dict:
    """`every_reply`: time every request's reply, items or none (a random model's suggestions
    are all rejected by post-processing, so none would be shown)."""
    env = {**os.environ, "DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(model)}
    client = await ClientServerConfig([sys.executable, "-m", "dgls.cli", "serve"], server_env=env).start()
    await client.initialize_session(t.InitializeParams(capabilities=vscode(), initialization_options=settings))
    latencies, keystrokes, shown, samples = [], 0, 0, []
    try:
        for file in files:
            uri = file.resolve().as_uri()
            text = file.read_text()
            lines = text.split("\n")
            version = 1
            client.text_document_did_open(t.DidOpenTextDocumentParams(
                text_document=t.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))
            # Warm the worker (first use loads the model) outside the measurement.
            await client.text_document_inline_completion_async(request(uri, 0, 0, t.InlineCompletionTriggerKind.Invoked))
            for line_no, line in typing_sites(file, sites):
                indent = len(line) - len(line.lstrip())
                version += 1  # delete the line's code, keep its indentation
                client.text_document_did_change(edit(uri, version, line_no, indent, len(line), ""))
                pending, states = [], []
                line_start = sum(len(x) + 1 for x in lines[:line_no])
                for col in range(indent, len(line)):
                    version += 1
                    client.text_document_did_change(edit(uri, version, line_no, col, col, line[col]))
                    keystrokes += 1
                    sent = client.text_document_inline_completion_async(
                        request(uri, line_no, col + 1, t.InlineCompletionTriggerKind.Automatic))
                    pending.append(asyncio.ensure_future(timed(sent)))
                    typed = text[:line_start + col + 1] + text[line_start + len(line):]
                    states.append((typed, line_start + col + 1))
                    await asyncio.sleep(gap_s)
                for (result, ms), state in zip(await asyncio.gather(*pending), states):
                    if result is not None and (result.items or every_reply):
                        shown += 1
                        latencies.append(ms)
                        samples.append(state)
                # Re-typed to the end, the line is as it was: later sites see the original file.
            status = await client.workspace_execute_command_async(t.ExecuteCommandParams(command="dgls.status"))
    finally:
        await client.shutdown_session()
        for pid in worker_pids(runtime):
            os.kill(pid, 15)
    return {"keystrokes": keystrokes, "shown": shown, "cache_hits": status["cache_hits"],
            "served": status["served"], "latencies_ms": latencies, "samples": samples,
            "prompt_cache": status.get("prompt_cache")}


def baseline(model: Path, samples: list[tuple[str, int]], settings: dict) -> list[float]:
    """The requests the server answered, asked again of the same engine directly: same
    document state, same position, same options; no protocol, no worker, no debounce."""
    from dgls.backends.engine import EngineBackend
    from dgls.complete import complete
    from dgls.languages import by_name
    from dgls.model.engine import Engine
    from dgls.options import from_settings

    engine = EngineBackend(Engine.load(model, device="cpu"))
    options, _ = from_settings(settings)
    out = []
    for text, offset in samples:
        t0 = time.perf_counter()
        asyncio.run(complete(engine, text, offset, by_name("python"), options=options, n=options.candidates_automatic))
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", type=Path, default=[ROOT / "dgls" / "hole.py", ROOT / "dgls" / "cache.py"])
    ap.add_argument("--lines", type=int, default=8, help="lines typed per file")
    ap.add_argument("--gap-ms", type=float, default=90.0, help="time between keystrokes")
    ap.add_argument("--model", choices=["fixed", "tiny-random"], default="fixed")
    ap.add_argument("--steps", type=int, default=8, help="tiny-random: denoising steps per suggestion "
                    "(use a --gap-ms longer than a suggestion takes, so that every request is answered)")
    args = ap.parse_args()

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "fixed":
        model, settings = out / "fixed-model", SMALL
        if not (model / "ANSWER").exists():
            train_fixed_model(model)
    else:
        from dgls.model import random_checkpoint

        model, settings = out / f"tiny-random-spm-{args.steps}", {"debounceMs": 50, "workerIdleS": 60}
        if not (model / "config.json").exists():
            random_checkpoint.write(model, "dgls-tiny", fim_order="spm", max_steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "rt"
        runtime.mkdir(mode=0o700)
        served = asyncio.run(replay(model, args.files, args.lines, args.gap_ms / 1e3, runtime, settings,
                                    every_reply=args.model == "tiny-random"))
    direct = baseline(model, served.pop("samples"), settings)

    lat = served["latencies_ms"]
    p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
    b50, b95 = pct(direct, 0.5), pct(direct, 0.95)
    requests = served["keystrokes"]
    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores); files: {', '.join(f.name for f in args.files)}; "
          f"{requests} keystrokes, {args.gap_ms:.0f} ms apart")
    debounce = settings["debounceMs"]
    print(f"model: {args.model}" + (f" (dgls-tiny dimensions, random weights, SPM, {args.steps} steps)"
                                    if args.model == "tiny-random" else ""))
    print(f"server:   p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(lat)} suggestions shown "
          f"(request sent -> items received; includes the {debounce} ms debounce)")
    print(f"direct:   p50 {b50:.1f} ms, p95 {b95:.1f} ms: the same {len(direct)} requests, engine in-process (baseline, same run)")
    print(f"ratio server/direct: p50 {p50 / b50:.2f}x, p95 {p95 / b95:.2f}x; "
          f"overhead at p50: {p50 - b50:.1f} ms of which {debounce} ms is the debounce")
    print(f"suggestions shown per 100 keystrokes: {100 * served['shown'] / requests:.1f}; "
          f"model runs: {served['served']}; cache hits: {served['cache_hits']} "
          f"({100 * served['cache_hits'] / max(1, served['cache_hits'] + served['served']):.0f}% of answered requests)")
    if served["prompt_cache"]:
        store = served["prompt_cache"]
        print(f"worker prompt store: {store['entries']} entries, {store['mib']} MiB; "
              f"{1 - store['reused_share']:.1%} of prompt tokens encoded, {store['reused_share']:.1%} reused")
    (out / f"keystrokes-{args.model}.json").write_text(json.dumps({"served": served, "direct_ms": direct}, indent=1))


if __name__ == "__main__":
    main()
