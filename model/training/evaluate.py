"""Evaluate a model on fill-in-the-middle cases, beside the longest-match baseline in the same run.

    python -m dgls.model.training.evaluate cases --corpus CORPUS --out cases.jsonl [--tokenizer T] [--n 200]
    python -m dgls.model.training.evaluate run --model DIR --cases cases.jsonl --baseline-corpus CORPUS [--report R.json]

`cases` draws holes (the training hole kinds, in equal shares) from the corpus's held-out
packages. `run` reads a JSONL of {"prefix", "suffix", "middle", "tests"?, "kind"?, "path"?,
"id"?} cases and reports, per system and for single- and multi-line holes: exact match
(after trailing whitespace), edit similarity (1 - Levenshtein distance / longer length),
pass@1 where a case has tests (prefix + completion + suffix + tests run in the sandbox,
sandbox.py), denoising steps per canvas and latency. Predictions are the engine's raw middle,
cut at its first line break for line holes (the one stop rule both systems share).
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import corpus
from ..config import CANVAS, CanvasLengths, ConfigError
from ..dataclass_args import add_arguments, from_arguments, opt
from .fim import (
    CANVAS_KIND,
    CHARS_PER_TOKEN,
    HOLE_KINDS,
    LINE,
    LINE_SUFFIX,
    FimConfig,
    char_windows,
    line_starts,
    pick_hole,
)
from .jsonl import parse_object
from .progress import Progress
from .sandbox import SandboxLimits, run_python


class CaseError(ValueError):
    """A cases file dgls cannot evaluate; the message is one line naming the line."""


@dataclass(frozen=True)
class CaseConfig:
    n: int = opt(200, "cases to build, in equal shares of the hole kinds")
    seed: int = opt(0, "which holes")
    prefix_chars: int = opt(FimConfig.prefix_tokens * CHARS_PER_TOKEN, "prefix kept in the case file")
    suffix_chars: int = opt(FimConfig.suffix_tokens * CHARS_PER_TOKEN, "suffix kept in the case file")


@dataclass(frozen=True)
class EvalConfig:
    max_steps: int = opt(0, "denoising steps cap (0: the checkpoint's generation_config)")
    seed: int = opt(0, "sampler seed")
    limit: int = opt(0, "evaluate only the first N cases (0: all)")
    device: str = opt("auto", "auto (cuda when present), cpu or cuda")
    prefix_tokens: int = opt(FimConfig.prefix_tokens, "prompt window budget, as in training")
    suffix_tokens: int = opt(FimConfig.suffix_tokens, "prompt window budget, as in training")
    baseline_max_lines: int = opt(16, "longest block the baseline writes")
    baseline_max_mib: float = opt(0.0, "index only this much of the train split, a seeded sample (0: all)")
    threads: int = opt(0, "CPU intra-op threads (0: torch's default)")


@dataclass
class Case:
    id: str
    prefix: str
    suffix: str
    middle: str
    kind: str  # one of fim.HOLE_KINDS
    path: str = ""
    tests: str | None = None

    @property
    def canvas_kind(self) -> str:
        return CANVAS_KIND[self.kind]

    @property
    def lines(self) -> str:
        return "multi-line" if "\n" in self.middle.strip("\n") else "single-line"


# --- cases ---------------------------------------------------------------------------------


def infer_kind(prefix: str) -> str:
    """The engine's rule: a cursor with code before it on its line finishes that line."""
    return LINE_SUFFIX if prefix.split("\n")[-1].strip() else LINE


