"""The `dgls` command.

    dgls infill --prefix TEXT [--suffix TEXT] [--model PATH] [--n N] [--json]

The editor-facing commands must start fast, so this module imports nothing heavy at the top:
torch and the model load only inside the commands that run the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

MODEL_ENV = "DGLS_MODEL"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def default_model() -> str:
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    from dgls.model import weights_dir  # light: no torch

    shipped = weights_dir() / "dgls-tiny"
    if (shipped / "config.json").exists():
        return str(shipped)
    raise UsageError(
        f"no model: the default dgls-tiny is not shipped yet; pass --model DIR or set {MODEL_ENV}")


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
    if file is None:
        return value or ""
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {what} file {file}: {e.strerror or e}") from None


def cmd_infill(args: argparse.Namespace) -> int:
    from dgls.model.engine import Engine, EngineError  # heavy: torch
    from dgls.model.loader import CheckpointError
    from dgls.model.prompt import InfillRequest

    prefix = read_text_arg(args.prefix, args.prefix_file, "prefix")
    suffix = read_text_arg(args.suffix, args.suffix_file, "suffix")
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    try:
        engine = Engine.load(args.model or default_model(), dtype=args.dtype, device=args.device,
                             progress=progress_bar("loading model"))
        result = engine.infill(InfillRequest(prefix, suffix, language=args.language), n=args.n,
                               canvas_length=args.canvas, max_steps=args.max_steps, seed=args.seed)
    except (CheckpointError, EngineError) as e:
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dgls", description="Code infill with a text-diffusion MoE model.")
    sub = ap.add_subparsers(dest="command", required=True)
    infill = sub.add_parser("infill", help="fill the middle between a prefix and a suffix")
    infill.add_argument("--prefix", help="text before the hole")
    infill.add_argument("--prefix-file", help="read the prefix from this file")
    infill.add_argument("--suffix", help="text after the hole")
    infill.add_argument("--suffix-file", help="read the suffix from this file")
    infill.add_argument("--language", default="", help="language name shown to chat-style models")
    infill.add_argument("--model", help=f"checkpoint directory or local HF cache id (default: ${MODEL_ENV} or dgls-tiny)")
    infill.add_argument("--n", type=int, default=1, help="parallel candidates (one shared prompt encoding)")
    infill.add_argument("--canvas", type=int, default=None, help="canvas length in tokens (default: the model's)")
    infill.add_argument("--max-steps", type=int, default=None, help="most denoising steps (default: the model's)")
    infill.add_argument("--seed", type=int, default=None)
    infill.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    infill.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    infill.add_argument("--json", action="store_true", help="print all candidates with statistics as JSON")
    infill.set_defaults(run=cmd_infill)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"dgls: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
