"""The worker process over its real socket: security, protocol errors, cancellation, lifecycle."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
import subprocess
import sys
import time

import msgpack
import pytest

from dgls import runtime
from dgls.model.api import InfillCall, InfillRequest
from dgls.worker_client import WorkerClient, WorkerError, WorkerSpec, WorkerUnavailable, infill_result, unwrap


@pytest.fixture
def rt(tmp_path, monkeypatch):
    directory = tmp_path / "rt"
    monkeypatch.setenv("DGLS_RUNTIME_DIR", str(directory))
    return directory


@pytest.fixture
async def client(rt, random_checkpoint):
    c = WorkerClient(WorkerSpec(str(random_checkpoint), idle_timeout=30))
    yield c
    health = await c.request("health")
    await c.close()
    os.kill(health["pid"], 15)


def raw_call(path, payload: bytes) -> dict | None:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(path))
    s.sendall(payload)
    try:
        size = struct.unpack(">I", s.recv(4))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
        return msgpack.unpackb(data)
    finally:
        s.close()


async def test_socket_and_directory_are_private(client, rt):
    await client.request("health")
    assert stat.S_IMODE(rt.stat().st_mode) == 0o700
    (sock,) = rt.glob("*.sock")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_runtime_dir_open_to_others_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    monkeypatch.setenv("DGLS_RUNTIME_DIR", str(directory))
    with pytest.raises(runtime.RuntimeDirError, match="open to other users"):
        runtime.runtime_dir()


async def test_infill_health_and_info(client, random_checkpoint):
    rid, reply = await client.infill(InfillCall(InfillRequest("x = ", "\n"), n=2, canvas_length=8, budget_ms=None, seed=1))
    result = infill_result(await reply)
    assert len(result.candidates) == 2 and result.canvas_length == 8
    info = await client.request("info")
    assert info["path"] == str(random_checkpoint) and info["family"] == "fim" and info["device"] == "cpu"
    # Before saying ready, the worker ran a real denoising pass at both canvas lengths.
    assert set(info["warm_up_ms"]) == {"32", "128"} and all(ms > 0 for ms in info["warm_up_ms"].values())
    assert (await client.request("health"))["served"] == 1  # the warm-up is not a request served


async def test_the_next_keystroke_reuses_the_prompt_encoding(client):
    """The worker keeps recent prompts' encodings: a request whose prompt extends the last
    one's encodes only the new tokens, and says so in its result and in `info`."""
    prefix = "def area(width, height):\n    return wid"
    first = infill_result((await (await client.infill(InfillCall(
        InfillRequest(prefix, "\n"), n=1, canvas_length=8, budget_ms=None, seed=1)))[1]))
    typed = infill_result((await (await client.infill(InfillCall(
        InfillRequest(prefix + "th", "\n"), n=1, canvas_length=8, budget_ms=None, seed=1)))[1]))
    assert first.reused_tokens == 0  # the warm-up's prompt is not this one
    assert 0 < typed.reused_tokens and typed.prompt_tokens - typed.reused_tokens <= 6  # the last word, the suffix
    store = (await client.request("info"))["prompt_cache"]
    assert store["entries"] == 1  # the typed prompt replaced the one it extended
    assert store["reused_tokens"] == typed.reused_tokens
    assert store["encoded_tokens"] == first.prompt_tokens + typed.prompt_tokens - typed.reused_tokens


async def test_cancel_stops_a_running_request(client):
    await client.request("health")
    rid, reply = await client.infill(InfillCall(InfillRequest("x", ""), n=4, canvas_length=512, budget_ms=None, seed=0))
    await asyncio.sleep(0.3)
    await client.cancel(rid)
    started = time.monotonic()
    assert unwrap(await reply) is None  # answered as cancelled
    assert time.monotonic() - started < 5


async def test_bad_requests_get_one_line_errors_and_the_worker_lives_on(client):
    with pytest.raises(WorkerError, match="unknown op 'explode'"):
        await client.request("explode")
    with pytest.raises(WorkerError, match="n=99 is out of range"):
        await client.request("infill", prefix="x", n=99)
    with pytest.raises(WorkerError, match="prefix must be str"):
        await client.request("infill", prefix=5)
    with pytest.raises(WorkerError, match="cancel target must be an integer"):
        await client.request("cancel", target=[1, 2])
    assert (await client.request("health"))["state"] in ("loading", "ready")