def load_cases(path: Path) -> list[Case]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CaseError(f"{path}: unreadable ({e})") from None
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        raw = parse_object(line, where, CaseError, "a case")
        for key in ("prefix", "suffix", "middle"):
            if not isinstance(raw.get(key), str):
                raise CaseError(f"{where}: {key!r} must be a string")
        for key in ("tests", "kind", "path", "id"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise CaseError(f"{where}: {key!r} must be a string when present")
        kind = raw.get("kind") or infer_kind(raw["prefix"])
        if kind not in HOLE_KINDS:
            raise CaseError(f"{where}: unknown kind {kind!r}; choose {', '.join(HOLE_KINDS)}")
        cases.append(Case(raw.get("id") or f"line-{n}", raw["prefix"], raw["suffix"], raw["middle"], kind,
                          raw.get("path") or "", raw.get("tests") or None))
    if not cases:
        raise CaseError(f"{path}: no cases")
    return cases


def build_cases(corpus_dir: Path, cfg: CaseConfig, fits: Callable[[str, str], bool]) -> list[dict]:
    """Holes from the held-out split; `fits(middle, canvas_kind)` says whether a middle fits its canvas."""
    return cases_from_records(corpus.read_split(corpus_dir, "heldout"), cfg, fits)


def cases_from_records(records: list[dict], cfg: CaseConfig, fits: Callable[[str, str], bool],
                       kinds: tuple[str, ...] = HOLE_KINDS) -> list[dict]:
    """Holes of `kinds` (in equal shares) from corpus records (`dgls tune` passes a repository's held-out files)."""
    if not records:
        return []
    rng = random.Random(f"dgls-cases:{cfg.seed}")
    cum, total = [], 0
    for rec in records:
        total += len(rec["text"])
        cum.append(total)
    starts: dict[int, object] = {}
    seen: set[tuple] = set()
    cases = []
    for n in range(cfg.n):
        kind = kinds[n % len(kinds)]
        for _ in range(200):
            i = bisect.bisect_right(cum, rng.randrange(total))
            text = records[i]["text"]
            starts.setdefault(i, line_starts(text))
            hole = pick_hole(text, starts[i], records[i]["functions"], kind, rng, FimConfig.max_block_lines)
            if hole is None or (i, hole.start, hole.end) in seen:
                continue
            middle = text[hole.start:hole.end]
            if not fits(middle, CANVAS_KIND[kind]):
                continue
            seen.add((i, hole.start, hole.end))
            prefix, suffix = char_windows(text, hole, cfg.prefix_chars, cfg.suffix_chars)
            rec = records[i]
            cases.append({"id": f"heldout-{n:04d}", "kind": kind, "path": rec["path"], "package": rec["package"],
                          "license": rec["license"], "prefix": prefix, "suffix": suffix, "middle": middle})
            break
    return cases


# --- metrics -------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    while a and b and a[0] == b[0]:
        a, b = a[1:], b[1:]
    while a and b and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, reference: str) -> float:
    longest = max(len(prediction), len(reference))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, reference) / longest


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.rstrip() == reference.rstrip()


# --- systems -------------------------------------------------------------------------------


@dataclass
class Prediction:
    text: str
    ms: float
    steps: int | None = None  # denoising steps (the model), None for the baseline
    error: str | None = None  # why the system gave no answer


def stop_rule(text: str, case: Case) -> str:
    return text.split("\n", 1)[0] if case.canvas_kind == "line" else text


class ModelSystem:
    def __init__(self, model_dir: Path, cfg: EvalConfig):
        import torch

        from ..engine import Engine  # torch: imported only when a model is evaluated
        from ..loader import CheckpointError

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.engine = Engine.load(model_dir, device=None if cfg.device == "auto" else cfg.device)
        # The canvas lengths the model was trained with (train.py writes them), else the defaults.
        gen_path = Path(self.engine.loaded.path) / "generation_config.json"
        trained = json.loads(gen_path.read_text()).get("dgls_canvas_lengths") if gen_path.exists() else None
        try:
            self.canvas = CanvasLengths(**trained) if trained else CANVAS
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{gen_path}: bad dgls_canvas_lengths {trained!r} ({e})") from None
        self.cfg = cfg
        self.device = str(self.engine.model.device)

    def __call__(self, case: Case) -> Prediction:
        from ..api import InfillRequest
        from ..engine import EngineError
        from .fim import fit_windows

        prefix, suffix = fit_windows(self.engine.tokenizer, case.prefix, case.suffix,
                                     self.cfg.prefix_tokens, self.cfg.suffix_tokens)
        t0 = time.perf_counter()
        try:  # no latency budget: the sampler runs until it converges or hits max_steps
            result = self.engine.infill(InfillRequest(prefix, suffix, "python", case.path), n=1,
                                        canvas_length=self.canvas.for_kind(case.canvas_kind),
                                        max_steps=self.cfg.max_steps or None, seed=self.cfg.seed)
        except EngineError as e:
            return Prediction("", (time.perf_counter() - t0) * 1e3, None, str(e))
        ms = (time.perf_counter() - t0) * 1e3
        best = result.candidates[0]
        return Prediction(stop_rule(best.text, case), ms, best.steps)


