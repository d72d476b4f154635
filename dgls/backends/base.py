"""What every backend raises, and what the language server and the CLI rely on.

A backend turns a prepared request into an `InfillResult` (or None when cancelled):
`LocalBackend` through the worker on this machine, `VllmBackend` through a vLLM server.
Both take the same post-processing and ranking afterwards (dgls/complete.py `finish`).
Errors are one line each, fit for the editor's log.
"""

from __future__ import annotations

from pathlib import Path


class BackendError(RuntimeError):
    """The request failed; the message is one line. No suggestion, the server goes on."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached or is failing (connection, timeout, 5xx, a dead
    worker): the kind of failure a fallback to the local worker is for."""


class NoModel(BackendError):
    """Nothing is configured to run: no model, or no remote URL."""


def read_tokenizer(where: str, what: str):
    """(tokenizer, its directory) from a checkpoint directory, a local HF cache id, or a
    tokenizer.json file; NoModel in one line when it cannot be read, so a wrong path is
    said once instead of failing every keystroke. torch-free: the server cuts windows with it."""
    from ..model.tokenizer import Tokenizer
    from ..model.paths import resolve

    path = Path(where).expanduser()
    try:
        directory = path.parent if path.is_file() else Path(resolve(where))
        return Tokenizer.from_file(path if path.is_file() else directory / "tokenizer.json"), directory
    except Exception as e:  # noqa: BLE001 - CheckpointError, OSError; the tokenizers library raises plain Exception
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise NoModel(f"{what} {where}: cannot read its tokenizer ({first})") from None
