"""What the language server does for one suggestion request, as plain async functions.

Per document the latest request wins: a newer request, a change or a close cancels the older
one, in the backend too (the worker stops at the next denoising step; a remote vLLM request
is closed, which aborts it). Automatic requests wait out a debounce first. A reply is only
sent for the document version it was computed for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from .backends import BackendError, BackendUnavailable, NoModel, backend_key, make_backend
from .backends.base import Backend, Cancel
from .backends.local import LocalBackend
from .cache import ExactCache, TypedThrough
from .complete import Completion, Prepared, finish, prepare, replace_range
from .documents import DocumentStore, TextDocument, to_offset
from .languages import BY_EXTENSION, BY_NAME, Language
from .model.api import InfillResult
from .options import DEFAULTS, Options
from .text import valid_unicode

log = logging.getLogger(__name__)


@dataclass
class Inflight:
    uri: str
    version: int
    cancel: Cancel = field(default_factory=Cancel)  # handed to the backend
    fell_back: bool = False  # answered by the local fallback: not cached under the remote's key


@dataclass
class Status:
    model: str | None = None
    state: str = "starting"  # starting | loading | ready | unavailable | no model
    device: str | None = None
    worker_pid: int | None = None
    last_latency_ms: float | None = None
    served: int = 0
    cache_hits: int = 0
    message: str | None = None
    backend: dict = field(default_factory=lambda: {"kind": "local"})
    prompt_cache: dict | None = None  # the worker's prompt store: entries, MiB, tokens encoded and reused

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class State:
    """Everything the server keeps between requests."""

    options: Options = DEFAULTS
    documents: DocumentStore = field(default_factory=DocumentStore)
    exact: ExactCache = field(default_factory=lambda: ExactCache(DEFAULTS.cache_entries, DEFAULTS.cache_ttl_s))
    typed: TypedThrough = field(default_factory=TypedThrough)
    inflight: dict[str, Inflight] = field(default_factory=dict)
    backend: Backend | None = None  # LocalBackend | VllmBackend
    fallback: LocalBackend | None = None  # the local worker, when a remote one is down (remoteFallback)
    status: Status = field(default_factory=Status)
    encoding: str = "utf-16"
    warned: set[str] = field(default_factory=set)

    def configure(self, options: Options) -> None:
        if self.backend is not None and backend_key(options) != backend_key(self.options):
            # Another backend, model, device or dtype: the next request reaches its own. Closing
            # our connection lets an old worker go idle and exit.
            asyncio.ensure_future(self.backend.close())
            self.backend = None
        if self.fallback is not None and LocalBackend.key_for(options) != LocalBackend.key_for(self.options):
            asyncio.ensure_future(self.fallback.close())
            self.fallback = None
        for kept in (self.backend, self.fallback):
            if kept is not None:  # same key; settings read per request (budgets, steps) follow
                kept.options = options
        self.options = options
        self.exact = ExactCache(options.cache_entries, options.cache_ttl_s)

    def get_backend(self):
        if self.backend is None:
            self.backend = make_backend(self.options)
            self.status.model = self.backend.model
            self.status.backend = self.backend.describe()
        return self.backend

    def backend_or_none(self, report: Callable[[str], None]):
        """The backend, or None after reporting that no model is configured."""
        try:
            return self.get_backend()
        except NoModel as e:
            self.status.state = "no model"
            report(str(e))
            return None

    def get_fallback(self) -> LocalBackend:
        if self.fallback is None:
            self.fallback = LocalBackend(self.options)
        return self.fallback


def language_of(doc: TextDocument) -> Language | None:
    lang = BY_NAME.get(doc.language_id) or {"typescriptreact": BY_NAME["tsx"]}.get(doc.language_id)
    if lang is None:
        suffix = "." + doc.uri.rsplit(".", 1)[-1].lower() if "." in doc.uri.rsplit("/", 1)[-1] else ""
        lang = BY_EXTENSION.get(suffix)
    return lang


def take_inflight(state: State, uri: str) -> Inflight | None:
    """Take `uri`'s request out of flight at once: it will not answer. The caller then
    awaits its `cancel()`, which also stops the backend's work."""
    current = state.inflight.pop(uri, None)
    if current is not None:
        current.cancel.set()
    return current


@dataclass
class Suggestions:
    text: str  # the document the offsets refer to (as the suggestion was computed for it)
    language: str  # its language's name
    offset: int  # cursor
    replace_end: int  # end of the replaced range (covers auto-closed characters on the line)
    texts: list[str]  # what each item inserts over [offset, replace_end)
    from_cache: str | None = None  # "exact" | "typed-through"