class BaselineSystem:
    def __init__(self, corpus_dir: Path | None, cfg: EvalConfig, records: list[dict] | None = None):
        """Indexes the corpus's train split, or `records` when given."""
        from .baseline import LongestMatchCompleter

        t0 = time.perf_counter()
        records = corpus.read_split(corpus_dir, "train") if records is None else list(records)
        if cfg.baseline_max_mib:
            random.Random(f"dgls-baseline:{cfg.seed}").shuffle(records)
            budget, kept = cfg.baseline_max_mib * 2**20, []
            for rec in records:
                if budget <= 0:
                    break
                kept.append(rec)
                budget -= len(rec["text"])
            records = kept
        self.completer = LongestMatchCompleter(rec["text"] for rec in records)
        self.build_s = time.perf_counter() - t0
        self.cfg = cfg

    def __call__(self, case: Case) -> Prediction:
        t0 = time.perf_counter()
        text = self.completer.complete(case.prefix, case.suffix, multiline=case.canvas_kind == "block",
                                       max_lines=self.cfg.baseline_max_lines)
        return Prediction(stop_rule(text, case), (time.perf_counter() - t0) * 1e3)


def score(case: Case, pred: Prediction, limits: SandboxLimits) -> dict:
    row = {"id": case.id, "kind": case.kind, "lines": case.lines, "prediction": pred.text,
           "exact": exact_match(pred.text, case.middle), "edit_similarity": edit_similarity(pred.text, case.middle),
           "ms": pred.ms, "steps": pred.steps, "passed": None, "error": pred.error}
    if case.tests:
        outcome = run_python(case.prefix + pred.text + case.suffix + "\n\n" + case.tests + "\n", limits)
        row.update(passed=outcome.status == "passed", test_status=outcome.status, test_output=outcome.output)
    return row


