"""Faults under the real server, worker and model: a wedged worker, its socket deleted, a real
out-of-memory, the model file truncated or swapped, logs on a full disk. The server keeps
answering (no suggestion and a status message while the cause lasts) and recovers by
itself when it goes away."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal

import pytest
from lsprotocol import types as t

from dgls.runtime import worker_key

from .conftest import inline, open_doc, vscode, worker_health, worker_pids

URI = "file:///project/app.py"
CODE = "def f(value):\n    return \n"


async def status(client) -> dict:
    return await client.workspace_execute_command_async(t.ExecuteCommandParams(command="dgls.status"))


async def eventually(predicate, timeout: float = 30.0, every: float = 0.2):
    """Await predicate() until it is truthy (it may be a coroutine function)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(every)


_fresh = iter(range(10 ** 6))


async def suggests(client, answer, uri: str | None = None) -> bool:
    """A suggestion for `uri`, or for a new document no cache has seen."""
    if uri is None:
        uri = f"file:///project/fresh{next(_fresh)}.py"
        open_doc(client, uri, f"def f{next(_fresh)}(value):\n    return \n")
    result = await inline(client, uri, 1, 11)
    return bool(result and result.items and result.items[0].insert_text.startswith(answer))


async def test_a_wedged_worker_times_out_and_recovers_when_it_resumes(start, runtime, answer):
    client = await start(vscode(), maxLatencyMs=500, workerGraceMs=1000)
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)
    (pid,) = worker_pids(runtime)
    os.kill(pid, signal.SIGSTOP)  # alive but silent: no reply will ever come while stopped
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        open_doc(client, "file:///project/b.py", "y = \n")
        assert await asyncio.wait_for(inline(client, "file:///project/b.py", 0, 4), 30) is None
        assert loop.time() - began < 15  # budget 0.5 s + grace 1 s (+ 1 s for health), not forever
        info = await status(client)
        assert info["state"] == "unavailable" and "did not answer within" in info["message"], [m.message for m in client.log_messages]
    finally:
        os.kill(pid, signal.SIGCONT)
    open_doc(client, "file:///project/c.py", "def g(item):\n    return \n")  # not in the cache
    assert await eventually(lambda: suggests(client, answer, "file:///project/c.py"))
    assert (await status(client))["state"] == "ready" and worker_pids(runtime) == [pid]


async def test_a_stopped_worker_with_a_full_socket_does_not_hang_requests(start, runtime, answer):
    """Requests bigger than the socket's buffer to a worker that reads nothing: sending
    itself waits, so the send is bounded too, and the connection given up on is dropped
    (before, the second request never came back)."""
    client = await start(vscode(), maxLatencyMs=500, workerGraceMs=1000, prefixTokens=1_000_000)
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)
    (pid,) = worker_pids(runtime)
    big = "file:///project/big.py"
    lines = 60_000
    open_doc(client, big, "x = 1\n" * lines + "def f(value):\n    return \n")  # ~360 kB of prompt
    os.kill(pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            began = loop.time()
            assert await asyncio.wait_for(inline(client, big, lines + 1, 11), 60) is None
            assert loop.time() - began < 20
    finally:
        os.kill(pid, signal.SIGCONT)
    open_doc(client, "file:///project/d.py", "def h(item):\n    return \n")
    assert await eventually(lambda: suggests(client, answer, "file:///project/d.py"))


async def test_a_deleted_socket_is_bound_again(start, runtime, answer):
    client = await start(vscode())
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)
    (sock,) = runtime.glob("*.sock")
    (pid,) = worker_pids(runtime)
    sock.unlink()
    assert await suggests(client, answer)  # its open connection still works
    assert await eventually(sock.exists, 10)  # the worker binds its socket again
    other = await start(vscode())  # a new editor reaches the same worker, no second model
    open_doc(other, URI, CODE)
    assert await suggests(other, answer)
    assert worker_pids(runtime) == [pid]


