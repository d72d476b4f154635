"""What a diffusion checkpoint writes at each noise level: accuracy on the canvas positions
the noise changed, and how often it answers with the noise token itself (copying).

    python bench/noise_levels.py MODEL_DIR CORPUS_DIR [--batches 4] [--prefix-tokens 256 --suffix-tokens 64]

Held-out FIM examples (the corpus's held-out split, fixed draws) are corrupted at fixed
levels t (each canvas token replaced by a uniform one with probability t, as in training)
and decoded once, without self-conditioning. The sampler starts from t = 1 (all noise), so
accuracy at high t is what decides whether the model can start a line; a model that only
learnt to copy its canvas scores ~1 - t on middle accuracy and ~0 here.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dgls.model import loader  # noqa: E402
from dgls.model.training import corpus  # noqa: E402
from dgls.model.training.fim import FimConfig, FimDataset, corrupt  # noqa: E402
from dgls.model.training.train import TrainConfig  # noqa: E402

LEVELS = (0.25, 0.5, 0.75, 0.9, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--batches", type=int, default=4, help="held-out batches of 16 examples")
    ap.add_argument("--prefix-tokens", type=int, default=256)
    ap.add_argument("--suffix-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = loader.load(args.model, device="cpu", dtype="float32")
    model, cfg = loaded.model, loaded.model.cfg
    data = FimDataset(corpus.read_split(args.corpus, "heldout"), loaded.tokenizer, bos=cfg.bos_id, eos=cfg.eos_ids[0],
                      pad=cfg.pad_id, fim=FimConfig(prefix_tokens=args.prefix_tokens, suffix_tokens=args.suffix_tokens),
                      canvas=TrainConfig().canvas())
    batches = [data.batch(16, random.Random(f"dgls-noise-levels:{i}")) for i in range(args.batches)]
    caches = [model.encode(b.prompt, b.prompt_mask) for b in batches]
    g = torch.Generator().manual_seed(0)
    print(f"model {args.model}; {16 * args.batches} held-out examples; accuracy over middle positions the noise changed")
    print("| t | written right | copies the noise token | positions |\n|---:|---:|---:|---:|")
    for t in LEVELS:
        right = copied = n = 0
        for b, cache in zip(batches, caches):
            noisy = corrupt(b.target, torch.full((b.target.shape[0],), t), cfg.vocab_size, g)
            pred = model.decode(noisy, cache).argmax(-1)
            changed = b.middle & (noisy != b.target)
            right += int(((pred == b.target) & changed).sum())
            copied += int(((pred == noisy) & changed).sum())
            n += int(changed.sum())
        print(f"| {t:.2f} | {right / max(n, 1):.3f} | {copied / max(n, 1):.3f} | {n} |")


if __name__ == "__main__":
    main()
