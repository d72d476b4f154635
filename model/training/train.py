"""Train a DiffusionGemma model (dgls-tiny) on a FIM corpus, in resumable chunks.

    python -m dgls.model.training.train --corpus CORPUS --tokenizer tokenizer.json --out RUN [--config dgls-tiny]

Each invocation trains until `--steps` are done or its `--max-minutes` (startup included)
run out, then writes RUN/checkpoint/ (model, AdamW state, step; safetensors files of at most
`--shard-mib` and a JSON file, no pickle) and exports RUN/model/ (config.json, sharded
safetensors, tokenizer.json, MODEL_CARD.md: what the engine loads). Running the same command
again resumes from the checkpoint; the result is the same as one uninterrupted run, because
every random draw of step s comes from generators seeded by (seed, s): the step is the whole
random and data state. Exit status: 0 when all steps are done, 75 when the time ran out
first (run the command again), 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import multiprocessing.pool
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import corpus, model_card, shards
from .. import loader
from ..config import (
    CANVAS, CONFIGS, CanvasLengths, ConfigError, ModelConfig, SamplerConfig, from_name, to_hf_config,
)
from ..dataclass_args import add_arguments, from_arguments, opt
from .fim import (
    Batch, FimConfig, FimDataset, FimError, FimExample, ObjectiveConfig, collate, diffusion_loss, inert_parameters,
)
from ..network import DiffusionGemma
from .progress import Progress, clock
from ..prompt import FIM_TOKENS
from ..tokenizer import Tokenizer
from .train_state import STATE, StateError, checkpoint_dir, export, load_checkpoint, save_checkpoint

EXIT_PAUSED = 75  # EX_TEMPFAIL: the chunk's time ran out; run again to continue


class TrainError(ValueError):
    """A run that cannot start or resume; the message is one line."""


@dataclass(frozen=True)
class TrainConfig:
    config: str = opt("dgls-tiny", "named model config (model/config.py)", choices=sorted(CONFIGS))
    steps: int = opt(30_000, "optimiser steps of the whole run")
    batch_size: int = opt(64, "examples per step (one hole kind's canvas length per batch)")
    lr: float = opt(2e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = opt(0.1, "the decay ends at lr * this")
    warmup_steps: int = opt(500, "linear warm-up")
    # wsd (warm-up, stable, decay) suits a campaign of unknown length: lr stays at its peak
    # until --decay-start, then falls linearly over --decay-steps; both may change between
    # chunks (a decayed model to evaluate, then back to the peak to go on).
    schedule: str = opt("wsd", "cosine over --steps, or wsd", choices=["cosine", "wsd"])
    decay_start: int = opt(0, "wsd: the step the decay starts at (0: never)")
    decay_steps: int = opt(500, "wsd: length of the decay")
    precision: str = opt("auto", "autocast dtype of the forward pass (weights and AdamW stay fp32); auto: bf16 on "
                         "CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), where it pays, else fp32",
                         choices=["auto", "bf16", "fp32"])
    heldout_batches: int = opt(8, "held-out batches scored at every checkpoint (0: none)")
    weight_decay: float = opt(0.1, "on matrices; norms and scales are not decayed")
    beta2: float = opt(0.95, "AdamW beta2")
    grad_clip: float = opt(1.0, "gradient norm clip")
    seed: int = opt(0, "initial weights, data and noise all derive from it")
    line_canvas: int = opt(CANVAS.line, "canvas of line holes (config.CANVAS)")
    block_canvas: int = opt(CANVAS.block, "canvas of block holes (config.CANVAS)")
    max_minutes: float = opt(9.0, "this invocation's wall-clock budget, startup and saving included")
    chunk_steps: int = opt(0, "also stop this invocation after this many steps (0: no limit)")
    checkpoint_minutes: float = opt(5.0, "also checkpoint this often within a chunk")
    log_every: int = opt(50, "steps per log line (RUN/train_log.jsonl and stderr)")
    device: str = opt("auto", "auto (cuda when present), cpu or cuda")
    threads: int = opt(0, "CPU intra-op threads (0: torch's default; 1 is faster for tiny configs on a busy machine)")
    data_workers: int = opt(0, "processes drawing batches ahead (0: this process); ~8 keeps a GPU fed")
    export_dtype: str = opt("bfloat16", "dtype of the exported weights", choices=["float32", "bfloat16"])
    shard_mib: float = opt(16.0, "largest file written (checkpoint and export)")

    def canvas(self) -> CanvasLengths:
        return CanvasLengths(line=self.line_canvas, block=self.block_canvas)


# Fields that may change between chunks of one run; every other field must stay the same.
ADJUSTABLE = {"max_minutes", "chunk_steps", "checkpoint_minutes", "log_every", "device", "threads", "data_workers",
              "steps", "decay_start", "decay_steps", "precision", "heldout_batches",  # a campaign may extend or decay
              "lr", "batch_size",  # a campaign re-tunes these as it goes (each step's data stays a function of the step)
              # windows may grow as a campaign goes on (short windows are cheap early on)
              "prefix_tokens", "suffix_tokens", "short_window_probability",
              # a campaign may change its objective's mix (recipes A/B'd mid-run from one state)
              "canvas_draws", "ar_weight", "ar_fraction"}


def derived_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big") >> 1


class BatchSource:
    """The batch of each step: a function of (seed, step) alone, so it does not matter which
    process draws it. With workers, the next `2 * workers` steps are drawn ahead in forked
    processes (they share the corpus with this one); collation stays here."""

    def __init__(self, data: FimDataset, batch_size: int, seed: int, workers: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.pool = None
        self.ahead: dict[int, multiprocessing.pool.AsyncResult] = {}
        if workers > 0:
            _SOURCES[id(self)] = self  # forked workers find it here (fork copies, never pickles, it)
            # The workers run only Python and the tokenizer (no torch, no CUDA), so forking a
            # process that holds a model is safe.
            # Workers take the default signal handlers back: the trainer's own (stop after
            # this step) would keep terminate() from ending them.
            self.pool = multiprocessing.get_context("fork").Pool(workers, initializer=_default_signals)
            self.lookahead = 2 * workers

    def examples(self, step: int) -> list[FimExample]:
        return self.data.draw(self.batch_size, random.Random(f"dgls-data:{self.seed}:{step}"))

    def __call__(self, step: int, last: int) -> Batch:
        if self.pool is None:
            examples = self.examples(step)
        else:
            for s in range(step, min(step + self.lookahead, last)):
                if s not in self.ahead:
                    self.ahead[s] = self.pool.apply_async(_draw, (id(self), s))
            examples = self.ahead.pop(step).get()
        return collate(examples, self.data.pad, self.data.pad_weight)

    def __enter__(self) -> BatchSource:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            _SOURCES.pop(id(self), None)


_SOURCES: dict[int, BatchSource] = {}


def _default_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _draw(source: int, step: int) -> list[FimExample]:
    return _SOURCES[source].examples(step)


def init_weights(model: DiffusionGemma, seed: int, std: float = 0.02) -> None:
    """Matrices ~ N(0, std); norms, scales and layer scalars at one (as the reference starts them)."""
    g = torch.Generator().manual_seed(derived_seed("init", seed))
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:
                p.fill_(1.0)


def make_optimizer(model: DiffusionGemma, cfg: TrainConfig, device: torch.device,
                   frozen: set[str] = frozenset()) -> torch.optim.AdamW:
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    trained = [(n, p) for n, p in sorted(model.named_parameters()) if n not in frozen]
    decay = [p for _, p in trained if p.dim() >= 2]
    other = [p for _, p in trained if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, cfg.beta2), fused=device.type == "cuda")


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision == "auto":
        return device.type == "cuda" or loader.cpu_has_native_bf16()
    return precision == "bf16"


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        if not cfg.decay_start or step < cfg.decay_start:
            return cfg.lr
        return cfg.lr - (cfg.lr - floor) * min(1.0, (step - cfg.decay_start) / max(1, cfg.decay_steps))
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the loop ------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise TrainError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda but CUDA is not available")
    return torch.device(name)


def check_tokenizer(tok: Tokenizer, cfg: ModelConfig, path: Path) -> None:
    if tok.vocab_size > cfg.vocab_size:
        raise TrainError(f"{path}: {tok.vocab_size} tokens but the model config has only {cfg.vocab_size}")
    expected = {"<pad>": cfg.pad_id, "<eos>": cfg.eos_ids[0], "<bos>": cfg.bos_id}
    wrong = [f"{t}={tok.token_id(t)} (need {i})" for t, i in expected.items() if tok.token_id(t) != i]
    wrong += [f"{t} missing" for t in FIM_TOKENS if tok.token_id(t) is None]
    if wrong:
        raise TrainError(f"{path}: not a dgls FIM tokenizer: {', '.join(wrong)} "
                         "(train one with python -m dgls.model.training.bpe)")


# What a setting meant in checkpoints written before it existed.
BEFORE_THE_SETTING = {"schedule": "cosine", "order": "psm", "ar_weight": 0.0, "canvas_draws": 1, "ar_fraction": 1.0}


def _compare(saved: dict, current: dict, what: str) -> None:
    for key, value in current.items():
        if key == "steps" and current.get("schedule") == "cosine" and saved.get(key) != value:
            raise TrainError(f"checkpoint was made with steps={saved.get(key)}, now {value}: under the cosine "
                             "schedule that moves the learning rate mid-run; keep --steps (wsd may extend)")
        if key in ADJUSTABLE or saved.get(key, BEFORE_THE_SETTING.get(key)) == value:
            continue
        raise TrainError(f"checkpoint was made with {what} {key}={saved.get(key)!r}, now {value!r}; "
                         "use the same settings to resume, or a new --out")


def train(corpus_dir: Path, tokenizer_path: Path, run: Path, cfg: TrainConfig, fim: FimConfig,
          obj: ObjectiveConfig, *, t_start: float | None = None, log=print,
          stop_requested: threading.Event | None = None) -> dict:
    """Train one chunk. Returns the checkpoint's metadata ("finished" says whether all steps are done)."""
    t_start = time.monotonic() if t_start is None else t_start
    stop_requested = stop_requested or threading.Event()
    deadline = t_start + cfg.max_minutes * 60
    device = resolve_device(cfg.device)
    if obj.canvas_draws < 1:
        raise TrainError(f"--canvas-draws must be at least 1, got {obj.canvas_draws}")
    if not 0 < obj.ar_fraction <= 1:
        raise TrainError(f"--ar-fraction must be in (0, 1], got {obj.ar_fraction}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    max_bytes = int(cfg.shard_mib * 2**20)
    model_cfg = dataclasses.replace(from_name(cfg.config), canvas_length=cfg.block_canvas)
    try:
        tok = Tokenizer.from_file(tokenizer_path)
    except Exception as e:  # the tokenizers library raises its own exception types
        raise TrainError(f"{tokenizer_path}: unreadable tokenizer ({str(e).splitlines()[0]})") from None
    check_tokenizer(tok, model_cfg, tokenizer_path)
    manifest = corpus.read_manifest(corpus_dir)
    records = corpus.read_split(corpus_dir, "train")
    data = FimDataset(records, tok, bos=model_cfg.bos_id, eos=model_cfg.eos_ids[0], pad=model_cfg.pad_id,
                      fim=fim, canvas=cfg.canvas(), pad_weight=obj.pad_weight)

    with torch.device(device):
        model = DiffusionGemma(model_cfg)
    init_weights(model, cfg.seed)
    model.train()
    optimizer = make_optimizer(model, cfg, device, inert_parameters(model_cfg, obj))
    identity = {
        "train": asdict(cfg), "fim": asdict(fim), "objective": asdict(obj), "model_config": to_hf_config(model_cfg),
        "tokenizer_sha256": file_digest(tokenizer_path), "corpus_files": manifest.get("files"),
    }
    # train_seconds is wall time in steps; cpu_seconds the process's CPU time in them (all
    # threads): what a campaign on a shared machine is measured in.
    meta = {"step": 0, "canvas_tokens": 0, "prompt_tokens": 0, "train_seconds": 0.0, "cpu_seconds": 0.0,
            "last_log": None, "last_heldout": None}
    found = checkpoint_dir(run)
    if found is not None:
        saved = json.loads((found / STATE).read_text())
        _compare(saved["train"], identity["train"], "training option")
        _compare(saved["fim"], identity["fim"], "FIM option")
        _compare(saved["objective"], identity["objective"], "objective option")
        for key in ("model_config", "tokenizer_sha256", "corpus_files"):
            if saved.get(key) != identity[key]:
                raise TrainError(f"{found}: {key.replace('_', ' ')} differs from this run's; use a new --out")
        meta.update({k: saved[k] for k in meta if k in saved})
        load_checkpoint(found, model, optimizer)
        log(f"resumed from {found} at step {meta['step']} ({time.monotonic() - t_start:.1f} s after start)")
    run.mkdir(parents=True, exist_ok=True)

    params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.config}: {params / 1e6:.2f} M parameters on {device}; {len(records)} training files; "
        f"steps {meta['step']}..{cfg.steps}; chunk budget {cfg.max_minutes} min")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg.precision, device))
    heldout = heldout_set(corpus_dir, tok, model_cfg, cfg, fim, obj)
    log(f"ready to train {time.monotonic() - t_start:.1f} s after start (corpus, model, checkpoint, held-out batches)")
    bar = Progress("train", cfg.steps, "steps", start=meta["step"])
    window: list[dict] = []
    save_cost = 1.0 + params * 12 / 50e6  # seconds; re-measured at every save
    last_save = time.monotonic()
    step_time = 0.0
    first_step = meta["step"]
    with (run / "train_log.jsonl").open("a") as log_file, \
            BatchSource(data, cfg.batch_size, cfg.seed, cfg.data_workers) as batches:

        def write_log(lr: float) -> None:  # a record of the steps since the last one
            meta["last_log"] = log_record(window, meta["step"], lr, time.monotonic() - t_start)
            log_file.write(json.dumps(meta["last_log"]) + "\n")
            log_file.flush()
            bar.write(log_line(meta["last_log"], cfg.steps))
            window.clear()

        while meta["step"] < cfg.steps:
            t0, cpu0 = time.monotonic(), time.process_time()
            if t0 + step_time + 2 * save_cost > deadline or stop_requested.is_set():
                break
            if cfg.chunk_steps and meta["step"] - first_step >= cfg.chunk_steps:
                break
            step = meta["step"]
            gen = torch.Generator().manual_seed(derived_seed("noise", cfg.seed, step))
            batch: Batch = batches(step, cfg.steps).to(device)
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                out = diffusion_loss(model, batch, obj, gen, SamplerConfig())
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()
            optimizer.step()
            meta["step"] = step + 1
            canvas_tokens = batch.target.numel() * obj.canvas_draws  # each draw is a canvas decoded
            meta["canvas_tokens"] += canvas_tokens
            meta["prompt_tokens"] += int(batch.prompt_mask.sum())
            step_time = time.monotonic() - t0
            meta["train_seconds"] += step_time
            meta["cpu_seconds"] += time.process_time() - cpu0
            window.append({"loss": out.loss.item(), "canvas_loss": out.canvas_loss, "ar_loss": out.ar_loss,
                           "middle_loss": out.middle_loss, "middle_acc": out.middle_accuracy,
                           "noised_acc": out.noised_accuracy,
                           "grad_norm": grad_norm, "seconds": step_time, "canvas": canvas_tokens,
                           "prompt": int(batch.prompt_mask.sum())})
            bar.update(extra=f"loss {window[-1]['loss']:.3f}")
            if meta["step"] % cfg.log_every == 0 or meta["step"] == cfg.steps:
                write_log(lr)
            if time.monotonic() - last_save > cfg.checkpoint_minutes * 60:
                t_save = time.monotonic()
                score_heldout(model, heldout, obj, autocast, meta, log_file)
                save_checkpoint(run, model, optimizer, {**identity, **meta}, max_bytes)
                save_cost = time.monotonic() - t_save
                last_save = time.monotonic()
        if window:  # a paused chunk's tail
            write_log(lr_at(meta["step"] - 1, cfg))
        bar.close()
        t_save = time.monotonic()
        # Not when told to stop (the save comes first), nor twice for one step.
        if not stop_requested.is_set() and (meta["last_heldout"] or {}).get("step") != meta["step"]:
            score_heldout(model, heldout, obj, autocast, meta, log_file)
    meta["finished"] = meta["step"] >= cfg.steps
    ckpt = save_checkpoint(run, model, optimizer, {**identity, **meta}, max_bytes)
    card = model_card.render(cfg, fim, obj, model_cfg, params, manifest, meta, device_name(device))
    model_dir = export(run, model, tokenizer_path, cfg.canvas(), cfg.export_dtype, max_bytes, card, fim.order)
    log(f"step {meta['step']}/{cfg.steps}: checkpoint {ckpt}, model {model_dir} "
        f"(saved in {time.monotonic() - t_save:.1f} s); chunk took {clock(time.monotonic() - t_start)}")
    return meta


