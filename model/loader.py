"""Load a DiffusionGemma checkpoint (Hugging Face layout) into dgls, and write one back.

A checkpoint is a directory with config.json, safetensors weights (one file, or shards with
model.safetensors.index.json) and tokenizer.json; or a model id found in the local Hugging
Face cache (never downloaded). Weights load from safetensors only: pickle checkpoints are
refused. Every failure is a `CheckpointError` whose message is one line.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, replace
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import adapters, checkpoint
from .config import (
    ConfigError,
    ModelConfig,
    SamplerConfig,
    from_hf_config,
    sampler_from_generation_config,
    sampler_to_generation_config,
    to_hf_config,
)
from .network import DiffusionGemma
from .paths import PICKLE_SUFFIXES, CheckpointError, resolve
from .prompt import CHAT_TOKENS, FIM_TOKENS, infill_family, read_fim_order
from .tokenizer import Tokenizer

INDEX = "model.safetensors.index.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: DiffusionGemma
    tokenizer: Tokenizer
    sampler: SamplerConfig
    family: str  # infill prompt family, see prompt.py
    path: Path


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


MAX_JSON_BYTES = 16 * 2**20  # config.json and shard indexes are kilobytes; refuse a huge one unread


def _read_json(path: Path, what: str) -> dict:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero reports size 0 and never ends
            raise CheckpointError(f"{path}: {what} is not a regular file")
        if st.st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path}: {what} is over {MAX_JSON_BYTES // 2**20} MiB; refusing to read it")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: no {what} ({path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable {what}: {e}") from None


def read_config(directory: Path) -> tuple[ModelConfig, SamplerConfig]:
    raw = _read_json(directory / "config.json", "config")
    try:
        cfg = from_hf_config(raw)
    except ConfigError as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    gen_path = directory / "generation_config.json"
    gen = _read_json(gen_path, "generation config") if gen_path.exists() else {}
    # The checkpoint's stop tokens may be listed at the top level or in generation_config.json.
    extra = [raw.get("eos_token_id"), gen.get("eos_token_id")]
    eos = list(cfg.eos_ids)
    for value in extra:
        for tid in value if isinstance(value, list) else [value]:
            if isinstance(tid, int) and tid not in eos:
                eos.append(tid)
    try:
        sampler = sampler_from_generation_config(gen)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{gen_path}: {e}") from None
    return replace(cfg, eos_ids=tuple(eos)), sampler


def weight_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file holding it."""
    index = directory / INDEX
    if index.exists():
        weight_map = _read_json(index, "weight index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no weight_map")
        return {name: directory / file for name, file in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickles = sorted(f.name for f in directory.iterdir() if f.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{directory}: refusing pickle weights ({_names(pickles)}); dgls loads safetensors only"
            )
        raise CheckpointError(f"{directory}: no safetensors weights")
    names: dict[str, Path] = {}
    for f in files:
        with _open(f) as handle:
            for name in handle.keys():
                names[name] = f
    return names


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weight file is missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0]})") from None


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). Elsewhere torch
    emulates it: 7.6x slower than fp32 on an AVX2 CPU (bench/RESULTS.md)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_state(
    directory: Path,
    cfg: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Read, check and fuse the checkpoint's tensors into dgls parameter tensors."""
    files = weight_files(directory)
    table = checkpoint.layout(cfg)
    handles: dict[Path, object] = {}

    def source(name: str) -> str | None:
        for candidate in (name, *checkpoint.aliases(name)):
            if candidate in files:
                return candidate
        return None

    missing = [part for entry in table.values() if not entry.optional
               for part in entry.parts if source(part) is None]
    if missing:
        raise CheckpointError(f"{directory}: checkpoint is missing {len(missing)} tensors: {_names(missing)}")
    known = {name for entry in table.values() for part in entry.parts
             for name in (part, *checkpoint.aliases(part))}
    unexpected = sorted(n for n in files if n not in known and not checkpoint.is_ignored(n))
    if unexpected:
        raise CheckpointError(f"{directory}: unexpected tensors {_names(unexpected)}; is config.json the checkpoint's own?")

    state: dict[str, torch.Tensor] = {}
    for done, (param, entry) in enumerate(table.items(), 1):
        pieces = []
        for part, shape in zip(entry.parts, entry.shapes):
            name = source(part)
            if name is None:  # optional and absent
                pieces.append(torch.ones(shape))
                continue
            path = files[name]
            if path not in handles:
                handles[path] = _open(path)
            try:
                tensor = handles[path].get_tensor(name)
            except (SafetensorError, OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{path}: cannot read {name} ({str(e).splitlines()[0]})") from None
            if tuple(tensor.shape) != shape:
                raise CheckpointError(
                    f"{name} has shape {tuple(tensor.shape)} but config.json implies {shape}")
            pieces.append(tensor)
        fused = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
        state[param] = fused.to(device=device, dtype=dtype)
        if progress is not None:
            progress(done, len(table))
    return state


def fim_order(directory: Path) -> str:
    """The FIM order the model was trained in (generation_config.json "dgls_fim_order"; PSM when unsaid)."""
    try:
        return read_fim_order(directory)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def load_tokenizer(directory: Path) -> tuple[Tokenizer, str]:
    path = directory / "tokenizer.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: no tokenizer.json")
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # the tokenizers library raises its own exception types
        raise CheckpointError(f"{path}: unreadable tokenizer ({str(e).splitlines()[0]})") from None
    family = infill_family(tok, fim_order(directory))
    if family is None:
        raise CheckpointError(
            f"{path}: no infill prompt format: the tokenizer has neither {'/'.join(FIM_TOKENS)} "
            f"nor Gemma chat tokens {'/'.join(CHAT_TOKENS)}")
    return tok, family


def load(
    path_or_id: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedModel:
    directory = resolve(path_or_id)
    # A tuned model: the base's config and tokenizer (its own tokenizer.json is a copy).
    base = adapters.base_of(directory, check=False) if adapters.is_adapter_dir(directory) else directory
    cfg, _ = read_config(base)
    tokenizer, family = load_tokenizer(base)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}")
    model, sampler = load_network(directory, dtype=dtype, device=device, progress=progress)
    return LoadedModel(model, tokenizer, sampler, family, directory)


def load_network(
    path_or_id: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DiffusionGemma, SamplerConfig]:
    """The network and its sampler settings, without the tokenizer. A tuned model is its base
    with the adapters merged into the weights (adapters.py): no cost per forward pass."""
    directory = resolve(path_or_id)
    tuned = adapters.is_adapter_dir(directory)
    base = adapters.base_of(directory) if tuned else directory
    cfg, sampler = read_config(base)
    dev = torch.device(device) if device is not None else default_device()
    state = load_state(base, cfg, resolve_dtype(dtype, dev), dev, progress)
    if tuned:
        adapters.merge(state, directory)
    with torch.device("meta"):  # no second copy of the weights: parameters are assigned
        model = DiffusionGemma(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval(), sampler


def save(model: DiffusionGemma, directory: str | Path, sampler: SamplerConfig | None = None,
         extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `model` as a Hugging Face DiffusionGemma checkpoint (config.json + model.safetensors).
    `extra` tensors are stored beside the model's under their own names."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters())
    tensors = dict(extra or {})
    for param, entry in checkpoint.layout(model.cfg).items():
        rows = [shape[0] for shape in entry.shapes]
        for name, piece in zip(entry.parts, torch.split(params[param].detach(), rows, dim=0)):
            tensors[name] = piece.contiguous().cpu()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(to_hf_config(model.cfg), indent=2) + "\n")
    gen = sampler_to_generation_config(sampler or SamplerConfig())
    gen["eos_token_id"] = list(model.cfg.eos_ids)
    gen["pad_token_id"] = model.cfg.pad_id
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out
