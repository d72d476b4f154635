"""Block configurations of the fused MoE kernel: tuned per device and expert shape, kept as JSON.

One file per (experts E, expert width N = I, device) in `configs/`, named by its key as vLLM
names them (`E=8,N=256,device_name=NVIDIA_H100_80GB_HBM3.json`); inside, token counts M
(the T of `moe`) map to a block config. A lookup takes the entry whose M is nearest. A
missing or unreadable file falls back to a default with one logged warning per key, so a new
GPU or model shape runs correctly, only untuned. `bench/tune_moe.py` writes these files.

Plain Python and JSON: importable without triton, so the tuner's files are tested anywhere.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class MoeBlockConfig:
    """One launch configuration, shared by both grouped GEMMs (as vLLM does).

    block_m rows of one expert per program (the alignment unit of `align_block_size`),
    block_n output columns, block_k reduction step; group_m programs along M share a
    band of weight columns for L2 reuse. num_warps/num_stages go to the launch."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 1
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            # tl.dot needs every block dimension >= 16 and a power of two.
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {value}")
        if self.group_m < 1 or self.num_warps < 1 or self.num_stages < 1:
            raise ValueError(f"group_m, num_warps and num_stages must be >= 1, got {self}")

    # The JSON keys are vLLM's, so its tuned files read the same way.
    _KEYS = {"block_m": "BLOCK_SIZE_M", "block_n": "BLOCK_SIZE_N", "block_k": "BLOCK_SIZE_K",
             "group_m": "GROUP_SIZE_M", "num_warps": "num_warps", "num_stages": "num_stages"}

    def to_json(self) -> dict[str, int]:
        return {self._KEYS[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, entry: dict) -> MoeBlockConfig:
        unknown = set(entry) - set(cls._KEYS.values())
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return cls(**{field: int(entry[key]) for field, key in cls._KEYS.items() if key in entry})


def device_name(device: torch.device | str) -> str:
    """The name a config file is keyed by: the CUDA device's name, or "cpu" (the interpreter)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "_")
    return device.type


def file_name(num_experts: int, width: int, device: str) -> str:
    return f"E={num_experts},N={width},device_name={device}.json"


def default_config(num_tokens: int, num_experts: int) -> MoeBlockConfig:
    """Untuned but reasonable: small M tiles when few tokens reach each expert."""
    if num_tokens <= num_experts:
        return MoeBlockConfig(block_m=16, block_n=32, block_k=64, group_m=1)
    return MoeBlockConfig(block_m=64, block_n=64, block_k=32, group_m=8)


def write_configs(configs: dict[int, MoeBlockConfig], num_experts: int, width: int, device: str,
                  directory: Path = CONFIG_DIR) -> Path:
    """Write one key's file, M ascending; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(num_experts, width, device)
    body = {str(m): configs[m].to_json() for m in sorted(configs)}
    path.write_text(json.dumps(body, indent=2) + "\n")
    read_configs.cache_clear()
    return path


@functools.cache
def read_configs(num_experts: int, width: int, device: str,
                 directory: Path = CONFIG_DIR) -> dict[int, MoeBlockConfig] | None:
    """The tuned table of one key, or None (warned once: cached) when there is none to use."""
    path = directory / file_name(num_experts, width, device)
    if not path.is_file():
        log.warning("no tuned MoE config %s; using the default block sizes (run bench/tune_moe.py)", path.name)
        return None
    try:
        raw = json.loads(path.read_text())
        table = {int(m): MoeBlockConfig.from_json(entry) for m, entry in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as err:
        log.warning("unreadable MoE config %s (%s); using the default block sizes", path, err)
        return None
    if not table:
        log.warning("empty MoE config %s; using the default block sizes", path)
        return None
    return table


def get_config(num_tokens: int, num_experts: int, width: int, device: str,
               directory: Path = CONFIG_DIR) -> MoeBlockConfig:
    """The tuned config whose M is nearest `num_tokens` (ties: the smaller M), else the default."""
    table = read_configs(num_experts, width, device, directory)
    if table is None:
        return default_config(num_tokens, num_experts)
    nearest = min(table, key=lambda m: (abs(m - num_tokens), m))
    return table[nearest]
