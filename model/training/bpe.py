"""Train the byte-level BPE tokenizer (tokenizer.json) every dgls model uses.

The first ids are fixed: <pad>=0, <eos>=1, <bos>=2, <unk>=3 (the config's pad/eos/bos), then
the prompt family's control tokens (FIM: <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>).
Byte-level, so any text round-trips and <unk> is never produced.

    python -m dgls.model.training.bpe CORPUS_DIR OUT/tokenizer.json [--config dgls-tiny]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from ..config import CONFIGS, from_name
from .corpus import CorpusError, read_split
from ..dataclass_args import add_arguments, from_arguments, opt
from ..prompt import FAMILIES

BASE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0..3, as the config's pad/eos/bos


def special_tokens(family: str) -> list[str]:
    return BASE_SPECIALS + list(FAMILIES[family][0])


def train_tokenizer(texts: Iterable[str], vocab_size: int, family: str = "fim", *,
                    show_progress: bool = False) -> HFTokenizer:
    tk = HFTokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens(family), show_progress=show_progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    return tk


@dataclass(frozen=True)
class BpeConfig:
    config: str = opt("dgls-tiny", "the model config whose vocab_size the tokenizer fills", choices=sorted(CONFIGS))
    family: str = opt("fim", "prompt family whose control tokens follow the base ones", choices=sorted(FAMILIES))
    max_mib: float = opt(64.0, "text to learn merges from: a seeded sample of the train split")
    seed: int = opt(0, "sample order")


def sample_texts(corpus_dir: Path, max_bytes: int, seed: int) -> Iterator[str]:
    records = read_split(corpus_dir, "train")
    random.Random(seed).shuffle(records)
    used = 0
    for rec in records:
        if used >= max_bytes:
            return
        used += len(rec["text"].encode("utf-8"))
        yield rec["text"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="directory written by `python -m dgls.model.training.corpus`")
    ap.add_argument("out", type=Path, help="tokenizer.json to write")
    add_arguments(ap, BpeConfig)
    args = ap.parse_args(argv)
    cfg = from_arguments(BpeConfig, args)
    try:
        texts = list(sample_texts(args.corpus, int(cfg.max_mib * 2**20), cfg.seed))
    except CorpusError as e:
        print(f"dgls.model.training.bpe: {e}", file=sys.stderr)
        return 2
    vocab = from_name(cfg.config).vocab_size
    print(f"training a {vocab}-token byte-level BPE on {len(texts)} files "
          f"({sum(map(len, texts)) / 2**20:.1f} Mi characters)", file=sys.stderr)
    tk = train_tokenizer(texts, vocab, cfg.family, show_progress=sys.stderr.isatty())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tk.save(str(args.out))
    print(f"{args.out}: {tk.get_vocab_size()} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
