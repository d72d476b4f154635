"""The real `dgls serve`, started as editors start it, with its real worker and a real model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest
from lsprotocol import types as t

from .conftest import change, helix, inline, neovim, open_doc, vscode, worker_health, worker_pids

URI = "file:///project/app.py"


async def status(client) -> dict:
    return await client.workspace_execute_command_async(t.ExecuteCommandParams(command="dgls.status"))


async def test_vscode_inline_completion(start, answer):
    client = await start(vscode())
    open_doc(client, URI, "def f(value):\n    return \n")
    result = await inline(client, URI, 1, 11)
    assert result.items and all(item.insert_text.startswith(answer) for item in result.items)
    assert result.items[0].range == t.Range(t.Position(1, 11), t.Position(1, 11))


async def test_replace_range_covers_auto_closed_characters(start, answer):
    client = await start(vscode())
    open_doc(client, URI, "print()\n")
    result = await inline(client, URI, 0, 6)
    item = result.items[0]
    assert item.insert_text.startswith(answer) and item.insert_text.endswith(")")
    assert item.range == t.Range(t.Position(0, 6), t.Position(0, 7))


async def test_model_load_reports_progress_and_status(start):
    client = await start(vscode())
    open_doc(client, URI, "x = \n")
    await inline(client, URI, 0, 4)
    for _ in range(100):  # the load's progress ends shortly after the first answer
        info = await status(client)
        kinds = [report.kind for reports in client.progress_reports.values() for report in reports]
        if info["state"] == "ready" and kinds and kinds[-1] == "end":
            break
        await asyncio.sleep(0.1)
    assert info["state"] == "ready" and info["device"] == "cpu" and info["worker_pid"]
    assert kinds[0] == "begin" and kinds[-1] == "end"


async def test_neovim_completion_fallback(start, answer):
    client = await start(neovim())
    open_doc(client, URI, "def f(value):\n    return se\n")
    result = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=URI), position=t.Position(1, 13)))
    # The cursor is after "se": the model is asked for the rest of the line after it.
    assert result is None or len(result.items) == 1
    open_doc(client, "file:///project/b.py", "def f(value):\n    return \n")
    result = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri="file:///project/b.py"), position=t.Position(1, 11)))
    (item,) = result.items
    assert item.text_edit.new_text.startswith(answer) and item.text_edit.range.start == t.Position(1, 11)
    assert item.filter_text == item.text_edit.new_text and item.label == item.text_edit.new_text
    assert item.documentation.kind == t.MarkupKind.Markdown and answer in item.documentation.value


# A line where UTF-16 units, UTF-8 bytes and code points all differ before the cursor.
WIDE = 'x = f("漢字🎉", )\n'


def columns(prefix: str) -> dict[str, int]:
    return {"utf-16": len(prefix.encode("utf-16-le")) // 2, "utf-8": len(prefix.encode()), "utf-32": len(prefix)}


async def test_positions_in_utf16_for_vscode(start, answer):
    client = await start(vscode())
    open_doc(client, URI, WIDE)
    col = columns('x = f("漢字🎉", ')["utf-16"]
    result = await inline(client, URI, 0, col)
    text = result.items[0].insert_text
    assert text.startswith(answer) and text.endswith(")")
    assert result.items[0].range == t.Range(t.Position(0, col), t.Position(0, col + 1))


async def test_positions_in_utf8_for_helix(start, answer):
    client = await start(helix())
    info = await status(client)
    assert info["encoding"] == "utf-8"
    open_doc(client, URI, WIDE)
    col = columns('x = f("漢字🎉", ')["utf-8"]
    result = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=URI), position=t.Position(0, col)))
    (item,) = result.items
    assert item.text_edit.new_text.startswith(answer) and item.text_edit.new_text.endswith(")")
    assert item.text_edit.range == t.Range(t.Position(0, col), t.Position(0, col + 1))


async def test_crlf_documents_and_incremental_edits(start, answer):
    client = await start(vscode())
    open_doc(client, URI, "import os\r\n\r\ndef f(value):\r\n    return 1\r\n")
    # Replace "1" on line 3 by nothing, across nothing else: the cursor ends after "return ".
    change(client, URI, 2, 3, 11, "", end=(3, 12))
    result = await inline(client, URI, 3, 11)
    assert result.items and all(i.insert_text.startswith(answer) for i in result.items)
    assert result.items[0].range.start == t.Position(3, 11)


async def test_rapid_typing_answers_only_the_last_request(start, answer):
    client = await start(vscode(), debounceMs=150)
    open_doc(client, URI, "def f(value):\n    \n")
    await inline(client, URI, 1, 4)  # warm the worker so the burst measures scheduling, not loading
    typed = "return "
    tasks, started = [], time.monotonic()
    text_col = 4
    for version, ch in enumerate((typed * 3)[:20], start=2):
        change(client, URI, version, 1, text_col, ch)
        text_col += 1
        tasks.append(asyncio.ensure_future(inline(client, URI, 1, text_col, automatic=True)))
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*tasks)
    assert all(r is None for r in results[:-1])  # superseded, none answered with content
    assert results[-1] is None or results[-1].items  # the last is answered (content if valid code)
    assert time.monotonic() - started < 10


async def test_typed_through_reuses_the_shown_suggestion(start, answer):
    client = await start(vscode())
    open_doc(client, URI, "def f(value):\n    return \n")
    first = await inline(client, URI, 1, 11)
    shown = [i.insert_text for i in first.items]
    assert shown[0].startswith(answer)
    info = await status(client)
    hits = info["cache_hits"]
    assert info["prompt_cache"]["encoded_tokens"] > 0 and info["prompt_cache"]["entries"] >= 1  # the worker's store, asked now
    change(client, URI, 2, 1, 11, answer[:2])  # the user types the first two characters
    second = await inline(client, URI, 1, 13)
    assert [i.insert_text for i in second.items] == [s[2:] for s in shown]
    assert (await status(client))["cache_hits"] == hits + 1


async def test_server_survives_a_worker_killed_mid_request(start, runtime, answer):
    client = await start(vscode())
    open_doc(client, URI, "def f(value):\n    return \n")
    assert (await inline(client, URI, 1, 11)).items
    (pid,) = worker_pids(runtime)
    os.kill(pid, signal.SIGSTOP)  # freeze it so the next request is in flight when it dies
    open_doc(client, "file:///project/c.py", "y = \n")
    pending = asyncio.ensure_future(inline(client, "file:///project/c.py", 0, 4))
    await asyncio.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    assert await asyncio.wait_for(pending, 20) is None  # no suggestion, no crash
    assert any("no suggestion" in m.message for m in client.log_messages)
    again = await inline(client, "file:///project/c.py", 0, 4)  # a new worker is started
    assert again.items and again.items[0].insert_text.startswith(answer)
    assert worker_pids(runtime) and worker_pids(runtime) != [pid]


async def test_two_servers_share_one_worker(start, runtime, answer):
    a, b = await start(vscode()), await start(neovim())
    open_doc(a, URI, "x = \n")
    open_doc(b, URI, "y = \n")
    ra, rb = await asyncio.gather(inline(a, URI, 0, 4), inline(b, URI, 0, 4))
    assert ra.items[0].insert_text.startswith(answer) and rb.items[0].insert_text.startswith(answer)
    assert len(worker_pids(runtime)) == 1
    assert len(list(runtime.glob("*.sock"))) == 1


async def test_no_suggestion_inside_strings_or_for_unknown_documents(start):
    client = await start(vscode())
    open_doc(client, URI, 'x = "text"\n')
    assert await inline(client, URI, 0, 7) is None
    assert await inline(client, "file:///never/opened.py", 0, 0) is None


async def test_invalid_settings_fall_back_with_one_message(start, answer):
    client = await start(vscode(), debounceMs="fast", colour="blue")
    open_doc(client, URI, "x = \n")
    assert (await inline(client, URI, 0, 4)).items[0].insert_text.startswith(answer)
    messages = [m.message for m in client.log_messages]
    assert any("debounceMs='fast' ignored" in m for m in messages)
    assert any("unknown setting 'colour' ignored" in m for m in messages)


async def test_no_model_configured_is_said_once_and_nothing_breaks(start):
    client = await start(vscode(), model="")
    open_doc(client, URI, "x = \n")
    assert await inline(client, URI, 0, 4) is None
    assert await inline(client, URI, 0, 4) is None
    said = [m.message for m in client.log_messages if "no model configured" in m.message]
    assert len(said) == 1
    assert (await status(client))["state"] == "no model"


async def test_a_broken_model_is_reported_and_the_server_keeps_answering(start, tmp_path, fixed_checkpoint):
    import shutil

    broken = shutil.copytree(fixed_checkpoint, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    client = await start(vscode(), model=str(broken))
    open_doc(client, URI, "x = \n")
    assert await inline(client, URI, 0, 4) is None
    for _ in range(100):
        messages = [m.message for m in client.log_messages]
        if any("corrupt safetensors file" in m for m in messages):
            break
        await asyncio.sleep(0.1)
    assert any("corrupt safetensors file" in m for m in messages)
    assert all("\n" not in m for m in messages)
    assert (await status(client))["state"] == "unavailable"


async def test_settings_change_at_run_time(start):
    client = await start(vscode())
    open_doc(client, URI, "x = \n")
    assert (await inline(client, URI, 0, 4)).items
    client.workspace_did_change_configuration(t.DidChangeConfigurationParams(
        settings={"dgls": {"enabledLanguages": ["go"]}}))
    await asyncio.sleep(0.2)
    assert await inline(client, URI, 0, 4) is None  # python is no longer enabled


def test_tcp_address_defaults_to_loopback():
    from dgls.cli import UsageError, tcp_address

    assert tcp_address("2087") == ("127.0.0.1", 2087)
    assert tcp_address("0.0.0.0:2087") == ("0.0.0.0", 2087)  # only when asked for
    for bad in ("abc", "host:", "70000", "h:0"):
        with pytest.raises(UsageError, match="expects"):
            tcp_address(bad)


def test_tcp_serves_the_protocol(fixed_checkpoint, runtime):
    import json
    import socket
    import subprocess
    import sys

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = {**os.environ, "DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(fixed_checkpoint)}
    proc = subprocess.Popen([sys.executable, "-m", "dgls.cli", "serve", "--tcp", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        assert conn is not None, "dgls serve --tcp never listened"
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"processId": None, "rootUri": None, "capabilities": {}}}).encode()
        conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        reply = conn.recv(65536)
        assert b'"inlineCompletionProvider"' in reply and b'"id": 1' in reply.replace(b'"id":1', b'"id": 1')
        conn.close()
        # (That a bare port means loopback is tested on the address parser below: this
        # sandbox has no other address to prove it from outside.)
    finally:
        proc.kill()
        proc.wait()


async def test_clients_without_position_encodings_get_utf16(start, answer):
    caps = neovim()
    import attrs

    client = await start(attrs.evolve(caps, general=None))
    assert (await status(client))["encoding"] == "utf-16"
    open_doc(client, URI, WIDE)
    col = columns('x = f("漢字🎉", ')["utf-16"]
    result = await inline(client, URI, 0, col)
    assert result.items[0].range.start == t.Position(0, col)


async def test_a_client_cancel_stops_the_request_in_the_worker(start, runtime, random_checkpoint):
    """$/cancelRequest (what editors send) stops the denoising loop, not only the handler."""
    client = await start(vscode(), model=str(random_checkpoint), lineCanvas=1024, candidatesInvoked=8,
                         maxLatencyMs=60000)
    open_doc(client, URI, "x = \n")
    params = t.InlineCompletionParams(
        text_document=t.TextDocumentIdentifier(uri=URI), position=t.Position(0, 4),
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked))
    request = asyncio.ensure_future(
        client.protocol.send_request_async(t.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="slow-1"))
    for _ in range(400):  # until the worker is denoising it
        health = worker_health(runtime)
        if health and health[0]["state"] == "ready" and health[0]["active"]:
            break
        await asyncio.sleep(0.05)
    assert health[0]["active"] == 1
    client.protocol.notify("$/cancelRequest", t.CancelParams(id="slow-1"))
    for _ in range(300):  # a step of 8 x 1024 tokens is slow on a loaded machine; the budget is 60 s
        health = worker_health(runtime)
        if health[0]["active"] == 0:
            break
        await asyncio.sleep(0.05)
    assert health[0]["active"] == 0  # stopped at its next denoising step, long before its budget
    assert health[0]["cancelled"] == 1
    with contextlib.suppress(Exception):  # the handler's reply to a cancelled request
        await asyncio.wait_for(request, 5)
