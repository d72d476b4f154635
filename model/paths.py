"""Finding a checkpoint directory, without loading anything heavy (the server uses this too)."""

from __future__ import annotations

import re
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint dgls cannot load; the message is one line."""


def resolve(path_or_id: str | Path) -> Path:
    """A checkpoint directory, from a path or a model id in the local Hugging Face cache."""
    p = Path(path_or_id).expanduser()
    if p.is_file():
        if p.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{p}: refusing a pickle checkpoint; dgls loads safetensors only")
        raise CheckpointError(f"{p} is a file; give the checkpoint directory (with config.json)")
    if p.is_dir():
        return p
    text = str(path_or_id)
    if REPO_ID.match(text):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            pass
    raise CheckpointError(
        f"model {text!r} is neither a directory nor in the local Hugging Face cache (dgls never downloads)"
    )
