"""A small real corpus and tokenizer for the training-pipeline tests: a few standard-library
modules of the running interpreter, built by the real corpus builder."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest
import torch

from dgls.model.training import bpe, corpus

MODULES = ["json", "textwrap.py", "string.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py",
           "glob.py", "shlex.py", "difflib.py", "dataclasses.py", "graphlib.py"]
HELDOUT = ("stdlib/colorsys", "stdlib/graphlib")


def build_corpus(directory: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    source = directory / "stdlib"
    for name in MODULES:
        if (stdlib / name).is_dir():
            shutil.copytree(stdlib / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy(stdlib / name, source / name)
    out = directory / "corpus"
    corpus.build(out, corpus.CorpusConfig(site_packages=False, heldout=HELDOUT, heldout_fraction=0.0),
                 stdlib_root=source)
    return out


def train_tokenizer(corpus_dir: Path, path: Path, vocab_size: int = 512) -> Path:
    texts = [rec["text"] for rec in corpus.read_split(corpus_dir, "train")]
    bpe.train_tokenizer(texts, vocab_size, "fim").save(str(path))
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a loaded 2-core machine
    OpenMP's spinning threads make each step tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