async def suggest(state: State, uri: str, line: int, character: int, *, automatic: bool,
                  warn=lambda message: None) -> Suggestions | None:
    """Suggestions at a position, or None (nothing to suggest, superseded, or no model)."""
    doc = state.documents.get(uri)
    if doc is None:
        return None
    me = Inflight(uri, doc.version)
    previous = state.inflight.get(uri)
    state.inflight[uri] = me  # registered before any await, so a newer request always finds it
    if previous is not None:
        await previous.cancel.cancel()
    try:
        if automatic and state.options.debounce_ms:
            try:
                await asyncio.wait_for(me.cancel.wait(), state.options.debounce_ms / 1e3)
                return None  # superseded while waiting
            except asyncio.TimeoutError:
                pass
        return await _suggest(state, doc, me, line, character, automatic, warn)
    except asyncio.CancelledError:  # the client's $/cancelRequest: stop the worker too
        await asyncio.shield(me.cancel.cancel())
        raise
    finally:
        if state.inflight.get(uri) is me:
            del state.inflight[uri]


async def _suggest(state: State, doc: TextDocument, me: Inflight, line: int, character: int,
                   automatic: bool, warn) -> Suggestions | None:
    options = state.options
    lang = language_of(doc)
    if lang is None or lang.name not in options.enabled_languages:
        return None
    if len(doc.text.encode("utf-8", "surrogatepass")) > options.max_file_bytes:
        warn(f"{doc.uri} is over maxFileBytes ({options.max_file_bytes:,}); no suggestions there")
        return None
    text, version = valid_unicode(doc.text), doc.version
    offset = to_offset(text, line, character, state.encoding)
    before, after = text[:offset], text[offset:]

    rests = state.typed.continue_(doc.uri, before, after)
    if rests is not None:
        state.status.cache_hits += 1
        end, texts = replace_range(text, offset, rests)
        return Suggestions(text, lang.name, offset, end, texts, "typed-through")

    backend = state.backend_or_none(warn)
    if backend is None:
        return None
    prep = prepare(text, offset, lang, backend.count_tokens, path=_display_path(doc.uri), options=options)
    if prep.request is None:
        return None
    n = options.candidates_automatic if automatic else options.candidates_invoked
    key = (backend.kind, backend.model, prep.request, prep.canvas_length, n, prep.hole.kind)
    cached = state.exact.get(key)
    if cached is not None:
        state.status.cache_hits += 1
        return _shown(state, doc.uri, text, lang.name, finish(prep, cached), "exact")

    result = await _run(state, backend, prep, n, me, warn)
    if result is None or me.cancel.is_set() or doc.version != version:
        return None
    if not me.fell_back:
        state.exact.put(key, result)
    completion = finish(prep, result)
    state.status.last_latency_ms = round((time.perf_counter() - prep.started) * 1e3, 1)
    state.status.served += 1
    return _shown(state, doc.uri, text, lang.name, completion, None)


async def _run(state: State, backend: Backend, prep: Prepared, n: int, me: Inflight, warn) -> InfillResult | None:
    try:
        result = await backend.infill(prep.call(n), me.cancel)
    except BackendUnavailable as e:
        state.status.state, state.status.message = "unavailable", str(e)
        if backend.kind == "local" or not state.options.remote_fallback:
            warn(_said(backend, e))
            return None
        warn(f"{e}; using the local worker instead (remoteFallback)")
        return await _run_fallback(state, prep, n, me, warn)
    except BackendError as e:
        warn(_said(backend, e))
        if backend.kind == "local":
            await backend.refresh(state.status)  # e.g. the model failed to load
        state.status.message = str(e)
        return None
    if state.status.state != "ready":  # first answer, or the first from a restarted worker
        await backend.refresh(state.status)
    if result is not None and result.note:  # out of memory, the worker gave less than asked
        warn(f"worker {result.note}")
    state.status.message = None if result is None else result.note  # the last request's news
    return result


def _said(backend, error: BackendError) -> str:
    """The log line for a failed request: a remote server's errors are worded the same at
    start-up and per request, so the editor's log shows each once."""
    return f"no suggestion: {error}" if backend.kind == "local" else str(error)


async def _run_fallback(state: State, prep: Prepared, n: int, me: Inflight, warn) -> InfillResult | None:
    me.fell_back = True
    try:
        return await state.get_fallback().infill(prep.call(n), me.cancel)
    except BackendError as e:  # NoModel included
        warn(f"no suggestion from the local fallback either: {e}")
        return None


def _shown(state: State, uri: str, text: str, language: str, completion: Completion,
           source: str | None) -> Suggestions:
    """The items, remembered for typing through them."""
    offset = completion.start
    state.typed.remember(uri, text[:offset], text[offset:], [s.text for s in completion.suggestions])
    return Suggestions(text, language, offset, completion.end, completion.texts, source)


def _display_path(uri: str) -> str:
    return uri.removeprefix("file://")


async def warm_up(state: State, progress) -> None:
    """Reach the backend at start-up: start the worker and follow its model load, or ask a
    remote server for its health and models, reporting progress."""
    backend = state.backend_or_none(progress.fail)
    if backend is None:
        return
    await backend.warm_up(state.status, progress)
    state.status.backend = backend.describe()