# Examples per held-out batch: fixed, not --batch-size, which a campaign may change between
# chunks, so scores before and after such a change are of the same examples.
HELDOUT_BATCH = 16


def heldout_set(corpus_dir: Path, tok: Tokenizer, model_cfg: ModelConfig, cfg: TrainConfig, fim: FimConfig,
                obj: ObjectiveConfig) -> list[tuple[Batch, int]] | None:
    """Fixed batches from the held-out packages (drawn once, by their index alone, so every run
    on this corpus with these windows scores the same examples), each with its noise seed."""
    if not cfg.heldout_batches:
        return None
    records = corpus.read_split(corpus_dir, "heldout")
    if not records:
        return None
    data = FimDataset(records, tok, bos=model_cfg.bos_id, eos=model_cfg.eos_ids[0], pad=model_cfg.pad_id,
                      fim=fim, canvas=cfg.canvas(), pad_weight=obj.pad_weight)
    return [(data.batch(HELDOUT_BATCH, random.Random(f"dgls-heldout:{i}")), derived_seed("heldout-noise", i))
            for i in range(cfg.heldout_batches)]


def score_heldout(model: DiffusionGemma, heldout, obj: ObjectiveConfig, autocast, meta: dict, log_file) -> None:
    """Mean held-out losses (diffusion and next-token) into the log: the curve recipes are compared by."""
    if not heldout:
        return
    sums = {"canvas_loss": 0.0, "middle_loss": 0.0, "middle_acc": 0.0, "noised_acc": 0.0, "ar_loss": 0.0}
    # Always the next-token loss too, and one canvas per example: the same figure whatever the recipe.
    scoring = dataclasses.replace(obj, ar_weight=max(obj.ar_weight, 1.0), ar_fraction=1.0, canvas_draws=1)
    with torch.no_grad(), autocast:
        for batch, seed in heldout:
            out = diffusion_loss(model, batch.to(model.device), scoring, torch.Generator().manual_seed(seed))
            for key, value in (("canvas_loss", out.canvas_loss), ("middle_loss", out.middle_loss),
                               ("middle_acc", out.middle_accuracy), ("noised_acc", out.noised_accuracy),
                               ("ar_loss", out.ar_loss)):
                sums[key] += value
    record = {"step": meta["step"], "train_seconds": round(meta["train_seconds"], 1),
              "cpu_seconds": round(meta["cpu_seconds"], 1),
              **{f"heldout_{k}": round(v / len(heldout), 4) for k, v in sums.items()}}
    meta["last_heldout"] = record
    log_file.write(json.dumps(record) + "\n")
    log_file.flush()


