"""A training run's resumable state and its exported model, both safetensors (never pickle).

RUN/checkpoint/ holds the parameters and the AdamW moments (files of at most a size limit,
tensors split when larger) and state.json (step, settings, counters). Every random draw of
a step derives from (seed, step), so the step is the whole random and data state.
RUN/model/ is what the engine loads: config.json, generation_config.json, sharded weights
with model.safetensors.index.json, tokenizer.json, MODEL_CARD.md. Both are written beside
their final place and swapped in, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file

from .. import loader

from . import shards
from ..config import CanvasLengths
from ..network import DiffusionGemma

STATE = "state.json"


class StateError(ValueError):
    """A checkpoint that does not fit this run; the message is one line."""


def swap_in(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp` so that a crash at any point leaves one complete copy."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def checkpoint_dir(run: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):  # .old: a crash between the two renames
        if (run / name / STATE).exists():
            return run / name
    return None


def write_state(final: Path, weights: dict[str, torch.Tensor], moments: dict[str, torch.Tensor], meta: dict,
                max_bytes: int) -> Path:
    """A checkpoint directory: parameters and AdamW state in safetensors files of at most
    `max_bytes` (split tensors when needed) and `meta` in state.json, written beside `final`
    and swapped in."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = {
        "model": sorted(set(shards.save(weights, tmp, "model", max_bytes, split_large=True).values())),
        "optimizer": sorted(set(shards.save(moments, tmp, "optimizer", max_bytes, split_large=True).values())),
    }
    (tmp / STATE).write_text(json.dumps({**meta, "files": files}, indent=1) + "\n")
    swap_in(tmp, final)
    return final


def save_checkpoint(run: Path, model: DiffusionGemma, optimizer: torch.optim.AdamW, meta: dict,
                    max_bytes: int) -> Path:
    """RUN/checkpoint: the model's parameters, the AdamW state and `meta` (step, settings, counters)."""
    names = {id(p): n for n, p in model.named_parameters()}
    state = {}
    for p, s in optimizer.state.items():
        for key, value in s.items():
            state[f"{key}/{names[id(p)]}"] = value
    return write_state(run / "checkpoint", dict(model.state_dict()), state, meta, max_bytes)


def compact(src: Path, dst: Path, *, dtype: torch.dtype = torch.bfloat16, optimizer: bool = True,
            max_bytes: int = 16 * 2**20) -> Path:
    """A smaller copy of a checkpoint directory to keep (in git): floating tensors in `dtype`
    (loading casts them back to the run's fp32), optionally without the AdamW moments (the
    next chunk starts them afresh: bias correction restarts with the step count)."""
    meta = json.loads((src / STATE).read_text())

    def cast(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(dtype) if v.is_floating_point() and not k.startswith("step/") else v for k, v in tensors.items()}

    weights = cast(shards.load(src, meta["files"]["model"]))
    moments = cast(shards.load(src, meta["files"]["optimizer"])) if optimizer else {}
    return write_state(dst, weights, moments, {**meta, "compacted": str(dtype).removeprefix("torch.")}, max_bytes)


def load_checkpoint(directory: Path, model: DiffusionGemma, optimizer: torch.optim.AdamW) -> dict:
    meta = json.loads((directory / STATE).read_text())
    device = model.device
    weights = shards.load(directory, meta["files"]["model"], device)
    params = dict(model.named_parameters())
    if set(weights) != set(params):
        raise StateError(f"{directory}: checkpoint tensors do not match the model config")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].reshape(p.shape))
    saved = shards.load(directory, meta["files"]["optimizer"], device)
    order = [p for group in optimizer.param_groups for p in group["params"]]
    index = {id(p): i for i, p in enumerate(order)}
    # Parameters the objective cannot move (fim.inert_parameters) are not optimised: they
    # have no state, and a state saved for one under another objective is dropped.
    opt_state: dict[int, dict] = {}
    for key, value in saved.items():
        field, name = key.split("/", 1)
        if name not in params:
            raise StateError(f"{directory}: optimizer state for unknown parameter {name}")
        p = params[name]
        if id(p) not in index:
            continue
        shaped = value if field == "step" else value.reshape(p.shape)
        opt_state.setdefault(index[id(p)], {})[field] = shaped
    optimizer.load_state_dict({"state": opt_state, "param_groups": optimizer.state_dict()["param_groups"]})
    return meta


def export(run: Path, model: DiffusionGemma, tokenizer_path: Path, canvas: CanvasLengths, dtype: str,
           max_bytes: int, card: str, fim_order: str = "psm") -> Path:
    """RUN/model: what `dgls infill --model RUN/model` and the engine load."""
    final, tmp = run / "model", run / "model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:  # loader.save owns the name mapping; reuse it
        written = loader.save(model, scratch)
        tensors = load_file(str(written / "model.safetensors"))
        tensors = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}
        where = shards.save(tensors, tmp, "model", max_bytes)
        shards.write_index(tmp, where, tensors, loader.INDEX)
        shutil.copy(written / "config.json", tmp / "config.json")
        gen = json.loads((written / "generation_config.json").read_text())
    # The canvas lengths this model was trained for, by hole kind, for the engine to read.
    gen["dgls_canvas_lengths"] = asdict(canvas)
    gen["dgls_fim_order"] = fim_order  # the prompt order it was trained in (prompt.FIM_ORDERS)
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    shutil.copy(tokenizer_path, tmp / "tokenizer.json")
    (tmp / "MODEL_CARD.md").write_text(card)
    swap_in(tmp, final)
    return final
