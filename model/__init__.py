"""dgls.model: DiffusionGemma's network, sampler, checkpoint loader and tokenizer."""

from pathlib import Path


def weights_dir() -> Path:
    """Where shipped model weights live inside the installed package."""
    return Path(__file__).resolve().parent / "weights"
