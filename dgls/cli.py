"""The `dgls` command.

    dgls complete FILE:LINE[:COL] [--json] [--n N] [--max-ms MS] [--mode auto|line|block] [--backend local|vllm]
    dgls infill --prefix TEXT [--suffix TEXT] [--model PATH] [--n N] [--json]
    dgls export-hf MODEL OUT [--dtype source|float32|bfloat16|float16] [--force]
    dgls status [--backend local|vllm] [--url URL] [--json]
    dgls tune PATH [--base MODEL] [--minutes M] [--name NAME]  (dgls tune --help: all options)

The editor-facing commands must start fast, so this module imports nothing heavy at the top:
torch and the model load only inside the commands that run the model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from .options import BACKENDS, DEFAULTS, DTYPES, MODEL_ENV, NO_MODEL_HINT, Options, from_config_file, from_settings, model_path

class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def cli_options(args: argparse.Namespace) -> Options:
    """The config file's options with the command line's flags over them (the same file and
    keys `dgls serve` reads, so the CLI and the editor run the same model)."""
    options, problems = from_config_file()
    for problem in problems:
        print(f"dgls: warning: {problem}", file=sys.stderr)
    flags = {"backend": getattr(args, "backend", None), "remoteUrl": getattr(args, "url", None),
             "remoteModel": getattr(args, "remote_model", None),
             "remoteTokenizer": getattr(args, "remote_tokenizer", None), "model": args.model,
             "device": getattr(args, "device", None), "dtype": getattr(args, "dtype", None)}
    options, problems = from_settings({k: v for k, v in flags.items() if v is not None}, options)
    if problems:
        raise UsageError(problems[0].replace("setting ", "flag for ", 1))
    return options


def chosen_model(options: Options) -> str:
    model = model_path(options)
    if model is None:
        raise UsageError(f"no model: {NO_MODEL_HINT}")
    return model


def progress_bar(label: str):
    """A load-progress callback drawing a bar on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None

    def draw(done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return draw


def read_text_arg(value: str | None, file: str | None, what: str) -> str:
    from .files import SourceError, read_source

    if file is None:
        return value or ""
    try:
        return read_source(file, DEFAULTS.max_file_bytes)  # the same size, binary and UTF-8 checks
    except SourceError as e:
        raise UsageError(f"cannot read {what} file: {e}") from None


def cmd_infill(args: argparse.Namespace) -> int:
    from dgls.model.api import InfillRequest
    from dgls.model.engine import EngineError  # heavy: torch

    prefix = read_text_arg(args.prefix, args.prefix_file, "prefix")
    suffix = read_text_arg(args.suffix, args.suffix_file, "suffix")
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    engine = load_engine(cli_options(args))
    try:
        result = engine.infill(InfillRequest(prefix, suffix, language=args.language), n=args.n,
                               canvas_length=args.canvas, max_steps=args.max_steps, seed=args.seed)
    except EngineError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps({
            "candidates": [
                {"text": c.text, "steps": c.steps, "confidence": round(c.confidence, 4), "ended": c.ended,
                 "accepted_per_step": c.accepted_per_step} for c in result.candidates],
            "prompt_tokens": result.prompt_tokens, "canvas_length": result.canvas_length,
            "encode_ms": round(result.encode_ms, 2), "denoise_ms": round(result.denoise_ms, 2),
            "stop_reason": result.stop_reason, "model": str(engine.loaded.path),
        }, indent=2))
    else:
        print(result.candidates[0].text)
    return 0 if any(c.text.strip() for c in result.candidates) else 1


