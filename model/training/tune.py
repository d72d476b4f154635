"""`dgls tune PATH`: adapt a base model to one repository with low-rank adapters, in minutes.

    dgls tune PATH [--base MODEL] [--minutes M] [--name NAME] [--steps N] [--rank R] [--targets T]

Collects PATH's source files (repo_files.py), holds out a fixed share of them, trains LoRA
adapters on the base's attention projections (or attention and dense MLP: --targets) with
the trainer's own FIM examples, batches and diffusion objective (fim.py, train.py), saves
them as a named model under $XDG_DATA_HOME/dgls/models/NAME (adapters.py: adapter weights,
the base's path and digest, a copy of its tokenizer), then compares base, tuned model and
the longest-match baseline on single-line holes of the held-out files (evaluate.py's cases
and metrics), printed and written to NAME/eval.json.

Why attention: its projections are dense 2-D matrices every token passes through, in the
encoder and the decoder alike (they share them), so a rank-r adapter is r * (in + out)
numbers per matrix and the merged model costs nothing more to run. Expert matrices are 3-D
(one per expert) and see only the tokens routed to them: an adapter each would multiply the
size by the expert count and train each on a fraction of the tokens.

Running the same command again resumes (adapters, AdamW state and the step count; each
step's batch and noise are functions of (seed, step), as in the trainer). --minutes is this
invocation's training budget (loading included; the evaluation afterwards is extra). Ctrl-C
saves after the current step and exits (status 130). Exit status 2: nothing to learn from,
an unusable base, or settings that do not fit the saved adapters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from .. import adapters, loader
from ..config import CANVAS, CanvasLengths, SamplerConfig
from ..dataclass_args import add_arguments, from_arguments, opt
from ..paths import TUNED_NAME, CheckpointError, models_dir, resolve
from . import evaluate as ev
from .fim import LINE, LINE_SUFFIX, FimConfig, FimDataset, FimError, ObjectiveConfig, diffusion_loss
from .progress import clock
from .repo_files import RepoError, collect
from .train import BatchSource, derived_seed, stop_on_signals
from .train_state import swap_in

STATE = "tune.json"
OPTIMIZER = "optimizer.safetensors"
EVAL = "eval.json"
EXIT_INTERRUPTED = 130
# Settings the saved adapters and their data order depend on: a resume must keep them.
FIXED = ("rank", "alpha", "targets", "seed", "heldout_percent")


class TuneError(ValueError):
    """A tuning run that cannot start or resume; the message is one line."""


@dataclass(frozen=True)
class TuneConfig:
    minutes: float = opt(10.0, "this invocation's training budget, loading included (the evaluation is extra)")
    steps: int = opt(0, "stop once the run has done this many steps in all (0: only the time limits)")
    rank: int = opt(8, "adapter rank r")
    alpha: float = opt(16.0, "adapter scale: the update is alpha / r * B @ A")
    targets: str = opt("attention", "adapted matrices", choices=sorted(adapters.TARGETS))
    lr: float = opt(1e-3, "AdamW learning rate of the adapters")
    warmup_steps: int = opt(20, "linear warm-up")
    batch_size: int = opt(8, "examples per step")
    # The encoder's pass over the prompt is most of a step's cost: at the server's windows
    # (1024/256) a dgls-tiny-shaped step took 3x as long as at 256/64 (1 CPU thread: 0.10 vs
    # 0.30 steps/s), and 256/64 is what the dgls-tiny campaign trains the base at.
    prefix_tokens: int = opt(256, "training prompt window before the hole, in tokens")
    suffix_tokens: int = opt(64, "training prompt window after the hole, in tokens")
    seed: int = opt(0, "adapter init, data and noise derive from it")
    heldout_percent: float = opt(10.0, "share of files (by a hash of their path) kept for evaluation")
    eval_cases: int = opt(100, "single-line holes evaluated at the end (0: no evaluation)")
    eval_max_steps: int = opt(0, "denoising steps cap in the evaluation (0: the model's own)")
    log_every_s: float = opt(10.0, "seconds between progress lines")
    threads: int = opt(0, "CPU threads (0: torch's default)")
    device: str = opt("auto", "auto (cuda when present), cpu or cuda")


# --- adapters in training: a parametrization, so network.py stays as it is ----------------------


class LoRA(nn.Module):
    """W -> W + (alpha / r) * B @ A. B starts at zero, so step 0 is exactly the base."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.scale = alpha / rank
        bound = 1 / math.sqrt(in_features)  # A's rows ~ U(-1/sqrt(in), 1/sqrt(in)), as nn.Linear starts
        self.lora_a = nn.Parameter((torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound)
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_b @ self.lora_a).to(weight.dtype)


