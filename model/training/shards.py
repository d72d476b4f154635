"""Tensors to safetensors files of bounded size, and back. Never pickle.

`save` packs tensors into `{stem}-NNNNN-of-NNNNN.safetensors` files of at most `max_bytes`
each. A tensor larger than that is cut along dim 0 into parts ("name#0", "name#1", ...) when
`split_large` (resumable training checkpoints, read back by `load`); otherwise it is an
error (Hugging Face checkpoints must keep their tensor names whole).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

PART = "#"


class ShardError(ValueError):
    """Tensors that cannot be written within the size limit; one line."""


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _pieces(name: str, t: torch.Tensor, max_bytes: int, split_large: bool) -> list[tuple[str, torch.Tensor]]:
    if _nbytes(t) <= max_bytes:
        return [(name, t)]
    if not split_large:
        raise ShardError(f"tensor {name} is {_nbytes(t) / 2**20:.1f} MiB, "
                         f"over the {max_bytes / 2**20:.1f} MiB file limit")
    row_bytes = _nbytes(t) // max(1, t.shape[0]) if t.dim() else _nbytes(t)
    if t.dim() == 0 or row_bytes > max_bytes:
        flat = t.reshape(-1)
        per = max(1, max_bytes // t.element_size())
        return [(f"{name}{PART}{i}", flat[i * per:(i + 1) * per]) for i in range((flat.numel() + per - 1) // per)]
    rows = max(1, max_bytes // row_bytes)
    return [(f"{name}{PART}{i}", t[i * rows:(i + 1) * rows]) for i in range((t.shape[0] + rows - 1) // rows)]


def save(tensors: dict[str, torch.Tensor], directory: Path, stem: str, max_bytes: int, *,
         split_large: bool = False, metadata: dict[str, str] | None = None) -> dict[str, str]:
    """Write the tensors; returns {stored name: file name}."""
    # Leave room for each file's JSON header (names, shapes, offsets: ~100 bytes a tensor).
    budget = max_bytes - min(64 * 1024, max_bytes // 8)
    if budget < 1024:
        raise ShardError(f"file limit {max_bytes} bytes is too small")
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        for piece_name, piece in _pieces(name, t.detach().contiguous().cpu(), budget, split_large):
            if groups[-1] and size + _nbytes(piece) > budget:
                groups.append({})
                size = 0
            groups[-1][piece_name] = piece.contiguous()
            size += _nbytes(piece)
    where = {}
    for i, group in enumerate(groups):
        name = f"{stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(directory / name), metadata=metadata or {"format": "pt"})
        if (directory / name).stat().st_size > max_bytes:
            raise ShardError(f"{name} came out over the {max_bytes}-byte limit ({len(group)} tensors' header)")
        where.update({k: name for k in group})
    return where


def load(directory: Path, files: list[str] | set[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the files, split parts joined again (a tensor whose single row was over
    the limit comes back flat: reshape it to the shape you expect)."""
    parts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    out: dict[str, torch.Tensor] = {}
    for name in sorted(set(files)):
        with safe_open(str(directory / name), framework="pt", device=str(device)) as f:
            for key in f.keys():
                if PART in key:
                    base, index = key.rsplit(PART, 1)
                    parts.setdefault(base, []).append((int(index), f.get_tensor(key)))
                else:
                    out[key] = f.get_tensor(key)
    for base, pieces in parts.items():
        out[base] = torch.cat([p for _, p in sorted(pieces, key=lambda x: x[0])])
    return out


def write_index(directory: Path, where: dict[str, str], tensors: dict[str, torch.Tensor], name: str) -> None:
    """A Hugging Face `model.safetensors.index.json` for shards written by `save`."""
    total = sum(_nbytes(t) for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(where.items()))}
    (directory / name).write_text(json.dumps(index, indent=2) + "\n")