def cmd_export_hf(args: argparse.Namespace) -> int:
    from dgls.model.export_hf import ExportError, export  # heavy: torch
    from dgls.model.paths import CheckpointError

    model = args.model
    if model == "dgls-tiny" and not Path(model).exists():
        from dgls.model import weights_dir

        model = weights_dir() / "dgls-tiny"
        if not (model / "config.json").exists():
            raise UsageError("dgls-tiny is not shipped yet; give a checkpoint directory")
    try:
        done = export(model, args.out, dtype=args.dtype, force=args.force)
    except (CheckpointError, ExportError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from None
    for warning in done.warnings:
        print(f"dgls: warning: {warning}", file=sys.stderr)
    print(done.path)
    return 0


def tcp_address(arg: str) -> tuple[str, int]:
    """[HOST:]PORT -> (host, port); the host is loopback unless one is named."""
    host, _, port = arg.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--tcp expects [HOST:]PORT, got {arg!r}")
    return host or "127.0.0.1", int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import main as serve

    serve(tcp=None if args.tcp is None else tcp_address(args.tcp))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from dgls.model.training.tune import main as tune  # heavy: torch and the training code

    return tune(args.tune_args)


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import main as worker

    return worker(args.worker_args)


def parse_location(spec: str) -> tuple[str, int, int | None]:
    """FILE:LINE[:COL], 1-based; no column means the end of the line."""
    m = re.fullmatch(r"(.+?):(\d+)(?::(\d+))?", spec)
    if not m:
        raise UsageError(f"expected FILE:LINE[:COL], got {spec!r}")
    line, col = int(m.group(2)), m.group(3)
    if line < 1 or (col is not None and int(col) < 1):
        raise UsageError(f"{spec}: lines and columns count from 1")
    return m.group(1), line, None if col is None else int(col)


def cursor_offset(text: str, path: str, line: int, col: int | None) -> int:
    from .text import line_starts, split_lines

    lines = split_lines(text)
    if line > len(lines):
        raise UsageError(f"{path} has {len(lines)} lines; line {line} is out of range")
    width = len(lines[line - 1])
    if col is None:
        col = width + 1
    if col > width + 1:
        raise UsageError(f"{path}:{line} has {width} characters; column {col} is out of range")
    return line_starts(text)[line - 1] + col - 1


def cmd_complete(args: argparse.Namespace) -> int:
    from .complete import complete
    from .files import SourceError, read_source
    from .hole import NONE, Document, classify
    from .languages import UnsupportedLanguage, for_path
    from .documents import UTF32, from_offset

    path, line, col = parse_location(args.location)
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    try:
        language = for_path(path)
        text = read_source(path, DEFAULTS.max_file_bytes)
    except (SourceError, UnsupportedLanguage) as e:
        raise UsageError(str(e)) from None
    offset = cursor_offset(text, path, line, col)
    hole = classify(Document(text, language), offset, args.mode)
    if hole.kind == NONE:  # decided before loading a model
        print(f"dgls: no suggestion: {hole.reason}", file=sys.stderr)
        if args.json:
            print(json.dumps({"file": path, "hole": {"kind": hole.kind, "reason": hole.reason}, "candidates": [],
                              "no_suggestion": hole.reason}, indent=2))
        return 1
    options = cli_options(args)
    import asyncio

    from .backends import BackendError
    from .model.api import EngineError

    async def run():
        backend = chosen_backend(options)
        try:
            return await complete(backend, text, offset, language, path=path, options=options, mode=args.mode,
                                  n=args.n, budget_ms=completion_budget(args), seed=args.seed)
        finally:
            await backend.close()

    try:
        result = asyncio.run(run())
    except (EngineError, BackendError) as e:
        raise UsageError(str(e)) from None

    def pos(offset: int) -> dict:
        ln, cl = from_offset(text, offset, UTF32)
        return {"line": ln + 1, "col": cl + 1}

    if args.json:  # each candidate as an editor applies it: its text over its range
        print(json.dumps({
            "file": path, "hole": {"kind": result.hole.kind, "reason": result.hole.reason},
            **({} if result.suggestions else {"no_suggestion": why_none(result.rejected)}),
            "candidates": [
                {"text": t, "range": {"start": pos(result.start), "end": pos(result.end)},
                 "confidence": round(s.confidence, 4), "steps": s.steps}
                for s, t in zip(result.suggestions, result.texts)],
            "rejected": [{"text": t, "why": why} for t, why in result.rejected],
            "prompt_tokens": result.prompt_tokens, "canvas_length": result.canvas_length,
            "stop_reason": result.stop_reason,
            "timing": {k: round(v, 2) for k, v in result.timing.items()},
        }, indent=2))
    elif result.suggestions:
        print(result.suggestions[0].text)
    else:
        print(f"dgls: no suggestion: {why_none(result.rejected)}", file=sys.stderr)
    return 0 if result.suggestions else 1


def completion_budget(args: argparse.Namespace) -> float | None:
    """--max-ms; else none for a seeded run, which must answer the same every time, so the
    clock may not cut its denoising (the model's step limit does); else the options' budget."""
    if args.max_ms is not None:
        return args.max_ms
    return math.inf if args.seed is not None else None


def why_none(rejected: list[tuple[str, str]]) -> str:
    """One line: how many candidates were rejected and why ("4 candidates rejected: 3 dropped
    by syntax, 1 empty")."""
    if not rejected:
        return "the model wrote nothing"
    reasons: dict[str, int] = {}
    for _, why in rejected:
        reasons[why] = reasons.get(why, 0) + 1
    detail = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f"{len(rejected)} candidate{'s' * (len(rejected) != 1)} rejected: {detail}"


def cmd_status(args: argparse.Namespace) -> int:
    """The configured backend's state: the local worker, or the remote server's /health and
    /v1/models."""
    import asyncio

    from .backends import BackendError, make_backend
    from .service import Status

    options = cli_options(args)
    status = Status()
    try:
        backend = make_backend(options)
    except BackendError as e:
        raise UsageError(str(e)) from None

    async def run():
        try:
            if backend.kind == "local":
                from .worker_client import is_running

                if not is_running(backend.spec):
                    status.state, status.message = "not running", "no worker runs; the first request starts one"
                    return
                backend.client.spawn = False
            await backend.refresh(status)
        finally:
            await backend.close()

    asyncio.run(run())
    status.model = status.model or backend.model
    status.backend = backend.describe()
    info = {k: v for k, v in status.as_dict().items() if k not in ("served", "cache_hits", "last_latency_ms")}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "backend":
                for k, v in value.items():
                    if v is not None and not (k == "model" and v == info.get("model")):  # said once
                        print(f"{k}: {', '.join(v) if isinstance(v, list) else v}")
            elif value is not None:
                print(f"{key}: {value}")
    return 0 if status.state in ("ready", "not running") else 1


def load_engine(options: Options):
    from dgls.model.engine import Engine  # heavy: torch
    from dgls.model.loader import CheckpointError

    try:
        return Engine.load(chosen_model(options), dtype=options.dtype, device=options.device,
                           progress=progress_bar("loading model"), prompt_cache_mib=options.prompt_cache_mib)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


def chosen_backend(options: Options):
    """The configured remote server; else the worker already serving this model (no load
    here); else the engine loaded in this process."""
    from .backends import BackendError, make_backend
    from .backends.engine import EngineBackend
    from .backends.local import LocalBackend
    from .worker_client import is_running

    if options.backend == "vllm":
        return make_backend(options)
    spec = LocalBackend.spec_for(options)
    if spec is not None and is_running(spec):
        try:
            return LocalBackend(options, spawn=False)
        except BackendError:  # its tokenizer unreadable: the in-process load says what is wrong
            pass
    return EngineBackend(load_engine(options))


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"checkpoint directory, a `dgls tune` model name, or local HF cache id (default: ${MODEL_ENV} or dgls-tiny)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", default=None, choices=DTYPES,
                   help=f"weight dtype (default: the config file's, else {DEFAULTS.dtype}: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", action="store_true", help="print all candidates with statistics as JSON")


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """Flags over the config file's backend settings (defaults: dgls/options.py)."""
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help=f"where the model runs (default: the config file's, else {DEFAULTS.backend})")
    p.add_argument("--url", default=None, help="the vLLM server's base URL (remoteUrl)")
    p.add_argument("--remote-model", default=None, help="the served model name (remoteModel)")
    p.add_argument("--remote-tokenizer", default=None, help="local tokenizer of the served model (remoteTokenizer)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dgls", description="Code infill with a text-diffusion MoE model.")
    sub = ap.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("complete", help="complete the code at FILE:LINE[:COL] (1-based; no column: end of line)")
    comp.add_argument("location", metavar="FILE:LINE[:COL]")
    comp.add_argument("--n", type=int, default=None,
                      help=f"parallel candidates (default {DEFAULTS.candidates_invoked})")
    comp.add_argument("--max-ms", type=float, default=None,
                      help=f"latency budget in ms (default {DEFAULTS.line_budget_ms} line, {DEFAULTS.block_budget_ms} block)")
    comp.add_argument("--mode", default="auto", choices=["auto", "line", "block"], help="hole kind (default: detect)")
    add_model_options(comp)
    add_backend_options(comp)
    comp.set_defaults(run=cmd_complete)
    infill = sub.add_parser("infill", help="fill the middle between a prefix and a suffix")
    infill.add_argument("--prefix", help="text before the hole")
    infill.add_argument("--prefix-file", help="read the prefix from this file")
    infill.add_argument("--suffix", help="text after the hole")
    infill.add_argument("--suffix-file", help="read the suffix from this file")
    infill.add_argument("--language", default="", help="language name shown to chat-style models")
    infill.add_argument("--n", type=int, default=1, help="parallel candidates (one shared prompt encoding)")
    infill.add_argument("--canvas", type=int, default=None, help="canvas length in tokens (default: the model's)")
    infill.add_argument("--max-steps", type=int, default=None, help="most denoising steps (default: the model's)")
    add_model_options(infill)
    infill.set_defaults(run=cmd_infill)
    exp = sub.add_parser("export-hf", help="write a model as a Hugging Face DiffusionGemma checkpoint (transformers, vLLM)")
    exp.add_argument("model", metavar="MODEL", help="checkpoint directory, local HF cache id, or dgls-tiny")
    exp.add_argument("out", metavar="OUT", help="directory to write (new or empty)")
    exp.add_argument("--dtype", default="source", choices=("source", *DTYPES[1:]),
                     help="weight dtype (default: the model's own)")
    exp.add_argument("--force", action="store_true", help="OUT may hold files; replace the checkpoint files in it")
    exp.set_defaults(run=cmd_export_hf)
    status = sub.add_parser("status", help="the configured backend's state (the worker, or the vLLM server's health)")
    status.add_argument("--model", help=f"checkpoint directory, a `dgls tune` model name, or local HF cache id (default: ${MODEL_ENV} or dgls-tiny)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_backend_options(status)
    status.set_defaults(run=cmd_status)
    serve = sub.add_parser(
        "serve", help="run the language server (stdio, or TCP on loopback)",
        description="The dgls language server: editors start it over stdio. It answers "
                    "textDocument/inlineCompletion and textDocument/completion from a model worker it starts.",
        epilog=f"Settings (model, budgets, windows, backend, ...) come from the editor "
               f"(initializationOptions, workspace/didChangeConfiguration) over the config file "
               f"~/.config/dgls/config.toml ($DGLS_CONFIG), same camelCase keys; README lists them. "
               f"The model: the `model` setting, else ${MODEL_ENV}, else the shipped dgls-tiny.")
    serve.add_argument("--tcp", metavar="[HOST:]PORT", help="listen on TCP instead of stdio (host defaults to 127.0.0.1)")
    serve.set_defaults(run=cmd_serve)
    tune = sub.add_parser("tune", help="adapt a model to the repository at PATH (LoRA, minutes on a CPU); "
                          "dgls tune --help lists its options", add_help=False)
    tune.add_argument("tune_args", nargs=argparse.REMAINDER)
    tune.set_defaults(run=cmd_tune)
    worker = sub.add_parser("worker", help="run a model worker (started automatically by servers)", add_help=False)
    worker.add_argument("worker_args", nargs=argparse.REMAINDER)
    worker.set_defaults(run=cmd_worker)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:  # its own parser reads every argument (argparse's REMAINDER drops a leading --help)
        return cmd_tune(argparse.Namespace(tune_args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"dgls: error: {e}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading --json output never parses two formats
            print(json.dumps({"error": str(e)}))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
