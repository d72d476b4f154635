"""The one interface behind which a model runs, what every backend raises, and the
cancellation handle a request carries.

A backend turns an `InfillCall` into an `InfillResult` (or None when cancelled): `LocalBackend`
through the worker on this machine, `VllmBackend` through a vLLM server, `EngineBackend` with
the engine in this process (the CLI when no worker runs). The language server and the CLI
use the same interface and the same post-processing afterwards (dgls/complete.py `finish`).
Errors are one line each, fit for the editor's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from ..model.api import InfillCall, InfillResult


class Cancel:
    """A request's cancellation handle. Its owner calls `cancel()` (a newer keystroke, a
    closed document, the client's $/cancelRequest); a backend polls `is_set()`, awaits
    `wait()`, or registers with `on_cancel` what stops its work elsewhere (the worker's
    denoising loop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._stops: list[Callable[[], Awaitable[None]]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        """Cancelled from now on, without waiting for the backend to stop (`cancel` does)."""
        self._event.set()

    def on_cancel(self, stop: Callable[[], Awaitable[None]]) -> None:
        if self.is_set():  # cancelled while the request was being sent
            asyncio.ensure_future(stop())
        else:
            self._stops.append(stop)

    async def cancel(self) -> None:
        self._event.set()
        stops, self._stops = self._stops, []
        for stop in stops:
            await stop()


class Backend(Protocol):
    kind: str  # "local" | "vllm" | "engine"
    model: str  # what it runs: a checkpoint path or a served model's name

    def count_tokens(self, text: str) -> int: ...

    async def infill(self, call: InfillCall, cancel: Cancel) -> InfillResult | None:
        """The candidates, None when `cancel` was set first. A budget that runs out keeps the
        best canvas so far where the backend can (`describe()["partial_on_budget"]`)."""

    # What the language server also asks of its backends (local, vllm; not the CLI's engine):

    async def refresh(self, status) -> None:
        """The backend's state, device and news into a `service.Status`."""

    async def warm_up(self, status, progress) -> None:
        """Reach the model at start-up, reporting progress."""

    def describe(self) -> dict: ...

    async def close(self) -> None: ...


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
