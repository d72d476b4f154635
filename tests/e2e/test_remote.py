"""The real `dgls serve` with `backend = "vllm"`, against the contract server
(tests/support/vllm_contract.py) serving the same real tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import time

from lsprotocol import types as t

from ..test_vllm_backend import free_port
from .conftest import SMALL, change, inline, open_doc, vscode

URI = "file:///project/app.py"


def remote(url, checkpoint, **more) -> dict:
    return {"backend": "vllm", "remoteUrl": url, "remoteModel": "dgls-test", "remoteTokenizer": str(checkpoint),
            **more}


async def status(client) -> dict:
    return await client.workspace_execute_command_async(t.ExecuteCommandParams(command="dgls.status"))


def said(client, text: str) -> list[str]:
    return [m.message for m in client.log_messages if text in m.message]


async def test_inline_suggestions_from_the_vllm_backend(start, contract, fixed_checkpoint, answer):
    client = await start(vscode(), **remote(contract.url, fixed_checkpoint, remoteModel=None))
    open_doc(client, URI, "def f(value):\n    return \n")
    result = await inline(client, URI, 1, 11)
    assert result.items and all(item.insert_text.startswith(answer) for item in result.items)
    assert contract.requests and contract.completed
    info = await status(client)
    assert info["state"] == "ready" and info["model"] == "dgls-test"
    backend = info["backend"]
    assert backend["kind"] == "vllm" and backend["served"] == ["dgls-test"] and backend["partial_on_budget"] is False
    assert "whole" in backend["note"] and info["worker_pid"] is None  # no local worker was started


async def test_rapid_typing_aborts_superseded_requests_on_the_server(start, contract, fixed_checkpoint):
    client = await start(vscode(), **remote(contract.url, fixed_checkpoint, debounceMs=20))
    open_doc(client, URI, "def f(value):\n    \n")
    await inline(client, URI, 1, 4)  # the contract server loads its model
    contract.delay_s = 0.6  # each answer takes longer than the gap between keystrokes
    tasks, col = [], 4
    for version, ch in enumerate("return x", start=2):
        change(client, URI, version, 1, col, ch)
        col += 1
        tasks.append(asyncio.ensure_future(inline(client, URI, 1, col, automatic=True)))
        await asyncio.sleep(0.15)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(r is None for r in results[:-1])
    # The superseded requests reached the server and were closed there, not left running.
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.aborted) >= 3, 10)
    assert len(contract.completed) <= 2  # the warm-up, and at most the last keystroke's


async def test_a_dead_server_is_one_line_and_no_hang(start, fixed_checkpoint):
    url = f"http://127.0.0.1:{free_port()}"
    client = await start(vscode(), **remote(url, fixed_checkpoint))
    open_doc(client, URI, "x = \n")
    started = time.monotonic()
    for _ in range(3):
        assert await asyncio.wait_for(inline(client, URI, 0, 4), 10) is None
    assert time.monotonic() - started < 10
    await asyncio.sleep(0.2)
    assert len(said(client, "cannot reach the vLLM server")) == 1
    assert (await status(client))["state"] == "unavailable"


async def test_a_slow_server_misses_the_budget_once_in_the_log(start, contract, fixed_checkpoint):
    client = await start(vscode(), **remote(contract.url, fixed_checkpoint, maxLatencyMs=300))
    contract.delay_s = 3.0
    open_doc(client, URI, "x = \n")
    for _ in range(2):
        started = time.monotonic()
        assert await inline(client, URI, 0, 4) is None
        assert time.monotonic() - started < 2.5
    assert len(said(client, "within the 300 ms budget")) == 1
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.aborted) >= 2, 10)


async def test_each_error_class_is_one_log_line_and_no_suggestion(start, contract, fixed_checkpoint):
    client = await start(vscode(), **remote(contract.url, fixed_checkpoint))
    open_doc(client, URI, "x = \n")

    def setup(case):
        contract.fail, contract.malformed, contract.api_key, contract.served_name = None, False, None, "dgls-test"
        if case == "401":
            contract.api_key = "secret"
        elif case == "404":
            contract.served_name = "another-model"
        elif case == "400":
            contract.fail = (400, "This model's maximum context length is 4096 tokens.")
        elif case == "500":
            contract.fail = (500, "EngineDeadError")
        elif case == "malformed":
            contract.malformed = True

    for case, text in [("401", "refused the API key (HTTP 401): set $DGLS_VLLM_API_KEY"),
                       ("404", "does not serve model 'dgls-test'"), ("400", "(HTTP 400): This model's maximum"),
                       ("500", "failed (HTTP 500): EngineDeadError"), ("malformed", "malformed reply")]:
        setup(case)
        for _ in range(2):
            assert await asyncio.wait_for(inline(client, URI, 0, 4), 10) is None
        await asyncio.sleep(0.1)
        assert len(said(client, text)) == 1, (case, [m.message for m in client.log_messages])
    setup(None)
    assert (await inline(client, URI, 0, 4)).items  # and it recovers


async def test_fallback_to_the_local_worker_when_the_server_is_down(start, fixed_checkpoint, answer):
    url = f"http://127.0.0.1:{free_port()}"
    client = await start(vscode(), **remote(url, fixed_checkpoint, remoteFallback=True))
    open_doc(client, URI, "def f(value):\n    return \n")
    result = await inline(client, URI, 1, 11)
    assert result.items and result.items[0].insert_text.startswith(answer)
    assert len(said(client, "using the local worker instead")) == 1
    # not cached as the remote model's answer (served again once the server is back)
    assert (await status(client))["cache_entries"] == 0


async def test_close_and_client_cancel_abort_the_remote_request(start, contract, fixed_checkpoint):
    client = await start(vscode(), **remote(contract.url, fixed_checkpoint))
    open_doc(client, URI, "x = \n")
    assert (await inline(client, URI, 0, 4)).items  # warm
    contract.delay_s = 5.0
    other = "file:///project/c.py"
    open_doc(client, other, "def f(value):\n    return \n")  # not in the suggestion cache
    pending = asyncio.ensure_future(inline(client, other, 1, 11))
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.requests) >= 2, 5)
    client.text_document_did_close(t.DidCloseTextDocumentParams(text_document=t.TextDocumentIdentifier(uri=other)))
    assert await asyncio.wait_for(pending, 3) is None
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.aborted) == 1, 5)
    # $/cancelRequest, what editors send when the user moves on
    open_doc(client, "file:///project/b.py", "class A:\n    y = \n")
    params = t.InlineCompletionParams(
        text_document=t.TextDocumentIdentifier(uri="file:///project/b.py"), position=t.Position(1, 8),
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked))
    request = asyncio.ensure_future(
        client.protocol.send_request_async(t.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="remote-1"))
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.requests) >= 3, 5)
    client.protocol.notify("$/cancelRequest", t.CancelParams(id="remote-1"))
    assert await asyncio.to_thread(contract.wait_for, lambda: len(contract.aborted) == 2, 5)
    assert len(contract.completed) == 1
    with contextlib.suppress(Exception):
        await asyncio.wait_for(request, 5)


async def test_the_config_file_holds_under_settings_that_do_not_mention_it(start, contract, fixed_checkpoint,
                                                                            answer, tmp_path, monkeypatch):
    """The user's config file chooses the remote backend; the editor's settings (as the VS
    Code extension sends them: only what the user set) neither hide it nor, once a key is
    removed again, leave their old value behind."""
    config = tmp_path / "config.toml"
    config.write_text(f'backend = "vllm"\nremoteUrl = "{contract.url}"\nremoteModel = "dgls-test"\n'
                      f'remoteTokenizer = "{fixed_checkpoint}"\nmaxLatencyMs = 4321\n')
    monkeypatch.setenv("DGLS_CONFIG", str(config))
    client = await start(vscode(), init={k: v for k, v in SMALL.items() if k != "maxLatencyMs"})
    open_doc(client, URI, "def f(value):\n    return \n")
    result = await inline(client, URI, 1, 11)
    assert result.items and all(item.insert_text.startswith(answer) for item in result.items)
    assert contract.completed  # the config file's vLLM server answered, not a local worker
    info = await status(client)
    assert info["backend"]["kind"] == "vllm" and info["worker_pid"] is None
    assert info["options"]["line_budget_ms"] == info["options"]["block_budget_ms"] == 4321

    async def configure(settings: dict) -> dict:
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"dgls": settings}))
        await asyncio.sleep(0.2)
        return (await status(client))["options"]

    assert (await configure({**SMALL, "maxLatencyMs": 3000}))["line_budget_ms"] == 3000
    # The user removes the setting: the config file's value again, not the last one sent.
    assert (await configure({k: v for k, v in SMALL.items() if k != "maxLatencyMs"}))["line_budget_ms"] == 4321
    assert (await status(client))["backend"]["kind"] == "vllm"
    assert not said(client, "setting")
