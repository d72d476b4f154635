"""What the language server does for one suggestion request, as plain async functions.

Per document the latest request wins: a newer request, a change or a close cancels the older
one, in the worker too (it stops at the next denoising step). Automatic requests wait out a
debounce first. A reply is only sent for the document version it was computed for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import ExactCache, TypedThrough
from .complete import Completion, Prepared, finish, prepare
from .documents import DocumentStore, TextDocument, to_offset
from .hole import NONE, Document, classify
from .languages import BY_EXTENSION, BY_NAME, Language
from .model.api import InfillResult
from .options import DEFAULTS, Options, model_path
from .rank import Candidate
from .text import valid_unicode
from .worker_client import WorkerClient, WorkerError, WorkerSpec, WorkerUnavailable, result_from_wire, unwrap

log = logging.getLogger(__name__)


class NoModel(RuntimeError):
    pass


class Backend:
    """The worker for the configured model, and the model's tokenizer for prompt windows
    (loaded here without torch: windows are cut in the server)."""

    def __init__(self, options: Options):
        spec = self.spec_for(options)
        if spec is None:
            raise NoModel("no model configured: set dgls's `model` option or $DGLS_MODEL")
        self.model = spec.model
        self.spec = spec
        self.client = WorkerClient(self.spec)
        self._tokenizer = None

    @staticmethod
    def spec_for(options: Options) -> WorkerSpec | None:
        model = model_path(options)
        return None if model is None else WorkerSpec(model, options.device, options.dtype, options.worker_idle_s)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            from .model.paths import resolve
            from .model.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_file(Path(resolve(self.model)) / "tokenizer.json")
        return len(self._tokenizer.encode(text))


@dataclass
class Inflight:
    uri: str
    version: int
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    worker_request: int | None = None
    client: WorkerClient | None = None

    async def cancel(self) -> None:
        self.cancelled.set()
        if self.worker_request is not None and self.client is not None:
            await self.client.cancel(self.worker_request)


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
    backend: Backend | None = None
    status: Status = field(default_factory=Status)
    encoding: str = "utf-16"
    warned: set[str] = field(default_factory=set)

    def configure(self, options: Options) -> None:
        if self.backend is not None and Backend.spec_for(options) != self.backend.spec:
            # Another model, device or dtype: the next request reaches its own worker. Closing
            # our connection lets the old worker go idle and exit.
            asyncio.ensure_future(self.backend.client.close())
            self.backend = None
        self.options = options
        self.exact = ExactCache(options.cache_entries, options.cache_ttl_s)

    def get_backend(self) -> Backend:
        if self.backend is None:
            self.backend = Backend(self.options)
            self.status.model = self.backend.model
        return self.backend


def language_of(doc: TextDocument) -> Language | None:
    lang = BY_NAME.get(doc.language_id) or {"typescriptreact": BY_NAME["tsx"]}.get(doc.language_id)
    if lang is None:
        suffix = "." + doc.uri.rsplit(".", 1)[-1].lower() if "." in doc.uri.rsplit("/", 1)[-1] else ""
        lang = BY_EXTENSION.get(suffix)
    return lang


async def cancel_document(state: State, uri: str) -> None:
    current = state.inflight.pop(uri, None)
    if current is not None:
        await current.cancel()


@dataclass
class Suggestions:
    completion: Completion
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
        await previous.cancel()
    try:
        if automatic and state.options.debounce_ms:
            try:
                await asyncio.wait_for(me.cancelled.wait(), state.options.debounce_ms / 1e3)
                return None  # superseded while waiting
            except asyncio.TimeoutError:
                pass
        return await _suggest(state, doc, me, line, character, automatic, warn)
    except asyncio.CancelledError:  # the client's $/cancelRequest: stop the worker too
        await asyncio.shield(me.cancel())
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
        hole = classify(Document(text, lang), offset)  # for the replace range; no windows needed
        completion = Completion(hole, [Candidate(r, 1.0, 0) for r in rests], offset, offset)
        return _shape(state, doc.uri, text, offset, completion, "typed-through", remember=False)

    try:
        backend = state.get_backend()
    except NoModel as e:
        state.status.state = "no model"
        warn(str(e))
        return None
    prep = prepare(text, offset, lang, backend.count_tokens, path=_display_path(doc.uri), options=options)
    if prep.request is None:
        return None
    n = options.candidates_automatic if automatic else options.candidates_invoked
    key = (backend.model, prep.request, prep.canvas_length, n, prep.hole.kind)
    cached = state.exact.get(key)
    if cached is not None:
        state.status.cache_hits += 1
        return _shape(state, doc.uri, text, offset, finish(prep, cached), "exact")

    result = await _run(state, backend, prep, n, me, warn)
    if result is None or me.cancelled.is_set() or doc.version != version:
        return None
    state.exact.put(key, result)
    completion = finish(prep, result)
    state.status.last_latency_ms = round((time.perf_counter() - prep.started) * 1e3, 1)
    state.status.served += 1
    return _shape(state, doc.uri, text, offset, completion, None)


async def _run(state: State, backend: Backend, prep: Prepared, n: int, me: Inflight, warn) -> InfillResult | None:
    try:
        rid, reply = await backend.client.infill(prep.request, n=n, canvas_length=prep.canvas_length,
                                                 budget_ms=prep.budget_ms, seed=None)
        me.worker_request, me.client = rid, backend.client
        if me.cancelled.is_set():  # superseded while the request was being sent
            await backend.client.cancel(rid)
        raw = await _reply_within(state, backend, rid, reply, prep.budget_ms)
        data = unwrap(raw)
        result = None if data is None else result_from_wire(data)
        degraded = raw.get("degraded")  # out of memory, the worker gave less than asked
        if degraded:
            warn(f"worker {degraded}")
    except TypeError as e:  # a reply of another shape (a worker of another dgls version)
        warn(f"no suggestion: unexpected reply from the worker ({e})")
        return None
    except WorkerUnavailable as e:
        state.status.state, state.status.message = "unavailable", str(e)
        warn(f"no suggestion: {e}")
        return None
    except WorkerError as e:
        warn(f"no suggestion: {e}")
        with contextlib.suppress(WorkerUnavailable, WorkerError):
            await refresh_status(state, backend)  # e.g. the model failed to load
        state.status.message = str(e)
        return None
    if state.status.state != "ready":  # first answer, or the first from a restarted worker
        with contextlib.suppress(WorkerUnavailable, WorkerError):
            await refresh_status(state, backend)
    state.status.message = degraded  # the last request's news: None when all went well
    return result


async def _reply_within(state: State, backend: Backend, rid: int, reply: asyncio.Future, budget_ms: float | None) -> dict:
    """The worker's reply, or WorkerUnavailable when a wedged worker (stopped, stuck, on a
    machine that froze) gives neither it within the budget plus `worker_grace_ms` nor an
    answer to `health` within `worker_grace_ms`. A worker that answers `health` is loading
    its model or busy with other editors' requests (it keeps budgets itself): wait on."""
    grace = state.options.worker_grace_ms / 1e3
    wait = (budget_ms or 0) / 1e3 + grace
    started = time.monotonic()
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(reply), wait)
        except asyncio.TimeoutError:
            pass
        try:
            await asyncio.wait_for(backend.client.request("health"), grace)
        except (asyncio.TimeoutError, WorkerUnavailable, WorkerError):
            reply.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late reply is dropped
            await backend.client.cancel(rid)
            raise WorkerUnavailable(f"the worker did not answer within {time.monotonic() - started:.1f} s") from None
        wait = grace


