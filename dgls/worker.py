"""The worker: one long-lived process that holds the model and serves every editor's server.

    python -m dgls.worker --model PATH --socket PATH [--idle-timeout S] [--device D] [--dtype T]

It binds its Unix socket (0600, in the 0700 runtime directory) before loading the model, so
clients can watch the load's progress through `health`. Requests run on one inference thread;
requests that queue up while it is busy are batched into the same denoising steps (same
canvas length, no seed). A `cancel` or a closed connection stops a request at the next
denoising step, and a request's latency budget returns the best canvas so far. The
process exits after `idle_timeout` seconds without connections or work.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import runtime, wire
from .model.api import InfillCall
from .model.config import PROMPT_CACHE_MIB  # no torch there
from .model.messages import MessageError, decode_call, encode_result

log = logging.getLogger("dgls.worker")

MAX_BATCH_CANVASES = 32  # queued requests are batched up to this many canvases per denoising step
FAILED_LINGER_S = 5.0  # a worker whose model failed to load answers that briefly, then exits


@dataclass
class Job:
    conn: int
    id: int
    call: InfillCall
    cancel: threading.Event = field(default_factory=threading.Event)
    reply: asyncio.Future | None = None


MIN_OOM_CANVAS = 8  # out of memory, the canvas is halved down to this many tokens


def out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                            or "not enough memory" in text or "bad_alloc" in text)


def free_memory() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Worker:
    def __init__(self, model: str, socket_path: Path, *, device: str | None, dtype: str, idle_timeout: float,
                 prompt_cache_mib: float = PROMPT_CACHE_MIB):
        self.model_arg = model
        self.socket_path = socket_path
        self.device = device
        self.dtype = dtype
        self.idle_timeout = idle_timeout
        self.prompt_cache_mib = prompt_cache_mib
        self.state = "loading"  # loading | ready | failed
        self.progress = (0, 0)
        self.error: str | None = None
        self.engine = None
        self.warm_up_ms: dict[int, float] = {}  # canvas length -> ms of its warm-up pass
        self.ready = asyncio.Event()
        self.pending: deque[Job] = deque()
        self.work = asyncio.Event()
        self.jobs: dict[tuple[int, int], Job] = {}
        self.connections = 0
        self.last_active = time.monotonic()
        self.started = time.monotonic()
        self.served = 0
        self.batches = 0
        self.largest_batch = 0
        self.cancelled = 0  # requests stopped by a cancel before their last step
        self.last_latency_ms: float | None = None
        self.stop = asyncio.Event()
        self.orphaned = False
        self.loaded_at = time.monotonic()
        self.socket_inode: int | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgls-infer")
        self._next_conn = 0

    # --- lifecycle

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        self._server = await self._bind()
        loop.run_in_executor(self.pool, self._load)
        tasks = [asyncio.create_task(self._schedule()), asyncio.create_task(self._watch_idle())]
        try:
            await self.stop.wait()
        finally:
            self._server.close()
            for task in tasks:
                task.cancel()
            for job in self.jobs.values():
                job.cancel.set()
            try:
                if self._owns_socket():
                    self.socket_path.unlink()
            except OSError:
                pass
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def _bind(self) -> asyncio.AbstractServer:
        path = self.socket_path
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # stale: its worker is gone
            else:
                probe.close()
                raise SystemExit(f"another worker already serves {path}")
        old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            server = await asyncio.start_unix_server(self._serve, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.socket_inode = path.stat().st_ino
        log.info("listening on %s (pid %d)", path, os.getpid())
        return server

    def _owns_socket(self) -> bool:
        try:
            return self.socket_path.stat().st_ino == self.socket_inode
        except OSError:
            return False

    async def _check_socket(self) -> None:
        """A deleted socket file is bound again (under the lock clients take to start a
        worker, so a client does not start a second one meanwhile); one replaced by another
        worker's makes this one leave once its work is done, its clients reconnecting there."""
        if self._owns_socket() or self.orphaned:
            return
        with open(self.socket_path.with_suffix(".lock"), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # a client is starting a worker: look again next time
            if self.socket_path.exists():
                log.warning("another worker took over %s; exiting when idle", self.socket_path)
                self.orphaned = True
                self._server.close()
                return
            self._server.close()
            self._server = await self._bind()
            log.warning("socket %s was deleted; bound it again", self.socket_path)

    def _load(self) -> None:
        from .model.config import CANVAS
        from .model.engine import Engine  # the worker is where torch loads
        from .model.loader import CheckpointError

        def progress(done: int, total: int) -> None:
            self.progress = (done, total)

        try:
            engine = Engine.load(self.model_arg, dtype=self.dtype, device=self.device, progress=progress,
                                 prompt_cache_mib=self.prompt_cache_mib)
            # The first request would pay for first-call allocations; pay them before "ready".
            # A warm-up that fails (out of memory at the block canvas, say) leaves a usable model.
            try:
                self.warm_up_ms = engine.warm_up((CANVAS.line, CANVAS.block))
                engine.prompts.clear()  # its statistics count users' requests only
            except Exception as e:  # noqa: BLE001 - logged; requests report their own errors
                log.warning("warm-up failed, serving cold: %s", f"{type(e).__name__}: {e}".splitlines()[0])
        except CheckpointError as e:
            self.error, self.state = str(e), "failed"
        except Exception as e:  # noqa: BLE001 - any load failure is reported, not raised
            log.exception("model load failed")
            self.error, self.state = f"model load failed: {type(e).__name__}: {e}".splitlines()[0], "failed"
        else:
            self.engine, self.state = engine, "ready"
            log.info("model ready: %s on %s (warm-up %s ms)", engine.loaded.path, engine.model.device,
                     {L: round(ms) for L, ms in self.warm_up_ms.items()})
        finally:
            self.last_active = self.loaded_at = time.monotonic()
            self._call_soon(self.ready.set)

    def _call_soon(self, fn) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # loop closed during shutdown
            pass

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            idle = time.monotonic() - self.last_active
            busy = self.connections or self.jobs
            # Counted from the failure, not from the last request: editors that keep asking
            # must not keep a failed worker alive (the next one loads the file afresh).
            if self.state == "failed" and time.monotonic() - self.loaded_at > FAILED_LINGER_S and not self.jobs:
                log.info("exiting: model failed to load")
                self.stop.set()
            try:
                await self._check_socket()
            except OSError as e:
                log.warning("cannot check or rebind the socket: %s", e)
            if self.orphaned and not self.jobs:
                self.stop.set()
            if not busy and idle > self.idle_timeout:
                log.info("exiting after %.0f s idle", idle)
                self.stop.set()

    # --- connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_conn += 1
        conn = self._next_conn
        self.connections += 1
        self.last_active = time.monotonic()
        send_lock = asyncio.Lock()

        async def send(message: dict) -> None:
            async with send_lock:
                try:
                    writer.write(wire.encode(message))
                    await writer.drain()
                except (ConnectionError, RuntimeError):
                    pass  # the client left; its jobs are cancelled below

        try:
            while True:
                try:
                    message = await wire.read(reader)
                except wire.FrameError as e:
                    await send({"id": None, "ok": False, "error": str(e)})
                    break
                except ConnectionError:
                    break
                if message is None:
                    break
                self.last_active = time.monotonic()
                await self._dispatch(conn, message, send)
        finally:
            self.connections -= 1
            self.last_active = time.monotonic()
            for (c, _), job in list(self.jobs.items()):
                if c == conn:
                    job.cancel.set()
            writer.close()

    async def _dispatch(self, conn: int, message: dict, send) -> None:
        rid, op = message.get("id"), message.get("op")
        if not isinstance(rid, int) or isinstance(rid, bool):
            await send({"id": None, "ok": False, "error": "request id must be an integer"})
            return
        if op == "health":
            await send({"id": rid, "ok": True, "result": self.health()})
        elif op == "info":
            await send({"id": rid, "ok": True, "result": self.info()})
        elif op == "cancel":
            target = message.get("target")
            if not isinstance(target, int) or isinstance(target, bool):
                await send({"id": rid, "ok": False, "error": "cancel target must be an integer request id"})
                return
            job = self.jobs.get((conn, target))
            if job is not None:
                job.cancel.set()
            await send({"id": rid, "ok": True, "result": {"cancelled": job is not None}})
        elif op == "infill":
            try:
                call = decode_call(message)
            except MessageError as e:
                await send({"id": rid, "ok": False, "error": f"bad infill request: {e}"})
                return
            if (conn, rid) in self.jobs:
                await send({"id": rid, "ok": False, "error": f"request id {rid} is already running"})
                return
            job = Job(conn, rid, call)
            self.jobs[(conn, rid)] = job
            asyncio.create_task(self._answer(job, send))
        else:
            await send({"id": rid, "ok": False, "error": f"unknown op {op!r}"})

    async def _answer(self, job: Job, send) -> None:
        job.reply = asyncio.get_running_loop().create_future()
        self.pending.append(job)
        self.work.set()
        try:
            await send(await job.reply)
        finally:
            self.jobs.pop((job.conn, job.id), None)
            self.last_active = time.monotonic()

    # --- inference

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self.work.clear()
                await self.work.wait()
            await self.ready.wait()
            job = self.pending.popleft()
            if self.state != "ready":
                job.reply.set_result({"id": job.id, "ok": False, "error": self.error})
                continue
            if job.cancel.is_set():
                job.reply.set_result({"id": job.id, "ok": True, "result": None, "cancelled": True})
                continue
            batch = [job] + self._companions(job)
            replies = await loop.run_in_executor(self.pool, self._infer, batch)
            for j, reply in zip(batch, replies):
                if not j.reply.done():
                    j.reply.set_result(reply)

    def _companions(self, first: Job) -> list[Job]:
        """Queued requests that can share `first`'s denoising steps: same canvas length, no
        seed (a seeded request runs alone, so its result depends on its seed only)."""
        if first.call.seed is not None:
            return []
        chosen, canvases = [], first.call.n
        for job in list(self.pending):
            c = job.call
            if (c.seed is None and c.canvas_length == first.call.canvas_length
                    and not job.cancel.is_set() and canvases + c.n <= MAX_BATCH_CANVASES):
                self.pending.remove(job)
                chosen.append(job)
                canvases += c.n
        return chosen

    def _infer(self, batch: list[Job]) -> list[dict]:
        from .model.engine import BatchItem, EngineError

        t0 = time.perf_counter()
        try:
            if len(batch) == 1:
                (job,) = batch
                results = [self._infer_one(job)]
            else:
                items = [BatchItem(j.call.request, j.call.n, j.call.budget_ms, j.cancel.is_set) for j in batch]
                try:
                    results = self.engine.infill_many(items, canvas_length=batch[0].call.canvas_length)
                except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
                    if not out_of_memory(e):
                        raise
                    free_memory()
                    log.warning("out of memory for a batch of %d requests; running them one by one", len(batch))
                    results = [self._infer_one(j) for j in batch]
        except EngineError as e:
            return [{"id": j.id, "ok": False, "error": str(e)} for j in batch]
        except Exception as e:  # noqa: BLE001 - out of memory even at the smallest size
            if not out_of_memory(e):
                log.exception("infill failed")
                error = f"internal error: {type(e).__name__}: {e}".splitlines()[0]
                return [{"id": j.id, "ok": False, "error": error} for j in batch]
            free_memory()
            error = f"out of memory even for 1 candidate of {MIN_OOM_CANVAS} tokens on {self.device or 'the default device'}"
            return [{"id": j.id, "ok": False, "error": error} for j in batch]
        self.served += len(batch)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        self.cancelled += sum(j.cancel.is_set() for j in batch)
        return [{"id": j.id, "ok": True, "result": encode_result(r), "cancelled": j.cancel.is_set()}
                for j, r in zip(batch, results)]

    def _infer_one(self, job: Job):
        """One request; out of memory, retried with half the candidates down to one, then
        half the canvas down to MIN_OOM_CANVAS tokens (the result's note says what it got)."""
        c = job.call
        n, length = c.n, c.canvas_length or self.engine.cfg.canvas_length
        asked = (n, length)
        while True:
            try:
                result = self.engine.infill(c.request, n=n, canvas_length=length, seed=c.seed, budget_ms=c.budget_ms,
                                            on_step=lambda _: job.cancel.is_set())
            except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
                if not out_of_memory(e) or job.cancel.is_set() or (n == 1 and length <= MIN_OOM_CANVAS):
                    raise
                free_memory()
                n, length = (n // 2, length) if n > 1 else (n, max(MIN_OOM_CANVAS, length // 2))
                log.warning("out of memory; retrying with %d candidates of %d tokens", n, length)
                continue
            if (n, length) != asked:
                note = f"out of memory: gave {n} of {asked[0]} candidates, canvas {length} of {asked[1]} tokens"
                return dataclasses.replace(result, note=note)
            return result

    # --- status

    def health(self) -> dict:
        return {
            "state": self.state, "progress": list(self.progress), "error": self.error, "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1), "served": self.served,
            "queued": len(self.pending), "active": len(self.jobs), "batches": self.batches, "largest_batch": self.largest_batch,
            "cancelled": self.cancelled, "last_latency_ms": self.last_latency_ms,
        }

    def info(self) -> dict:
        out = {"model": self.model_arg, "state": self.state}
        if self.engine is not None:
            cfg = self.engine.cfg
            out.update(path=str(self.engine.loaded.path), family=self.engine.loaded.family,
                       device=str(self.engine.model.device), dtype=str(self.engine.model.dtype).removeprefix("torch."),
                       parameters=sum(p.numel() for p in self.engine.model.parameters()),
                       canvas_length=cfg.canvas_length, vocab_size=cfg.vocab_size, layers=cfg.num_layers,
                       experts=cfg.num_experts, top_k=cfg.top_k,
                       warm_up_ms={str(L): round(ms, 1) for L, ms in self.warm_up_ms.items()},
                       prompt_cache=self.engine.prompts.stats())
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dgls worker", description="Serve one model to dgls servers over a Unix socket.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--socket", required=True, type=Path)
    ap.add_argument("--idle-timeout", type=float, default=runtime.WORKER_IDLE_S, help="exit after this many idle seconds")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--prompt-cache-mib", type=float, default=PROMPT_CACHE_MIB,
                    help="memory for recent prompts' encodings (0: off)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def run() -> None:
        worker = Worker(args.model, args.socket, device=args.device, dtype=args.dtype, idle_timeout=args.idle_timeout,
                        prompt_cache_mib=args.prompt_cache_mib)
        await worker.run()

    try:
        asyncio.run(run())
    except SystemExit as e:
        log.info("%s", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
