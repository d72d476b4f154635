"""End-to-end fixtures: the real `dgls serve` over stdio, its real worker, a real model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import attrs
import msgpack
import pytest
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, client_capabilities

from ..support.fixed_model import CANVAS, answer_of

# Small canvases for the small model; budgets generous enough that a loaded CI machine
# does not cut the sampler short (budgets have their own tests).
SMALL = {"lineCanvas": CANVAS, "blockCanvas": CANVAS, "workerIdleS": 60, "debounceMs": 50, "maxLatencyMs": 5000}


def vscode() -> t.ClientCapabilities:
    caps = client_capabilities("visual-studio-code")
    text = attrs.evolve(caps.text_document, inline_completion=t.InlineCompletionClientCapabilities())
    window = t.WindowClientCapabilities(work_done_progress=True)
    general = t.GeneralClientCapabilities(position_encodings=[t.PositionEncodingKind.Utf16])
    return attrs.evolve(caps, text_document=text, window=window, general=general)


def neovim() -> t.ClientCapabilities:
    caps = client_capabilities("neovim")
    general = t.GeneralClientCapabilities(position_encodings=[t.PositionEncodingKind.Utf16])
    return attrs.evolve(caps, general=general)


def helix() -> t.ClientCapabilities:
    """What Helix declares that matters here: UTF-8 positions first, completion, no inline."""
    return t.ClientCapabilities(
        general=t.GeneralClientCapabilities(position_encodings=[t.PositionEncodingKind.Utf8,
                                                                t.PositionEncodingKind.Utf32,
                                                                t.PositionEncodingKind.Utf16]),
        text_document=t.TextDocumentClientCapabilities(
            synchronization=t.TextDocumentSyncClientCapabilities(),
            completion=t.CompletionClientCapabilities(completion_item=t.ClientCompletionItemOptions(
                snippet_support=True, resolve_support=t.ClientCompletionItemResolveOptions(properties=[])))),
        window=t.WindowClientCapabilities(work_done_progress=True),
    )


def worker_health(runtime) -> list[dict]:
    """Each live worker's `health`, asked over its socket like any client."""
    out = []
    for sock in runtime.glob("*.sock"):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(sock))
            body = msgpack.packb({"id": 1, "op": "health"})
            s.sendall(len(body).to_bytes(4, "big") + body)
            size = int.from_bytes(s.recv(4), "big")
            data = b""
            while len(data) < size:
                chunk = s.recv(size - len(data))
                if not chunk:
                    raise ConnectionError("the worker closed the connection (exiting)")
                data += chunk
            out.append(msgpack.unpackb(data)["result"])
        except (OSError, ValueError, KeyError):  # gone, or going: not a live worker
            pass
        finally:
            s.close()
    return out


def worker_pids(runtime) -> list[int]:
    return [health["pid"] for health in worker_health(runtime)]


@pytest.fixture
def runtime(tmp_path):
    """A private runtime directory; workers started in it are stopped afterwards."""
    directory = tmp_path / "rt"
    directory.mkdir(mode=0o700)
    yield directory
    for pid in worker_pids(directory):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture
def answer(fixed_checkpoint):
    return answer_of(fixed_checkpoint)


@pytest.fixture
async def start(runtime, fixed_checkpoint):
    """start(capabilities, **options) -> an initialized client of a fresh `dgls serve`."""
    clients = []

    async def starter(capabilities, model=None, init=None, **options):
        """`model`: a checkpoint path; None: the fixed model; "": no model configured at all.
        `init`: the initializationOptions exactly (else SMALL updated with `options`)."""
        env = {**os.environ, "DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(model or fixed_checkpoint)}
        if model == "":
            del env["DGLS_MODEL"]
        client = await ClientServerConfig([sys.executable, "-m", "dgls.cli", "serve"], server_env=env).start()
        await client.initialize_session(t.InitializeParams(
            capabilities=capabilities, initialization_options={**SMALL, **options} if init is None else init))
        clients.append(client)
        return client

    yield starter
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 10)


def open_doc(client, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


async def inline(client, uri: str, line: int, character: int, *, automatic: bool = False):
    kind = t.InlineCompletionTriggerKind.Automatic if automatic else t.InlineCompletionTriggerKind.Invoked
    return await client.text_document_inline_completion_async(t.InlineCompletionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line, character),
        context=t.InlineCompletionContext(trigger_kind=kind)))


def change(client, uri: str, version: int, line: int, character: int, text: str, end: tuple[int, int] | None = None):
    end_line, end_char = end or (line, character)
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(t.Position(line, character), t.Position(end_line, end_char)), text=text)]))
