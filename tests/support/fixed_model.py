"""A real model trained (in seconds, on CPU) to always write one fixed middle.

End-to-end tests of the server and worker need suggestions that survive post-processing
and ranking, which random weights never give. This model is real: real weights, trained
with the diffusion objective, served by the real worker; it has just learned one answer.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from dgls.model import loader, random_checkpoint
from dgls.model.api import InfillRequest
from dgls.model.prompt import build_prompt
from dgls.model.tokenizer import Tokenizer

# Prompts like the server's: FIM prompts around a cursor in real source, some of it non-ASCII.
SOURCES = sorted((Path(__file__).resolve().parents[2] / "dgls").glob("*.py"))
EXTRA = ["s = \"漢字🎉\"\n", "naïve = 'café'\n", "# ✓ done\n", "x = f(\"ünï\", )\n", "x = f(\"漢字🎉\", )\n"]


def sample_prompt(tok: Tokenizer, rng: random.Random, bos: int | None) -> list[int]:
    text = SOURCES[rng.randrange(len(SOURCES))].read_text()
    start = rng.randrange(max(1, len(text) - 400))
    snippet = text[start:start + rng.randint(20, 400)]
    if rng.random() < 0.3:
        snippet = rng.choice(EXTRA) + snippet + rng.choice(EXTRA)
    cut = rng.randint(0, len(snippet))
    path = rng.choice(["", "/project/app.py", "src/m.py"])
    return build_prompt("fim", tok, InfillRequest(snippet[:cut], snippet[cut:], "python", path), bos)

# Valid code after `return `, `x = `, `f(`; the first that is one token of the test tokenizer
# is the answer (one token is quick to learn).
ANSWERS = ("self", "model", "config", "None")
CANVAS = 16  # the e2e tests set lineCanvas/blockCanvas to this


def train_fixed_model(directory: Path, *, steps: int = 800, seed: int = 0) -> Path:
    random_checkpoint.write(directory, "test-tiny", seed=seed)
    model, _ = loader.load_network(directory, dtype="float32", device="cpu")
    tok = Tokenizer.from_file(directory / "tokenizer.json")
    cfg = model.cfg
    answer = next(a for a in ANSWERS if len(tok.encode(a)) == 1)
    target = tok.encode(answer) + [cfg.eos_ids[0]]
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        L, B = CANVAS, 8
        prompt = torch.tensor([sample_prompt(tok, rng, cfg.bos_id)])
        clean = torch.tensor(target + [cfg.pad_id] * (L - len(target))).expand(B, L)
        noisy = torch.rand(B, L, generator=gen) < torch.rand(B, 1, generator=gen)
        canvas = torch.where(noisy, torch.randint(0, cfg.vocab_size, (B, L), generator=gen), clean)
        cache = model.encode(prompt)
        sc = None
        if rng.random() < 0.5:  # self-conditioning, as the sampler uses it after its first step
            with torch.no_grad():
                sc = model.decode(canvas, cache).detach()
        logits = model.decode(canvas, cache, sc)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), clean.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    loader.save(model, directory)
    (directory / "ANSWER").write_text(answer)
    return directory


def answer_of(directory: Path) -> str:
    return (directory / "ANSWER").read_text()