def vm_size(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
async def test_out_of_memory_degrades_then_recovers(start, runtime, answer):
    """A real OOM: the worker's address space is capped (RLIMIT_AS) just above what it uses,
    so 16 candidates of 2048 tokens cannot be allocated. It retries with fewer candidates
    and a shorter canvas, the editor still gets a suggestion and the status says why; with
    the cap lifted, the next request is served in full."""
    client = await start(vscode())
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)
    (pid,) = worker_pids(runtime)
    before = resource.prlimit(pid, resource.RLIMIT_AS)
    resource.prlimit(pid, resource.RLIMIT_AS, (vm_size(pid) + 256 * 2 ** 20, before[1]))
    try:
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(
            settings={"dgls": {"lineCanvas": 2048, "candidatesInvoked": 16}}))
        open_doc(client, "file:///project/big.py", CODE)
        result = await inline(client, "file:///project/big.py", 1, 11)
        info = await status(client)
        assert info["message"] and info["message"].startswith("out of memory: gave"), info
        assert result is None or result.items  # a suggestion when the smaller canvas gave one
        assert any("out of memory" in m.message for m in client.log_messages)
        assert worker_pids(runtime) == [pid]  # the worker lived through it
    finally:
        resource.prlimit(pid, resource.RLIMIT_AS, before)
    open_doc(client, "file:///project/big2.py", CODE + "\n")
    await inline(client, "file:///project/big2.py", 1, 11)
    assert (await status(client))["message"] is None  # served in full again


async def test_a_truncated_or_swapped_model_file_is_reported_then_recovers(start, runtime, tmp_path, fixed_checkpoint,
                                                                           random_checkpoint, answer):
    model = shutil.copytree(fixed_checkpoint, tmp_path / "model")
    weights = model / "model.safetensors"
    good = weights.read_bytes()
    client = await start(vscode(), model=str(model))
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)

    for broken, expected in [(good[: len(good) // 2], "corrupt safetensors file"),
                             (_other_weights(tmp_path), "checkpoint is missing")]:
        weights.write_bytes(broken)  # (a new file: the running worker's mapping keeps the old one)
        for pid in worker_pids(runtime):  # a restart (idle exit, crash) must load the file again
            os.kill(pid, signal.SIGTERM)
        await eventually(lambda: not worker_pids(runtime), 10)
        for _ in range(3):  # the first request may still meet the old worker's closing connection
            assert not await suggests(client, answer)
            said = [m.message for m in client.log_messages if expected in m.message]
            if said:
                break
        assert said and all("\n" not in m for m in said)
        assert (await status(client))["state"] == "unavailable"
        weights.write_bytes(good)
        # The failed worker lingers a few seconds answering its error, then a new one loads.
        assert await eventually(lambda: suggests(client, answer), 40, every=0.5)
        assert (await status(client))["state"] == "ready"


def _other_weights(tmp_path) -> bytes:
    import torch
    from safetensors.torch import save_file

    save_file({"unrelated": torch.zeros(4)}, str(tmp_path / "other.safetensors"))
    return (tmp_path / "other.safetensors").read_bytes()


async def test_logs_on_a_full_disk_do_not_stop_suggestions(start, runtime, fixed_checkpoint, answer):
    """The worker's log is /dev/full (every write fails with ENOSPC, for real); when the log
    is writable again, the next worker logs there."""
    log = runtime / f"worker-{worker_key(str(fixed_checkpoint), None, 'auto')}.log"
    log.symlink_to("/dev/full")
    client = await start(vscode())
    open_doc(client, URI, CODE)
    assert await suggests(client, answer)
    assert worker_health(runtime)[0]["state"] == "ready"
    log.unlink()  # the disk has room again
    for pid in worker_pids(runtime):
        os.kill(pid, signal.SIGTERM)
    await eventually(lambda: not worker_pids(runtime), 10)
    assert await eventually(lambda: suggests(client, answer), 30)
    assert log.exists() and "listening on" in log.read_text()


async def test_worker_killed_during_a_denoising_step(start, runtime, random_checkpoint):
    """SIGKILL while the worker is inside the denoising loop of this very request."""
    client = await start(vscode(), model=str(random_checkpoint), lineCanvas=1024, candidatesInvoked=8,
                         maxLatencyMs=60000)
    open_doc(client, URI, "x = \n")
    pending = asyncio.ensure_future(inline(client, URI, 0, 4))
    denoising = await eventually(lambda: [h for h in worker_health(runtime)
                                          if h["state"] == "ready" and h["active"] == 1 and h["queued"] == 0], 120, 0.05)
    assert denoising, "the request never reached the denoising loop"
    pid = denoising[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert await asyncio.wait_for(pending, 20) is None  # no suggestion, no crash, no hang
    assert any("no suggestion" in m.message for m in client.log_messages)
    client.workspace_did_change_configuration(t.DidChangeConfigurationParams(
        settings={"dgls": {"lineCanvas": 16, "candidatesInvoked": 1}}))
    open_doc(client, "file:///project/d.py", "y = \n")
    await inline(client, "file:///project/d.py", 0, 4)  # a new worker starts (random weights: text may be rejected)
    info = await status(client)
    assert info["state"] == "ready" and info["worker_pid"] not in (None, pid)