def log_record(window: list[dict], step: int, lr: float, elapsed_s: float) -> dict:
    """Means over the steps since the last record, and the rates they ran at."""
    secs = sum(w["seconds"] for w in window)
    means = {k: sum(w[k] for w in window) / len(window)
             for k in ("loss", "canvas_loss", "ar_loss", "middle_loss", "middle_acc", "noised_acc", "grad_norm")}
    return {"step": step, "lr": lr, "elapsed_s": round(elapsed_s, 1), **means,
            "steps_per_s": len(window) / secs, "canvas_tokens_per_s": sum(w["canvas"] for w in window) / secs,
            "prompt_tokens_per_s": sum(w["prompt"] for w in window) / secs}


def log_line(r: dict, total: int) -> str:
    eta = (total - r["step"]) / r["steps_per_s"]
    return (f"step {r['step']}/{total}  loss {r['loss']:.4f}  canvas {r['canvas_loss']:.4f}  "
            f"next-token {r['ar_loss']:.4f}  middle {r['middle_loss']:.4f}  "
            f"acc {r['middle_acc']:.3f}  noised acc {r['noised_acc']:.3f}  lr {r['lr']:.2e}  |g| {r['grad_norm']:.2f}  {r['steps_per_s']:.2f} steps/s  "
            f"{r['canvas_tokens_per_s']:.0f} canvas tok/s  ETA {clock(eta)}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM or Ctrl-C ends the chunk after the current step, saved: a campaign on a machine
    that will be taken away loses at most one step. A second one interrupts at once. The
    previous handlers come back afterwards (tests run chunks in their own process)."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True, help="directory written by python -m dgls.model.training.corpus")
    ap.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json from python -m dgls.model.training.bpe")
    ap.add_argument("--out", type=Path, required=True, help="run directory (checkpoint/, model/, train_log.jsonl)")
    for cls in (TrainConfig, FimConfig, ObjectiveConfig):
        add_arguments(ap.add_argument_group(cls.__name__), cls)
    args = ap.parse_args(argv)
    try:
        cfg = from_arguments(TrainConfig, args)
        fim = from_arguments(FimConfig, args)
        obj = from_arguments(ObjectiveConfig, args)
        with stop_on_signals() as stop:
            meta = train(args.corpus, args.tokenizer, args.out, cfg, fim, obj, t_start=t_start,
                         log=lambda line: print(line, file=sys.stderr, flush=True), stop_requested=stop)
    except (TrainError, StateError, corpus.CorpusError, shards.ShardError, FimError, ConfigError) as e:
        print(f"dgls.model.training.train: {e}", file=sys.stderr)
        return 2
    if not meta["finished"]:
        print(f"paused at step {meta['step']} of {cfg.steps}; run the same command again to continue", file=sys.stderr)
        return EXIT_PAUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
