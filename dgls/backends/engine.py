"""The engine in this process: the CLI's backend when no worker runs, and benchmarks'.
The server never uses it, so it has no `refresh`/`warm_up` (status and start-up are the
server's).

The engine is loaded by the caller (the CLI's `load_engine`), so this module imports no torch.
It runs on the caller's thread (see `infill`); the worker is where requests overlap.
"""

from __future__ import annotations

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
        # On this thread, the one that loaded the engine, although it holds up the event loop:
        # torch on a second thread starts a second OpenMP team, and libgomp, seeing more
        # threads than cores, then stops spinning between parallel regions, which made every
        # denoising step 1.6x slower on 2 cores (bench/bench_torch_thread.py, bench/RESULTS.md).
        # Nothing can cancel it while it runs, then: a cancel set before the call answers None
        # without encoding. The CLI, its one user, asks once and waits.
        if cancel.is_set():
            return None
        return self.engine.infill(call.request, n=call.n, canvas_length=call.canvas_length, seed=call.seed,
                                  budget_ms=call.budget_ms)

    def describe(self) -> dict:
        return {"kind": "engine", "model": self.model, "partial_on_budget": True}

    async def close(self) -> None:
        pass
