"""Talking to the worker from the editor-facing side (no torch here).

`WorkerClient` connects to the worker for a (model, device, dtype), starting one when none
runs (under a lock, so two servers starting at once start one worker), and multiplexes
requests over one connection by id. When the worker dies, pending requests fail with
`WorkerUnavailable` and the next request starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import runtime, wire
from .model.config import PROMPT_CACHE_MIB
from .model.api import InfillCall, InfillResult
from .model.messages import MessageError, decode_result, encode_call

log = logging.getLogger(__name__)


# A cancel is best effort: a worker that has not read it by then is wedged, and the
# request's own bounded wait gives up on it.
CANCEL_SEND_S = 1.0

class WorkerUnavailable(RuntimeError):
    """No worker could be reached or started; the message is one line."""


class WorkerError(RuntimeError):
    """The worker answered a request with an error; the message is one line."""


@dataclass(frozen=True)
class WorkerSpec:
    model: str
    device: str | None = None
    dtype: str = "auto"
    idle_timeout: float = runtime.WORKER_IDLE_S
    prompt_cache_mib: float = PROMPT_CACHE_MIB

    @property
    def key(self) -> str:
        return runtime.worker_key(self.model, self.device, self.dtype)

    @property
    def socket(self) -> Path:
        return runtime.socket_path(self.key)

    @property
    def log_file(self) -> Path:
        return self.socket.with_suffix(".log")


class WorkerClient:
    def __init__(self, spec: WorkerSpec, *, spawn: bool = True, start_timeout: float = 60.0):
        self.spec = spec
        self.spawn = spawn
        self.start_timeout = start_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._connect_lock = asyncio.Lock()
        self._read_task: asyncio.Task | None = None
        self._children: list[subprocess.Popen] = []

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            self._reap()
            try:
                try:
                    await self._open()
                except (FileNotFoundError, ConnectionRefusedError):
                    if not self.spawn:
                        raise WorkerUnavailable(f"no worker is running for {self.spec.model}") from None
                    await asyncio.to_thread(self._start_worker)
                    await self._open()
            except (OSError, runtime.RuntimeDirError) as e:
                raise WorkerUnavailable(f"cannot reach the worker: {e}") from None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(str(self.spec.socket))
        self._read_task = asyncio.create_task(self._read_loop(self._reader))

    def _start_worker(self) -> None:
        """Start a worker unless another process just did; wait until its socket answers."""
        sock = self.spec.socket
        with open(sock.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _answers(sock):
                return
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()  # stale: nothing answers there
            with open(self.spec.log_file, "ab") as out:
                cmd = [sys.executable, "-m", "dgls.worker", "--model", self.spec.model, "--socket", str(sock),
                       "--idle-timeout", str(self.spec.idle_timeout), "--dtype", self.spec.dtype,
                       "--prompt-cache-mib", str(self.spec.prompt_cache_mib)]
                if self.spec.device:
                    cmd += ["--device", self.spec.device]
                # Its own session: the worker outlives the editor that started it, and a
                # Ctrl-C in a terminal running `dgls serve` does not reach it.
                child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, close_fds=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self._children.append(child)
            log.info("started worker pid %d for %s", child.pid, self.spec.model)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if _answers(sock):
                    return
                if child.poll() is not None:
                    raise WorkerUnavailable(f"the worker exited at start (status {child.returncode}); see {self.spec.log_file}")
                time.sleep(0.05)
            raise WorkerUnavailable(f"the worker did not start within {self.start_timeout:.0f} s; see {self.spec.log_file}")

    def _reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        error: Exception = WorkerUnavailable("the worker closed the connection")
        try:
            while True:
                message = await wire.read(reader)
                if message is None:
                    break
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (wire.FrameError, ConnectionError) as e:
            error = WorkerUnavailable(f"worker connection lost: {e}")
        finally:
            # Only if this is still the current connection: a reconnect may already have
            # replaced it, and its requests are not this loop's to fail.
            if self._reader is reader:
                if self._writer is not None:
                    self._writer.close()
                self._writer = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(error)
                self._pending.clear()

    async def send(self, op: str, **params) -> tuple[int, asyncio.Future]:
        """Send a request; returns its id and a future of the worker's reply."""
        await self.connect()
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self._writer.write(wire.encode({"id": rid, "op": op, **params}))
            await self._writer.drain()
        except (ConnectionError, AttributeError) as e:
            self._pending.pop(rid, None)
            raise WorkerUnavailable(f"worker connection lost: {e}") from None
        return rid, future

    async def request(self, op: str, **params) -> dict:
        _, future = await self.send(op, **params)
        return unwrap(await future)

    async def cancel(self, rid: int) -> None:
        """Stop request `rid` at its next denoising step (its reply then says cancelled)."""
        if self.connected:
            with contextlib.suppress(WorkerUnavailable, ConnectionError, asyncio.TimeoutError):
                _, reply = await asyncio.wait_for(self.send("cancel", target=rid), CANCEL_SEND_S)
                reply.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it

    async def infill(self, call: InfillCall) -> tuple[int, asyncio.Future]:
        """Send an infill request; its reply's future gives `infill_result`'s input."""
        return await self.send("infill", **encode_call(call))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._read_task is not None:
            self._read_task.cancel()


def unwrap(reply: dict) -> dict | None:
    """The result of a reply, None when the request was cancelled; WorkerError on failure."""
    if not reply.get("ok"):
        raise WorkerError(str(reply.get("error") or "the worker gave no reason"))
    if reply.get("cancelled"):
        return None
    return reply.get("result")


def infill_result(reply: dict) -> InfillResult | None:
    """An infill reply's result, None when the request was cancelled; WorkerError when it
    failed or came in another shape (a worker of another dgls version)."""
    data = unwrap(reply)
    if data is None:
        return None
    try:
        return decode_result(data)
    except MessageError as e:
        raise WorkerError(f"unexpected reply from the worker ({e})") from None


def _answers(sock: Path) -> bool:
    import socket as sk

    s = sk.socket(sk.AF_UNIX)
    s.settimeout(1.0)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def is_running(spec: WorkerSpec) -> bool:
    try:
        return spec.socket.exists() and _answers(spec.socket)
    except runtime.RuntimeDirError:
        return False