async def refresh_status(state: State, backend: Backend) -> None:
    health = await backend.client.request("health")
    info = await backend.client.request("info")
    state.status.state = health["state"] if health["state"] != "failed" else "unavailable"
    state.status.message = health["error"]
    state.status.device, state.status.worker_pid = info.get("device"), health["pid"]


def _shape(state: State, uri: str, text: str, offset: int, completion: Completion, source: str | None,
           *, remember: bool = True) -> Suggestions:
    """Items replace the auto-closed characters right of the cursor on a line hole, so the
    editor shows `foo(x)` over `foo(|)` without a doubled parenthesis."""
    hole = completion.hole
    end = offset
    texts = [s.text for s in completion.suggestions]
    if hole.kind != NONE and "\n" not in "".join(texts) and hole.rest_of_line.strip():
        end = offset + len(hole.rest_of_line)
        texts = [t + hole.rest_of_line for t in texts]
    if remember:
        state.typed.remember(uri, text[:offset], text[offset:], [s.text for s in completion.suggestions])
    return Suggestions(completion, offset, end, texts, source)


def _display_path(uri: str) -> str:
    return uri.removeprefix("file://")


async def warm_up(state: State, progress) -> None:
    """Start (or reach) the worker and follow its model load, reporting progress."""
    try:
        backend = state.get_backend()
    except NoModel as e:
        state.status.state = "no model"
        progress.fail(str(e))
        return
    try:
        await backend.client.connect()
        progress.begin(f"Loading {Path(backend.model).name}")
        while True:
            health = await backend.client.request("health")
            if health["state"] == "loading":
                state.status.state = "loading"
                done, total = health["progress"]
                progress.report(done, total)
                await asyncio.sleep(0.2)
                continue
            break
        await refresh_status(state, backend)
        if health["state"] == "failed":
            progress.fail(health["error"])
            return
        progress.end(f"{Path(backend.model).name} ready on {state.status.device}")
    except (WorkerUnavailable, WorkerError, KeyError, TypeError) as e:
        state.status.state, state.status.message = "unavailable", str(e)
        progress.fail(str(e))
