"""Write a DiffusionGemma checkpoint with random weights and a small BPE tokenizer.

For tests, benchmarks and trying the engine path end to end; its suggestions are noise.
    python -m dgls.model.random_checkpoint DIR [--config test-tiny] [--seed 0] [--family fim]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer

from . import bpe, loader
from .config import CONFIGS, ModelConfig, from_name
from .network import DiffusionGemma


def init_random(model: DiffusionGemma, seed: int = 0, std: float = 0.02) -> DiffusionGemma:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:  # norms and scales around one, not exactly one, so each one matters
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    return model


def train_tokenizer(vocab_size: int, family: str) -> HFTokenizer:
    sources = sorted(Path(__file__).parent.glob("*.py"))  # some Python text to learn merges from
    return bpe.train_tokenizer((p.read_text(encoding="utf-8") for p in sources), vocab_size, family)


def write(directory: str | Path, cfg: ModelConfig | str = "test-tiny", *, seed: int = 0, family: str = "fim") -> Path:
    cfg = from_name(cfg) if isinstance(cfg, str) else cfg
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = init_random(DiffusionGemma(cfg), seed)
    out = loader.save(model, directory)
    train_tokenizer(min(cfg.vocab_size, 4096), family).save(str(out / "tokenizer.json"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--config", default="test-tiny", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", default="fim", choices=["fim", "gemma-chat"])
    args = ap.parse_args(argv)
    print(write(args.directory, args.config, seed=args.seed, family=args.family))


if __name__ == "__main__":
    main()
