"""The local backend: the model worker on this machine (dgls/worker.py), over its socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from ..model.api import InfillCall, InfillResult
from ..options import NO_MODEL_HINT, Options, model_path
from ..worker_client import WorkerClient, WorkerError, WorkerSpec, WorkerUnavailable, infill_result
from .base import BackendError, BackendUnavailable, Cancel, NoModel, read_tokenizer


class LocalBackend:
    """The worker for the configured model, and the model's tokenizer for prompt windows
    (loaded here without torch: windows are cut in the server)."""

    kind = "local"

    def __init__(self, options: Options, *, spawn: bool = True):
        """`spawn` False: only a worker already running serves (the CLI then runs the model itself)."""
        spec = self.spec_for(options)
        if spec is None:
            raise NoModel(f"no model configured: {NO_MODEL_HINT}")
        self.options = options
        self.model = spec.model
        self.spec = spec
        self.client = WorkerClient(self.spec, spawn=spawn)
        self._tokenizer, _ = read_tokenizer(spec.model, "model")

    @staticmethod
    def spec_for(options: Options) -> WorkerSpec | None:
        model = model_path(options)
        return None if model is None else WorkerSpec(model, options.device, options.dtype, options.worker_idle_s,
                                                     options.prompt_cache_mib)

    @classmethod
    def key_for(cls, options: Options) -> tuple:
        return ("local", cls.spec_for(options))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text))

    async def infill(self, call: InfillCall, cancel: Cancel) -> InfillResult | None:
        """The worker stops at its next denoising step when `cancel` is set."""
        grace = self.options.worker_grace_ms / 1e3
        try:
            try:  # a worker that stopped reading fills the socket buffer: sending waits too
                rid, reply = await asyncio.wait_for(self.client.infill(call), grace)
            except asyncio.TimeoutError:
                await self.client.close()
                raise WorkerUnavailable(f"the worker did not take the request within {grace:g} s") from None
            cancel.on_cancel(lambda: self.client.cancel(rid))
            return infill_result(await self._reply_within(rid, reply, call.budget_ms))
        except WorkerUnavailable as e:
            raise BackendUnavailable(str(e)) from None
        except WorkerError as e:
            raise BackendError(str(e)) from None

    async def _reply_within(self, rid: int, reply: asyncio.Future, budget_ms: float | None) -> dict:
        """The worker's reply, or WorkerUnavailable when a wedged worker (stopped, stuck, on a
        machine that froze) gives neither it within the budget plus `worker_grace_ms` nor an
        answer to `health` within `worker_grace_ms`. A worker that answers `health` is loading
        its model or busy with other editors' requests (it keeps budgets itself): wait on."""
        grace = self.options.worker_grace_ms / 1e3
        wait = (budget_ms or 0) / 1e3 + grace
        started = time.monotonic()
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(reply), wait)
            except asyncio.TimeoutError:
                pass
            try:
                await self._ask("health")
            except (WorkerUnavailable, WorkerError):
                reply.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late reply is dropped
                # Drop the connection: the next request reconnects (or starts a new worker)
                # instead of queueing behind this one.
                await self.client.close()
                raise WorkerUnavailable(f"the worker did not answer within {time.monotonic() - started:.1f} s") from None
            wait = grace

    async def _ask(self, op: str) -> dict:
        """A status question (health, info): the worker answers these from its event loop,
        while loading or denoising too, so one unanswered within the grace means it is wedged."""
        grace = self.options.worker_grace_ms / 1e3
        try:
            return await asyncio.wait_for(self.client.request(op), grace)
        except asyncio.TimeoutError:
            raise WorkerUnavailable(f"the worker did not answer within {grace:g} s") from None

    async def refresh(self, status) -> None:
        """The worker's state, device and pid into `status`; quiet when it is gone."""
        with contextlib.suppress(WorkerUnavailable, WorkerError, KeyError, TypeError):
            health = await self._ask("health")
            info = await self._ask("info")
            status.state = health["state"] if health["state"] != "failed" else "unavailable"
            status.message = health["error"]
            status.device, status.worker_pid = info.get("device"), health["pid"]
            status.prompt_cache = info.get("prompt_cache")

    async def prompt_store(self) -> dict | None:
        """The worker's prompt store counts (entries, MiB, tokens encoded and reused); None
        when it is gone or does not say."""
        with contextlib.suppress(WorkerUnavailable, WorkerError, KeyError, TypeError):
            return (await self._ask("info")).get("prompt_cache")
        return None

    async def warm_up(self, status, progress) -> None:
        """Start (or reach) the worker and follow its model load, reporting progress."""
        try:
            await self.client.connect()
            progress.begin(f"Loading {Path(self.model).name}")
            while True:
                health = await self._ask("health")
                if health["state"] == "loading":
                    status.state = "loading"
                    done, total = health["progress"]
                    progress.report(done, total)
                    await asyncio.sleep(0.2)
                    continue
                break
            await self.refresh(status)
            if health["state"] == "failed":
                progress.fail(health["error"])
                return
            progress.end(f"{Path(self.model).name} ready on {status.device}")
        except (WorkerUnavailable, WorkerError, KeyError, TypeError) as e:
            status.state, status.message = "unavailable", str(e)
            progress.fail(str(e))

    def describe(self) -> dict:
        return {"kind": "local", "model": self.model, "partial_on_budget": True}

    async def close(self) -> None:
        await self.client.close()