def target_names(model: nn.Module, targets: str) -> list[str]:
    suffixes = adapters.TARGETS[targets]
    return [n for n, p in model.named_parameters() if p.dim() == 2 and n.endswith(suffixes) and n.startswith("layers.")]


def attach(model: nn.Module, cfg: TuneConfig) -> dict[str, LoRA]:
    """Freeze the base and put a LoRA on each target matrix; name -> its LoRA."""
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(derived_seed("lora", cfg.seed))
    out = {}
    for name in target_names(model, cfg.targets):
        owner_name, attr = name.rsplit(".", 1)
        owner = model.get_submodule(owner_name)
        w = getattr(owner, attr)
        lora = LoRA(w.shape[0], w.shape[1], cfg.rank, cfg.alpha, g).to(w.device)
        parametrize.register_parametrization(owner, attr, lora, unsafe=True)
        out[name] = lora
    return out


def adapter_tensors(loras: dict[str, LoRA]) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": getattr(m, k).detach().float().cpu().contiguous()
            for n, m in loras.items() for k in ("lora_a", "lora_b")}


def named_adapter_params(loras: dict[str, LoRA]) -> list[tuple[str, nn.Parameter]]:
    return [(f"{n}.{k}", getattr(m, k)) for n, m in sorted(loras.items()) for k in ("lora_a", "lora_b")]


# --- saving and resuming ------------------------------------------------------------------------


def save(out: Path, base: Path, digest: str, loras: dict[str, LoRA], optimizer: torch.optim.AdamW,
         cfg: TuneConfig, meta: dict) -> int:
    """Write the tuned model beside `out` and swap it in (a crash leaves the previous save whole).
    Returns the adapter file's size in bytes."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(adapter_tensors(loras), str(tmp / adapters.WEIGHTS), metadata={"format": "pt"})
    moments = {}
    for name, p in named_adapter_params(loras):
        for key, value in optimizer.state.get(p, {}).items():
            moments[f"{name}/{key}"] = value.detach().float().cpu().reshape(value.shape).contiguous()
    save_file(moments, str(tmp / OPTIMIZER), metadata={"format": "pt"})
    manifest = {"format": adapters.FORMAT, "base": {"path": str(base), "sha256": digest},
                "rank": cfg.rank, "alpha": cfg.alpha, "targets": cfg.targets}
    (tmp / adapters.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for name in ("tokenizer.json", "generation_config.json"):  # torch-free readers look for them here
        if (base / name).is_file():
            shutil.copyfile(base / name, tmp / name)
    (tmp / STATE).write_text(json.dumps({**meta, "settings": asdict(cfg)}, indent=1) + "\n")
    swap_in(tmp, out)
    return (out / adapters.WEIGHTS).stat().st_size


def resume(out: Path, base: Path, digest: str, loras: dict[str, LoRA], optimizer: torch.optim.AdamW,
           cfg: TuneConfig) -> dict | None:
    """The saved run's counters, with adapters and AdamW state loaded; None for a new run."""
    if not (out / STATE).is_file():
        if out.exists() and any(out.iterdir()):
            raise TuneError(f"{out} exists and is not a tuned model; choose another --name")
        return None
    saved = json.loads((out / STATE).read_text())
    manifest = adapters.read_manifest(out)
    if Path(manifest["base"]["path"]) != base or manifest["base"].get("sha256") != digest:
        raise TuneError(f"{out.name} was tuned from {manifest['base']['path']} (or that base changed); "
                        "choose another --name")
    for key in FIXED:
        if saved["settings"].get(key) != getattr(cfg, key):
            raise TuneError(f"{out.name} was tuned with {key}={saved['settings'].get(key)!r}, now "
                            f"{getattr(cfg, key)!r}; keep it to resume, or choose another --name")
    weights = adapters.read_weights(out)
    try:
        moments = load_file(str(out / OPTIMIZER))
    except (OSError, ValueError, SafetensorError) as e:
        raise TuneError(f"{out / OPTIMIZER}: unreadable ({str(e).splitlines()[0]}); choose another --name") from None
    missing = [n for n, _ in named_adapter_params(loras) if n not in weights]
    if missing:
        raise TuneError(f"{out / adapters.WEIGHTS}: no {missing[0]} (+{len(missing) - 1} more); choose another --name")
    with torch.no_grad():
        for name, p in named_adapter_params(loras):
            p.copy_(weights[name])
            # AdamW keeps its step count on the CPU (unless capturable); the moments live with the parameter.
            state = {k.split("/", 1)[1]: v if k.endswith("/step") else v.to(p.device)
                     for k, v in moments.items() if k.split("/", 1)[0] == name}
            if state:
                optimizer.state[p] = state
    return saved