def summarize(rows: list[dict]) -> dict:
    tested = [r for r in rows if r["passed"] is not None]
    steps = [r["steps"] for r in rows if r["steps"] is not None]
    ms = sorted(r["ms"] for r in rows)
    return {
        "n": len(rows),
        "exact_match": sum(r["exact"] for r in rows) / len(rows),
        "edit_similarity": statistics.fmean(r["edit_similarity"] for r in rows),
        "pass_at_1": sum(r["passed"] for r in tested) / len(tested) if tested else None,
        "with_tests": len(tested),
        "mean_steps": statistics.fmean(steps) if steps else None,
        "p50_ms": ms[len(ms) // 2],
        "p90_ms": ms[min(len(ms) - 1, int(len(ms) * 0.9))],
    }


def table(summary: dict[str, dict[str, dict]]) -> str:
    lines = [f"{'system':<10}{'holes':<13}{'n':>5}{'exact':>8}{'edit sim':>10}{'pass@1':>12}{'steps':>7}"
             f"{'p50 ms':>9}{'p90 ms':>9}"]
    for system, groups in summary.items():
        for group, s in groups.items():
            passed = f"{s['pass_at_1']:.1%} of {s['with_tests']}" if s["pass_at_1"] is not None else "-"
            steps = f"{s['mean_steps']:.1f}" if s["mean_steps"] is not None else "-"
            lines.append(f"{system:<10}{group:<13}{s['n']:>5}{s['exact_match']:>8.1%}{s['edit_similarity']:>10.3f}"
                         f"{passed:>12}{steps:>7}{s['p50_ms']:>9.1f}{s['p90_ms']:>9.1f}")
    return "\n".join(lines)


def evaluate(cases: list[Case], systems: dict[str, Callable[[Case], Prediction]], limits: SandboxLimits) -> dict:
    rows: dict[str, list[dict]] = {name: [] for name in systems}
    bar = Progress("evaluate", len(cases), "cases")
    for case in cases:
        for name, system in systems.items():
            rows[name].append(score(case, system(case), limits))
        bar.update()
    bar.close()
    summary = {}
    for name, rs in rows.items():
        groups = {"all": rs}
        for kind in ("single-line", "multi-line"):
            chosen = [r for r in rs if r["lines"] == kind]
            if chosen:
                groups[kind] = chosen
        summary[name] = {g: summarize(v) for g, v in groups.items()}
    return {"summary": summary, "rows": rows}


# --- command line --------------------------------------------------------------------------


def _cases_command(args) -> int:
    cfg = from_arguments(CaseConfig, args)
    if args.tokenizer is not None:
        from ..tokenizer import Tokenizer

        try:
            tok = Tokenizer.from_file(args.tokenizer)
        except Exception as e:  # the tokenizers library raises its own exception types
            raise CaseError(f"{args.tokenizer}: unreadable tokenizer ({str(e).splitlines()[0]})") from None

        def fits(middle: str, kind: str) -> bool:
            return len(tok.encode(middle)) + 1 <= CANVAS.for_kind(kind)
    else:
        def fits(middle: str, kind: str) -> bool:  # ~3 characters a token, without a tokenizer
            return len(middle) <= 3 * (CANVAS.for_kind(kind) - 1)
    cases = build_cases(args.corpus, cfg, fits)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    single = sum("\n" not in c["middle"].strip("\n") for c in cases)
    print(f"{args.out}: {len(cases)} cases ({single} single-line, {len(cases) - single} multi-line)")
    return 0


def _run_command(args) -> int:
    cfg = from_arguments(EvalConfig, args)
    limits = from_arguments(SandboxLimits, args)
    cases = load_cases(args.cases)
    if cfg.limit:
        cases = cases[:cfg.limit]
    systems: dict[str, Callable[[Case], Prediction]] = {}
    model = ModelSystem(args.model, cfg)
    systems["dgls"] = model
    header = [f"model {args.model} on {model.device}; {len(cases)} cases from {args.cases}; "
              f"canvas line {model.canvas.line} / block {model.canvas.block}"]
    if args.baseline_corpus is not None:
        baseline = BaselineSystem(args.baseline_corpus, cfg)
        systems["baseline"] = baseline
        header.append(f"baseline: longest-match n-gram over {args.baseline_corpus} (train split, "
                      f"{baseline.completer.tokens_indexed:,} tokens, indexed in {baseline.build_s:.1f} s)")
    else:
        header.append("baseline: none (pass --baseline-corpus to report one in the same run)")
    model(cases[0])  # warm-up: first-call allocations would otherwise land in the latency figures
    report = evaluate(cases, systems, limits)
    print("\n".join(header))
    print(table(report["summary"]))
    if args.report is not None:
        args.report.write_text(json.dumps({"header": header, "config": asdict(cfg), **report}, indent=1) + "\n")
        print(f"per-case results: {args.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cases", help="build cases from a corpus's held-out packages")
    c.add_argument("--corpus", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--tokenizer", type=Path, help="keep only middles that fit the canvas in this tokenizer's tokens")
    add_arguments(c, CaseConfig)
    r = sub.add_parser("run", help="evaluate a model (and the baseline) on a cases file")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--cases", type=Path, required=True)
    r.add_argument("--baseline-corpus", type=Path, help="corpus whose train split the baseline indexes")
    r.add_argument("--report", type=Path, help="JSON file for the summary and per-case results")
    add_arguments(r, EvalConfig)
    add_arguments(r, SandboxLimits)
    args = ap.parse_args(argv)
    errors: tuple[type[Exception], ...] = (CaseError, corpus.CorpusError)
    if args.command == "run":
        from ..loader import CheckpointError  # torch: only the run command loads a model

        errors += (CheckpointError,)
    try:
        return _cases_command(args) if args.command == "cases" else _run_command(args)
    except errors as e:
        print(f"dgls.model.training.evaluate: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
