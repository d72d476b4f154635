"""The engine in this process: the CLI's backend when no worker runs, and benchmarks'.
The server never uses it, so it has no `refresh`/`warm_up` (status and start-up are the
server's).

The engine is loaded by the caller (the CLI's `load_engine`), so this module imports no torch.
A cancel stops the denoising at its next step, as in the worker.
"""

from __future__ import annotations

import asyncio

from ..model.api import InfillCall, InfillResult
from .base import Cancel


class EngineBackend:
    kind = "engine"

    def __init__(self, engine):
        self.engine = engine
        self.model = str(engine.loaded.path)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    async def infill(self, call: InfillCall, cancel: Cancel) -> InfillResult | None:
        # On a thread: the event loop stays free to take the cancel while the model runs.
        result = await asyncio.to_thread(
            self.engine.infill, call.request, n=call.n, canvas_length=call.canvas_length, seed=call.seed,
            budget_ms=call.budget_ms, on_step=lambda _: cancel.is_set())
        return None if cancel.is_set() else result

    def describe(self) -> dict:
        return {"kind": "engine", "model": self.model, "partial_on_budget": True}

    async def close(self) -> None:
        pass