async def test_garbage_frames_close_that_connection_only(client, rt):
    await client.request("health")
    (sock,) = rt.glob("*.sock")
    reply = await asyncio.to_thread(raw_call, sock, struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
    assert reply["ok"] is False and "undecodable frame" in reply["error"]
    reply = await asyncio.to_thread(raw_call, sock, struct.pack(">I", 1 << 30))
    assert reply["ok"] is False and "over the" in reply["error"]
    assert (await client.request("health"))["state"] in ("loading", "ready")


async def test_stale_socket_is_replaced(rt, random_checkpoint):
    spec = WorkerSpec(str(random_checkpoint), idle_timeout=30)
    rt.mkdir(mode=0o700, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(spec.socket))  # a socket file nobody listens on, as a killed worker leaves
    stale.close()
    client = WorkerClient(spec)
    health = await client.request("health")
    await client.close()
    os.kill(health["pid"], 15)


async def test_no_spawn_means_unavailable(rt, random_checkpoint):
    client = WorkerClient(WorkerSpec(str(random_checkpoint)), spawn=False)
    with pytest.raises(WorkerUnavailable, match="no worker is running"):
        await client.request("health")


def test_worker_exits_when_idle(rt, random_checkpoint):
    rt.mkdir(mode=0o700, exist_ok=True)
    sock = rt / "w.sock"
    proc = subprocess.Popen([sys.executable, "-m", "dgls.worker", "--model", str(random_checkpoint),
                             "--socket", str(sock), "--idle-timeout", "1"])
    assert proc.wait(timeout=60) == 0
    assert not sock.exists()


async def test_a_model_that_fails_to_load_is_reported(rt, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    client = WorkerClient(WorkerSpec(str(broken), idle_timeout=30))
    for _ in range(100):
        health = await client.request("health")
        if health["state"] != "loading":
            break
        await asyncio.sleep(0.05)
    assert health["state"] == "failed" and "unsupported model_type None" in health["error"]
    with pytest.raises(WorkerError, match="unsupported model_type"):
        _, reply = await client.infill(InfillCall(InfillRequest("x", ""), n=1, canvas_length=4, budget_ms=None, seed=0))
        unwrap(await reply)
    await client.close()


async def test_requests_queued_while_busy_share_denoising_steps(client):
    """Three requests sent together: those queued while the worker is busy run as one batch
    (fewer batches than requests), and every request gets its own answer."""
    while (await client.request("health"))["state"] == "loading":
        await asyncio.sleep(0.05)
    sent = [await client.infill(InfillCall(InfillRequest(f"v{i} = ", "\n"), n=2, canvas_length=64, budget_ms=None, seed=None))
            for i in range(3)]
    results = [infill_result(await reply) for _, reply in sent]
    assert [len(r.candidates) for r in results] == [2, 2, 2]
    health = await client.request("health")
    assert health["served"] == 3 and health["largest_batch"] >= 2 and health["batches"] < 3


async def test_seeded_requests_are_not_batched(client):
    await client.request("health")
    sent = [await client.infill(InfillCall(InfillRequest("x", ""), n=1, canvas_length=16, budget_ms=None, seed=i)) for i in range(3)]
    for _, reply in sent:
        unwrap(await reply)
    assert (await client.request("health"))["largest_batch"] == 1


def test_out_of_memory_is_recognised_on_cuda_and_host():
    """What the worker retries smaller: CUDA's error type, Python's, the CPU allocator's text
    (tests/e2e/test_faults.py drives a real host OOM end to end)."""
    import torch

    from dgls.worker import out_of_memory

    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert out_of_memory(MemoryError())
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
    assert out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"))
    assert not out_of_memory(RuntimeError("shape mismatch"))
    assert not out_of_memory(ValueError("out of memory"))  # not an allocator's error type
