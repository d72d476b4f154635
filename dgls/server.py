"""The language server (`dgls serve`): thin LSP handlers over dgls.service.

Ghost text through `textDocument/inlineCompletion` (LSP 3.18), and one completion item
through `textDocument/completion` for editors without it. Never imports torch: the model
lives in the worker, or on a remote vLLM server (dgls/backends/).
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer

from . import __version__
from .documents import from_offset
from .options import DEFAULTS, from_config_file, from_settings
from .protocol import DglsProtocol, StdinLines, StreamLines, read_frames
from .service import State, Suggestions, suggest, take_inflight, warm_up

log = logging.getLogger(__name__)

STATUS_COMMAND = "dgls.status"
STATUS_NOTIFICATION = "dgls/status"
DOCUMENT_COMMAND = "dgls.document"


class DglsServer(LanguageServer):
    """Holds the state; the handlers below hold the logic."""

    def __init__(self) -> None:
        super().__init__("dgls", __version__, text_document_sync_kind=t.TextDocumentSyncKind.Incremental,
                         protocol_cls=DglsProtocol)
        self.state = State()
        self.background: set[asyncio.Task] = set()

    # pygls's own read loops leave malformed requests unanswered (see dgls/protocol.py).
    def start_io(self, stdin=None, stdout=None) -> None:
        import sys
        import threading

        from pygls.io_ import StdoutWriter

        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        try:
            asyncio.run(read_frames(StdinLines(stdin or sys.stdin.buffer, self.thread_pool), self.protocol,
                                    self._stop_event))
        except BrokenPipeError:
            log.error("the client closed the connection; exiting")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        import threading

        self._stop_event = stop = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)
            await read_frames(StreamLines(reader), self.protocol, stop)
            self.shutdown()

        async def serve() -> None:
            self._server = await asyncio.start_server(connection, host, port)
            async with self._server:
                await self._server.serve_forever()

        try:
            asyncio.run(serve())
        except asyncio.CancelledError:
            pass

    def warn(self, message: str) -> None:
        """A warning in the editor's log, once per distinct message (not per keystroke)."""
        if message not in self.state.warned:
            self.state.warned.add(message)
            self.window_log_message(t.LogMessageParams(type=t.MessageType.Warning, message=f"dgls: {message}"))

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


server = DglsServer()


def apply_settings(ls: DglsServer, settings: object) -> None:
    """The user's config file, then the editor's settings over it, each time afresh: a key
    the editor stops sending falls back to the config file's value (or the default), and an
    editor that sends only what the user set never hides the config file."""
    options, problems = from_config_file(DEFAULTS)
    more = []
    if settings is not None:
        options, more = from_settings(settings, options)
    for problem in problems + more:
        ls.warn(problem)
    ls.state.configure(options)


@server.feature(t.INITIALIZE)
def initialize(ls: DglsServer, params: t.InitializeParams) -> None:
    chosen = ls.workspace.position_encoding or t.PositionEncodingKind.Utf16
    # pygls hands back either the enum (its default) or the client's string; str() of the
    # enum would be "PositionEncodingKind.Utf16", so take the value.
    ls.state.encoding = getattr(chosen, "value", chosen)
    apply_settings(ls, params.initialization_options)


@server.feature(t.INITIALIZED)
def initialized(ls: DglsServer, params: t.InitializedParams) -> None:
    ls.spawn(warm_up(ls.state, Progress(ls)))


@server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: DglsServer, params: t.DidChangeConfigurationParams) -> None:
    settings = params.settings
    if isinstance(settings, dict) and "dgls" in settings:
        settings = settings["dgls"]
    apply_settings(ls, settings)


@server.feature(t.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: DglsServer, params: t.DidOpenTextDocumentParams) -> None:
    d = params.text_document
    ls.state.documents.open(d.uri, d.language_id, d.version, d.text)


# didChange and didClose are plain functions, like didOpen: pygls runs async handlers as
# tasks, so an async close could run after the didOpen that followed it and drop the
# reopened document. The backend's cancel runs in the background.
@server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: DglsServer, params: t.DidChangeTextDocumentParams) -> None:
    d = params.text_document
    ls.state.documents.change(d.uri, d.version, params.content_changes, ls.state.encoding)
    _cancel_soon(ls, d.uri)


@server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: DglsServer, params: t.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    _cancel_soon(ls, uri)
    ls.state.documents.close(uri)
    ls.state.typed.forget(uri)


def _cancel_soon(ls: DglsServer, uri: str) -> None:
    current = take_inflight(ls.state, uri)
    if current is not None:
        ls.spawn(current.cancel())


def _range(ls: DglsServer, text: str, start: int, end: int) -> t.Range:
    a, b = from_offset(text, start, ls.state.encoding), from_offset(text, end, ls.state.encoding)
    return t.Range(t.Position(*a), t.Position(*b))


async def _suggestions(ls: DglsServer, uri: str, position: t.Position, automatic: bool) -> Suggestions | None:
    result = await suggest(ls.state, uri, position.line, position.character, automatic=automatic, warn=ls.warn)
    if result is not None and result.texts and result.from_cache is None:
        ls.protocol.notify(STATUS_NOTIFICATION, ls.state.status.as_dict())
    return result if result is not None and result.texts else None