# --- the run ------------------------------------------------------------------------------------


def size_of_weights(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


def check_paths(repo: Path, name: str) -> Path:
    if not TUNED_NAME.match(name):
        raise TuneError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out = models_dir() / name
    root = repo.expanduser().resolve()
    if out.resolve() == root or out.resolve().is_relative_to(root):
        raise TuneError(f"{out}: the model directory would be inside {root}; set XDG_DATA_HOME elsewhere")
    return out


def base_directory(base_arg: str | None) -> Path:
    if base_arg is None:
        from dgls.options import DEFAULTS, model_path

        base_arg = model_path(DEFAULTS)
        if base_arg is None:
            raise TuneError("no base model: pass --base MODEL (a checkpoint directory); no shipped default is installed")
    base = resolve(base_arg).resolve()  # absolute: the tuned model points at it from anywhere
    if adapters.is_adapter_dir(base):
        raise TuneError(f"--base {base_arg}: a tuned model; tune its base instead")
    return base


def tune(repo: Path, base_arg: str | None, name: str | None, cfg: TuneConfig, *, log=print,
         stop=None, t_start: float | None = None) -> dict:
    """One invocation. Returns the run's state ("interrupted" says whether a stop cut it short)."""
    t_start = time.monotonic() if t_start is None else t_start
    deadline = t_start + cfg.minutes * 60
    name = name or "".join(c if c.isalnum() or c in "._-" else "-" for c in repo.expanduser().resolve().name)
    out = check_paths(repo, name)
    base = base_directory(base_arg)  # before any output: a refusal is one line
    files = collect(repo, cfg.heldout_percent)
    digest = adapters.base_digest(base)
    log(f"{repo}: {files.summary()}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = loader.default_device() if cfg.device == "auto" else torch.device(cfg.device)
    loaded = loader.load(base, dtype="float32", device=device)
    if not loaded.family.startswith("fim"):  # "fim" (PSM) or "fim-spm"
        raise TuneError(f"{base}: its tokenizer has no FIM tokens; dgls tune trains FIM examples")
    model, tok = loaded.model, loaded.tokenizer
    mcfg = model.cfg
    gen = json.loads((base / "generation_config.json").read_text()) if (base / "generation_config.json").is_file() else {}
    canvas = CanvasLengths(**gen["dgls_canvas_lengths"]) if gen.get("dgls_canvas_lengths") else CANVAS
    fim = dataclasses.replace(FimConfig(), order=loader.fim_order(base),  # the prompt order the base was trained in
                              prefix_tokens=cfg.prefix_tokens, suffix_tokens=cfg.suffix_tokens)
    obj = ObjectiveConfig()
    data = FimDataset(files.train, tok, bos=mcfg.bos_id, eos=mcfg.eos_ids[0], pad=mcfg.pad_id, fim=fim,
                      canvas=canvas, pad_weight=obj.pad_weight)
    loras = attach(model, cfg)
    params = [p for _, p in named_adapter_params(loras)]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    meta = {"step": 0, "examples": 0, "train_seconds": 0.0, "base": str(base), "repo": str(repo.expanduser().resolve()),
            "train_files": len(files.train), "heldout_files": len(files.heldout)}
    saved = resume(out, base, digest, loras, optimizer, cfg)
    if saved:
        meta.update({k: saved[k] for k in ("step", "examples", "train_seconds")})
        log(f"resuming {out} at step {meta['step']}")
    n_adapter = sum(p.numel() for p in params)
    n_base = sum(p.numel() for p in model.parameters()) - n_adapter
    log(f"tuning {base} -> {out}: {cfg.targets} adapters, rank {cfg.rank}: {n_adapter:,} parameters "
        f"({n_adapter / n_base:.2%} of {n_base:,}); budget {cfg.minutes:g} min on {device}")
    model.train()
    step_time, last_log, interrupted = 0.0, 0.0, False
    first = meta["step"]
    with BatchSource(data, cfg.batch_size, cfg.seed, 0) as batches:
        while True:
            if stop is not None and stop.is_set():
                interrupted = True
                break
            now = time.monotonic()
            if (cfg.steps and meta["step"] >= cfg.steps) or now + step_time > deadline - 1.0:
                break
            step = meta["step"]
            batch = batches(step, step + 1).to(device)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            g = torch.Generator().manual_seed(derived_seed("tune-noise", cfg.seed, step))
            loss = diffusion_loss(model, batch, obj, g, SamplerConfig()).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step_time = time.monotonic() - now
            meta["step"] += 1
            meta["examples"] += batch.target.shape[0]
            meta["train_seconds"] += step_time
            if meta["step"] == first + 1 or time.monotonic() - last_log >= cfg.log_every_s:
                last_log = time.monotonic()
                left = max(0.0, deadline - last_log)
                log(f"step {meta['step']}  loss {loss.item():.4f}  {1 / max(step_time, 1e-9):.2f} steps/s  "
                    f"{clock(left)} left")
    model.eval()
    size = save(out, base, digest, loras, optimizer, cfg, meta)
    base_size = size_of_weights(base)
    meta.update(adapter_bytes=size, base_bytes=base_size, interrupted=interrupted, model=str(out), name=name)
    if size > 0.10 * base_size:
        log("note: the adapters are over 10% of the base's size; a lower --rank or --targets attention keeps them small")
    log(f"saved {name} at step {meta['step']} ({meta['examples']:,} examples, "
        f"{clock(meta['train_seconds'])} training): {out} (adapters {size / 2**20:.2f} MiB, "
        f"{size / max(1, base_size):.1%} of the base's {base_size / 2**20:.1f} MiB)")
    return meta | {"files": files}  # the evaluation measures on the files this run split


def evaluate_run(meta: dict, cfg: TuneConfig, log=print) -> dict | None:
    """Base vs tuned vs the longest-match baseline on single-line holes of the held-out files."""
    out, base, files = Path(meta["model"]), Path(meta["base"]), meta["files"]
    # Holes and sampler seed fixed, not --seed: runs with other seeds are scored on the same cases.
    ecfg = ev.EvalConfig(max_steps=cfg.eval_max_steps, seed=0, device=cfg.device, threads=cfg.threads)
    systems = {"base": ev.ModelSystem(base, ecfg), "tuned": ev.ModelSystem(out, ecfg)}
    tok = systems["base"].engine.tokenizer
    canvas = systems["base"].canvas

    def fits(middle: str, kind: str) -> bool:
        return len(tok.encode(middle)) + 1 <= canvas.for_kind(kind)

    raw = ev.cases_from_records(files.heldout, ev.CaseConfig(n=cfg.eval_cases, seed=0), fits,
                                kinds=(LINE_SUFFIX, LINE))
    cases = [ev.Case(c["id"], c["prefix"], c["suffix"], c["middle"], c["kind"], c["path"]) for c in raw]
    cases = [c for c in cases if c.lines == "single-line"]
    if not cases:
        log("no single-line holes in the held-out files: no evaluation")
        return None
    systems["baseline"] = ev.BaselineSystem(None, ecfg, records=files.train)
    report = ev.evaluate(cases, systems, ev.SandboxLimits())
    summary = {s: g["all"] for s, g in report["summary"].items()}
    result = {"cases": len(cases), "heldout_files": len(files.heldout), "step": meta["step"],
              "examples": meta["examples"], "train_seconds": round(meta["train_seconds"], 1),
              "adapter_bytes": meta["adapter_bytes"], "base_bytes": meta["base_bytes"],
              "summary": summary, "rows": report["rows"]}
    (out / EVAL).write_text(json.dumps(result, indent=1) + "\n")
    log(f"single-line holes from {len(files.heldout)} held-out files:")
    log(ev.table({s: {"single-line": v} for s, v in summary.items()}))
    log(f"written to {out / EVAL}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dgls tune", description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, metavar="PATH", help="the repository to learn from (only read)")
    ap.add_argument("--base", default=None, help="base checkpoint (default: $DGLS_MODEL, else the shipped dgls-tiny)")
    ap.add_argument("--name", default=None, help="the model's name for --model / model = (default: PATH's name)")
    add_arguments(ap, TuneConfig)
    args = ap.parse_args(argv)
    t_start = time.monotonic()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        cfg = from_arguments(TuneConfig, args)
        with stop_on_signals() as stop:
            meta = tune(args.path, args.base, args.name, cfg, log=log, stop=stop, t_start=t_start)
        if meta["interrupted"]:
            log(f"interrupted: saved {meta['name']} at step {meta['step']}; run the same command to continue")
            return EXIT_INTERRUPTED
        if cfg.eval_cases:
            evaluate_run(meta, cfg, log)
    except (TuneError, RepoError, CheckpointError, FimError, ValueError) as e:
        log(f"dgls tune: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return 2
    except KeyboardInterrupt:
        log("dgls tune: interrupted")
        return EXIT_INTERRUPTED
    log(f"use it: dgls complete FILE:LINE --model {meta['name']}  (editors: model = \"{meta['name']}\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
