"""Finding a checkpoint directory, without loading anything heavy (the server uses this too)."""

from __future__ import annotations

import os
import re
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TUNED_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$")  # one path component: never escapes models_dir()


class CheckpointError(ValueError):
    """A checkpoint dgls cannot load; the message is one line."""


def models_dir() -> Path:
    """Where `dgls tune` saves models: $XDG_DATA_HOME/dgls/models, else ~/.local/share/dgls/models."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dgls" / "models"


def tuned(name: str) -> Path | None:
    """The directory of a model `dgls tune` saved under `name`, when there is one."""
    if not TUNED_NAME.match(name):
        return None
    directory = models_dir() / name
    return directory if (directory / "adapter.json").is_file() else None


def resolve(path_or_id: str | Path) -> Path:
    """A checkpoint directory, from (in this order) a path, a model name `dgls tune` saved, or a
    model id in the local Hugging Face cache."""
    p = Path(path_or_id).expanduser()
    if p.is_file():
        if p.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{p}: refusing a pickle checkpoint; dgls loads safetensors only")
        raise CheckpointError(f"{p} is a file; give the checkpoint directory (with config.json)")
    if p.is_dir():
        return p
    text = str(path_or_id)
    named = tuned(text)
    if named is not None:
        return named
    if REPO_ID.match(text):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            pass
    raise CheckpointError(
        f"model {text!r} is neither a directory nor in the local Hugging Face cache (dgls never downloads), "
        f"nor a model `dgls tune` saved in {models_dir()}"
    )
