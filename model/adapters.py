"""Low-rank adapters (LoRA) on a base checkpoint: the file format, and merging them at load.

A tuned model (`dgls tune`) is a directory holding only what differs from its base:

    adapter.json          {"format", "base": {"path", "sha256"}, "rank", "alpha", "targets"}
    adapter.safetensors   "<param>.lora_a" [r, in] and "<param>.lora_b" [out, r] per adapted matrix
    tokenizer.json, generation_config.json   copies of the base's (torch-free readers of the
                          tokenizer and the FIM order find them here, as in any checkpoint)

The loader merges W + (alpha / r) * B @ A into the base's weights once, at load: serving a
tuned model costs exactly what serving its base costs. The sum is taken in fp32 and stored
in the serving dtype; in bf16 (the CUDA default) that rounds it (measured on a
dgls-tiny-shaped base after 25 steps: the stored change has cosine 0.999 with the fp32 one). The base is named by path and
checked by a digest of its config and weights, so a base changed since tuning is refused
instead of silently pairing adapters with weights they were not trained against.

Adapted matrices are 2-D parameters of the network (attention and dense MLP projections);
encoder and decoder share them, so one adapter adapts both passes. torch is imported by the
functions that need it: `is_adapter_dir` and `read_manifest` serve torch-free callers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .paths import CheckpointError

MANIFEST = "adapter.json"
WEIGHTS = "adapter.safetensors"
FORMAT = "dgls-lora-1"
# Which 2-D parameters each target set adapts (names as in network.py).
TARGETS = {
    "attention": ("attn.wqkv", "attn.wo"),
    "attention+mlp": ("attn.wqkv", "attn.wo", "mlp_gate_up", "mlp_down"),
}


def is_adapter_dir(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable adapter manifest ({e})") from None
    base = raw.get("base") if isinstance(raw, dict) else None
    if raw.get("format") != FORMAT or not isinstance(base, dict) or not isinstance(base.get("path"), str):
        raise CheckpointError(f"{path}: not a {FORMAT} adapter manifest")
    return raw


def base_digest(directory: Path) -> str:
    """sha256 over the base's config.json and weight files (names and bytes, in name order):
    what the adapters were trained against. Streams, so a large base costs a read, not memory."""
    h = hashlib.sha256()
    files = [directory / "config.json", *sorted(directory.glob("*.safetensors")),
             *sorted(directory.glob("model.safetensors.index.json"))]
    for f in files:
        h.update(f.name.encode() + b"\0")
        try:
            with f.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            raise CheckpointError(f"{f}: unreadable base file ({e.strerror or e})") from None
    return h.hexdigest()


def base_of(directory: Path, *, check: bool = True) -> Path:
    """The base checkpoint directory a tuned model points at, checked against its digest."""
    manifest = read_manifest(directory)
    base = Path(manifest["base"]["path"])
    if not (base / "config.json").is_file():
        raise CheckpointError(f"{directory}: its base model {base} is missing (tuned models store only adapters)")
    if is_adapter_dir(base):
        raise CheckpointError(f"{directory}: its base {base} is itself a tuned model; tune a plain checkpoint")
    if check and base_digest(base) != manifest["base"].get("sha256"):
        raise CheckpointError(f"{directory}: its base model {base} changed since tuning (digest differs); tune again")
    return base


def scale(manifest: dict) -> float:
    return float(manifest["alpha"]) / int(manifest["rank"])


def read_weights(directory: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no {WEIGHTS}") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt adapter weights ({str(e).splitlines()[0]})") from None


def merge(state: dict, directory: Path) -> None:
    """Add each adapter's (alpha / r) * B @ A to its base weight in `state` (in place, computed in
    fp32, stored in the weight's dtype)."""
    manifest = read_manifest(directory)
    weights = read_weights(directory)
    s = scale(manifest)
    names = sorted({k.rsplit(".", 1)[0] for k in weights})
    for name in names:
        a, b = weights.get(f"{name}.lora_a"), weights.get(f"{name}.lora_b")
        if name not in state or a is None or b is None:
            raise CheckpointError(f"{directory / WEIGHTS}: adapter {name!r} does not fit the base model")
        w = state[name]
        if a.dim() != 2 or b.dim() != 2 or (b.shape[0], a.shape[1]) != tuple(w.shape) or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"{directory / WEIGHTS}: adapter {name!r} has shapes {tuple(b.shape)} @ "
                                  f"{tuple(a.shape)}, the base weight {tuple(w.shape)}")
        delta = s * (b.float() @ a.float())
        state[name] = (w.float() + delta.to(w.device)).to(w.dtype)
