"""Write a DiffusionGemma checkpoint with random weights and a small BPE tokenizer.

For tests, benchmarks and trying the engine path end to end; its suggestions are noise.
    python -m dgls.model.random_checkpoint DIR [--config test-tiny] [--seed 0] [--family fim]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer

from . import loader
from .config import CONFIGS, ModelConfig, SamplerConfig, from_name
from .network import DiffusionGemma
from .prompt import FIM_ORDERS
from .training import bpe


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
    sources = sorted(Path(__file__).parent.rglob("*.py"))  # some Python text to learn merges from
    return bpe.train_tokenizer((p.read_text(encoding="utf-8") for p in sources), vocab_size, family)


def write(directory: str | Path, cfg: ModelConfig | str = "test-tiny", *, seed: int = 0, family: str = "fim",
          fim_order: str = "psm", max_steps: int | None = None) -> Path:
    """`max_steps` caps the denoising steps (a random model never converges, so it runs them all:
    benchmarks use this for a fixed amount of work per suggestion)."""
    cfg = from_name(cfg) if isinstance(cfg, str) else cfg
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = init_random(DiffusionGemma(cfg), seed)
    sampler = SamplerConfig() if max_steps is None else SamplerConfig(max_steps=max_steps)
    out = loader.save(model, directory, sampler)
    train_tokenizer(min(cfg.vocab_size, 4096), family).save(str(out / "tokenizer.json"))
    if fim_order != "psm":
        gen = json.loads((out / "generation_config.json").read_text())
        (out / "generation_config.json").write_text(json.dumps({**gen, "dgls_fim_order": fim_order}, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--config", default="test-tiny", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", default="fim", choices=["fim", "gemma-chat"])
    ap.add_argument("--fim-order", default="psm", choices=sorted(FIM_ORDERS))
    ap.add_argument("--max-steps", type=int, default=None, help="denoising steps per suggestion (default: the sampler's)")
    args = ap.parse_args(argv)
    print(write(args.directory, args.config, seed=args.seed, family=args.family, fim_order=args.fim_order,
                max_steps=args.max_steps))


if __name__ == "__main__":
    main()