@server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
async def inline_completion(ls: DglsServer, params: t.InlineCompletionParams) -> t.InlineCompletionList | None:
    automatic = params.context.trigger_kind == t.InlineCompletionTriggerKind.Automatic
    result = await _suggestions(ls, params.text_document.uri, params.position, automatic)
    if result is None:
        return None
    rng = _range(ls, result.text, result.offset, result.replace_end)
    return t.InlineCompletionList(items=[t.InlineCompletionItem(insert_text=s, range=rng) for s in result.texts])


@server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[".", "(", " "]))
async def completion(ls: DglsServer, params: t.CompletionParams) -> t.CompletionList | None:
    automatic = params.context is not None and params.context.trigger_kind != t.CompletionTriggerKind.Invoked
    result = await _suggestions(ls, params.text_document.uri, params.position, automatic)
    if result is None:
        return None
    best = result.texts[0]
    rng = _range(ls, result.text, result.offset, result.replace_end)
    # Editors filter items by the word before the cursor: start the filter text with it.
    line_start = result.text.rfind("\n", 0, result.offset) + 1
    word = _word_before(result.text[line_start:result.offset])
    first = best.strip("\n").splitlines()[0] if best.strip() else best
    item = t.CompletionItem(
        label=(first[:60] + "…") if len(first) > 60 else first,
        kind=t.CompletionItemKind.Snippet,
        detail="dgls",
        text_edit=t.TextEdit(range=rng, new_text=best),
        filter_text=word + best,
        insert_text_format=t.InsertTextFormat.PlainText,
        documentation=_documentation(ls, best, result.language),
        sort_text="0",
        preselect=True,
    )
    return t.CompletionList(is_incomplete=True, items=[item])


def _documentation(ls: DglsServer, text: str, language: str) -> t.MarkupContent | str:
    """The suggestion as a code block in Markdown where the client renders it; plain text
    otherwise (a bare string when the client names no format at all)."""
    caps = ls.client_capabilities.text_document
    item = caps.completion.completion_item if caps and caps.completion else None
    formats = (item.documentation_format if item else None) or []
    if t.MarkupKind.Markdown in formats:
        return t.MarkupContent(kind=t.MarkupKind.Markdown, value=f"```{language}\n{text}\n```")
    if t.MarkupKind.PlainText in formats:
        return t.MarkupContent(kind=t.MarkupKind.PlainText, value=text)
    return text


def _word_before(line: str) -> str:
    i = len(line)
    while i > 0 and (line[i - 1].isalnum() or line[i - 1] == "_"):
        i -= 1
    return line[i:]


@server.command(STATUS_COMMAND)
async def status(ls: DglsServer, *args) -> dict:
    backend = ls.state.backend
    if backend is not None:
        if backend.kind == "vllm":  # asked now: GET /health and /v1/models
            await backend.refresh(ls.state.status)
        else:  # the worker's prompt store counts move with every request; its state and the
            # last request's message are kept as the requests left them
            ls.state.status.prompt_cache = await backend.prompt_store()
        ls.state.status.backend = backend.describe()
    return {**ls.state.status.as_dict(), "encoding": ls.state.encoding,
            "cache_entries": len(ls.state.exact), "options": {"debounce_ms": ls.state.options.debounce_ms,
                                                             "line_budget_ms": ls.state.options.line_budget_ms,
                                                             "block_budget_ms": ls.state.options.block_budget_ms}}


@server.command(DOCUMENT_COMMAND)
def document(ls: DglsServer, *args) -> dict | None:
    """What the server holds for a document: version, length and SHA-256 of its text (a
    client can check that its edits arrived as it sent them; the text itself is not sent)."""
    from pygls.exceptions import JsonRpcInvalidParams

    if len(args) != 1 or not isinstance(args[0], str):
        raise JsonRpcInvalidParams(f"{DOCUMENT_COMMAND} takes one argument, a document URI")
    doc = ls.state.documents.get(args[0])
    return None if doc is None else document_digest(doc.text, doc.version)


def document_digest(text: str, version: int) -> dict:
    import hashlib

    data = text.encode("utf-8", "surrogatepass")  # lone surrogates are what the client sent
    return {"version": version, "length": len(text), "sha256": hashlib.sha256(data).hexdigest()}


class Progress:
    """`$/progress` for the model load, when the client supports it; log lines otherwise."""

    _tokens = itertools.count(1)

    def __init__(self, ls: DglsServer):
        self.ls = ls
        self.token: str | None = None
        caps = ls.client_capabilities
        self.supported = bool(caps and caps.window and caps.window.work_done_progress)

    def begin(self, title: str) -> None:
        if not self.supported:
            return
        self.token = f"dgls-load-{next(self._tokens)}"
        self.ls.work_done_progress.create(self.token)
        self.ls.work_done_progress.begin(self.token, t.WorkDoneProgressBegin(title=title, percentage=0))

    def report(self, done: int, total: int) -> None:
        if self.token and total:
            self.ls.work_done_progress.report(
                self.token, t.WorkDoneProgressReport(message=f"{done}/{total} tensors", percentage=100 * done // total))

    def end(self, message: str) -> None:
        if self.token:
            self.ls.work_done_progress.end(self.token, t.WorkDoneProgressEnd(message=message))
            self.token = None
        self.ls.protocol.notify(STATUS_NOTIFICATION, self.ls.state.status.as_dict())

    def fail(self, message: str) -> None:
        self.ls.warn(message)
        self.end(f"failed: {message}")


def main(tcp: tuple[str, int] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    if tcp is not None:
        server.start_tcp(*tcp)
    else:
        server.start_io()

