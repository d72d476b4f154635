"""A contract server: what dgls's remote backend may expect from vLLM 0.33's OpenAI server
when it serves a DiffusionGemma checkpoint, written from vLLM's own code.

A real vLLM cannot run in CI (no GPU, no CPU build), so the client is tested against this.
Each rule below names where in vLLM 0.33 it comes from:

- `entrypoints/openai/completion/protocol.py` (`CompletionRequest`): `max_tokens` defaults
  to 16 (a null becomes 16 too); `n` candidates; `prompt` is text or token ids; unknown
  top-level fields are ignored (OpenAIBaseModel allows extras); `vllm_xargs` values are
  strings, numbers or lists of them and become `SamplingParams.extra_args`.
- the completion renderer: any `suffix` -> 400 "suffix is not currently supported".
- `_check_model`: a model name the server does not serve -> 404 (a missing name means the
  served one).
- `sampling_params.py` `_validate_diffusion`: temperature other than 1.0 (the default when
  unset), `min_p`, `seed`, `min_tokens`, `logit_bias`, `bad_words`, `allowed_token_ids`
  -> 400 "... are not yet supported with diffusion models."
- `utils/diffusion.py` `validate_diffusion_sampling_params`: `diffusion_canvas_length` a
  positive int no larger than the served canvas (a narrower one needs
  `--async-scheduling`), `diffusion_max_steps` a positive int (capped by the server's
  `max_denoising_steps`). Stricter than vLLM here, as the issue records: a `vllm_xargs` key
  that is none of the diffusion keys is refused with 400, so a misspelt key in dgls cannot
  pass unnoticed.
- `--api-key`: every `/v1/*` path needs `Authorization: Bearer KEY` (401 otherwise);
  `/health` is open.
- Canvases are returned whole, in one non-streamed response; a client that disconnects
  has its request aborted (vLLM's `with_cancellation` / `listen_for_disconnect`): the
  engine stops at its next denoising step. Aborts are recorded for the tests.

The completions are real: the served checkpoint runs through dgls's own engine here
(`Engine.infill_ids`, the prompt exactly as received). A text prompt is tokenized as vLLM
does with `add_special_tokens`: control-token text becomes control tokens, and BOS is
prepended as Gemma's tokenizer does.

Test knobs: `delay_s` (a slow server), `fail = (status, message)` (e.g. a 5xx),
`malformed` (a 200 whose body is not JSON), `healthy` (what /health says).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

DIFFUSION_XARGS = {"diffusion_canvas_length", "diffusion_max_steps", "diffusion_seed_canvas", "diffusion_pinned",
                   "diffusion_read_only", "diffusion_constrained", "diffusion_samples"}
REJECTED_FOR_DIFFUSION = ("The temperature, min_p, seed, min_tokens, logit_bias, bad_words, and allowed_token_ids "
                          "sampling parameters are not yet supported with diffusion models.")


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}},
                             status=status)


class BadRequest(Exception):
    pass


class ContractServer:
    def __init__(self, checkpoint: Path, *, served_name: str = "dgls-test", api_key: str | None = None,
                 max_denoising_steps: int = 48, async_scheduling: bool = True):
        self.checkpoint = Path(checkpoint)
        self.served_name = served_name
        self.api_key = api_key
        self.max_denoising_steps = max_denoising_steps
        self.async_scheduling = async_scheduling
        config = json.loads((self.checkpoint / "config.json").read_text())
        text = config.get("text_config") or config
        self.canvas_length = config["canvas_length"]
        self.max_model_len = text["max_position_embeddings"]
        self.vocab_size = text["vocab_size"]
        self.bos = text.get("bos_token_id")
        # knobs
        self.delay_s = 0.0
        self.fail: tuple[int, str] | None = None
        self.malformed = False
        self.healthy = True
        # records
        self.requests: list[dict] = []  # bodies that reached /v1/completions
        self.aborted: list[str] = []  # request ids whose client went away before the answer
        self.completed: list[str] = []
        self.peers: set = set()  # client (host, port) pairs: one per TCP connection
        self._ids = itertools.count(1)
        self._engine = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contract-engine")  # one engine, as vLLM
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- lifecycle (its own thread and loop, so blocking test code cannot stall it)

    def start(self) -> str:
        from dgls.model.engine import Engine

        # Loaded before serving, like `vllm serve` (whose /health answers once the model is up).
        self._engine = Engine.load(self.checkpoint, dtype="float32", device="cpu")
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application(middlewares=[self._auth])
            app.router.add_get("/health", self._health)
            app.router.add_get("/v1/models", self._models)
            app.router.add_post("/v1/completions", self._completions)
            self._runner = web.AppRunner(app, handler_cancellation=True)  # a disconnect cancels the handler
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            host, port = self._runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="vllm-contract", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.url

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # --- handlers

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.add(tuple(peer) if peer else None)
        if self.api_key and request.path.startswith("/v1") and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def _health(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        return web.Response(status=200 if self.healthy else 503)

    async def _models(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        return web.json_response({"object": "list", "data": [{
            "id": self.served_name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
            "root": str(self.checkpoint), "parent": None, "max_model_len": self.max_model_len}]})

    async def _completions(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not valid JSON", "BadRequestError")
        if not isinstance(body, dict):
            return _error(400, "the request body must be an object", "BadRequestError")
        self.requests.append(body)
        if self.fail is not None:
            status, message = self.fail
            return _error(status, message, "InternalServerError" if status >= 500 else "BadRequestError")
        model = body.get("model")
        if model is not None and model != self.served_name:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        try:
            job = self._admit(body)
        except BadRequest as e:
            return _error(400, str(e), "BadRequestError")
        rid = f"cmpl-{next(self._ids)}"
        abort = threading.Event()
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            result = await asyncio.get_running_loop().run_in_executor(self._pool, self._run, job, abort)
        except asyncio.CancelledError:  # the client disconnected: abort, as vLLM does
            abort.set()
            self.aborted.append(rid)
            raise
        self.completed.append(rid)
        if self.malformed:
            return web.Response(status=200, text='{"id": "' + rid + '", "choices": [{"index": 0, "te',
                                content_type="application/json")
        return web.json_response(self._response(rid, job, result))

    # --- the rules

    def _admit(self, body: dict) -> dict:
        if body.get("suffix") is not None:
            raise BadRequest("suffix is not currently supported")
        max_tokens = body.get("max_tokens")
        max_tokens = 16 if max_tokens is None else max_tokens  # protocol.py's default, also for null
        n = body.get("n", 1)
        for name, value in (("max_tokens", max_tokens), ("n", n)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadRequest(f"{name} must be a positive integer")
        temperature = body.get("temperature")
        if ((temperature is not None and temperature != 1.0) or (body.get("min_p") or 0) > 0
                or body.get("seed") is not None or (body.get("min_tokens") or 0) > 0 or body.get("logit_bias")
                or body.get("bad_words") or body.get("allowed_token_ids")):
            raise BadRequest(REJECTED_FOR_DIFFUSION)
        xargs = body.get("vllm_xargs") or {}
        if not isinstance(xargs, dict):
            raise BadRequest("vllm_xargs must be an object")
        unknown = sorted(set(xargs) - DIFFUSION_XARGS)
        if unknown:
            raise BadRequest(f"unknown vllm_xargs for a diffusion model: {', '.join(unknown)}")
        width = xargs.get("diffusion_canvas_length")
        if width is not None and not (isinstance(width, int) and not isinstance(width, bool)
                                      and 0 < width <= self.canvas_length):
            raise BadRequest("diffusion_canvas_length must be a positive integer no larger than the served canvas.")
        if width is not None and width != self.canvas_length and not self.async_scheduling:
            raise BadRequest("A diffusion_canvas_length smaller than the served canvas requires --async-scheduling.")
        cap = xargs.get("diffusion_max_steps")
        if cap is not None and not (isinstance(cap, int) and not isinstance(cap, bool) and cap > 0):
            raise BadRequest("diffusion_max_steps must be a positive integer.")
        ids = self._tokens(body.get("prompt"), body.get("add_special_tokens", True))
        canvas = width or self.canvas_length
        if len(ids) + max_tokens > self.max_model_len:
            raise BadRequest(f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                             f"requested {len(ids) + max_tokens} tokens.")
        stop = body.get("stop") or []
        return {"ids": ids, "n": n, "max_tokens": max_tokens, "canvas": canvas,
                "steps": min(cap or self.max_denoising_steps, self.max_denoising_steps),
                "stop": [stop] if isinstance(stop, str) else list(stop),
                "stop_token_ids": set(body.get("stop_token_ids") or [])}

    def _tokens(self, prompt, add_special_tokens: bool) -> list[int]:
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            if not all(0 <= t < self.vocab_size for t in prompt):
                raise BadRequest(f"Token id out of vocabulary (size {self.vocab_size})")
            return prompt
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("Either prompt or prompt_embeds must be provided and non-empty.")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.checkpoint / "tokenizer.json"))  # control-token text -> tokens
        ids = tok.encode(prompt, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self.bos is not None and ids[:1] != [self.bos]:
            ids = [self.bos] + ids
        return ids

    def _run(self, job: dict, abort: threading.Event):
        if abort.is_set():
            return None
        return self._engine.infill_ids(job["ids"], n=job["n"], canvas_length=job["canvas"], max_steps=job["steps"],
                                       on_step=lambda _: abort.is_set())

    def _response(self, rid: str, job: dict, result) -> dict:
        choices, generated = [], 0
        for i, cand in enumerate(result.candidates):
            # The engine has cut the canvas at its first stop token (EOS, pad, a control
            # token): those are the served model's stop ids. Then the request's own stops.
            ids = [t for t in cand.token_ids][: job["max_tokens"]]
            cut = next((k for k, t in enumerate(ids) if t in job["stop_token_ids"]), None)
            ids = ids if cut is None else ids[:cut]
            text = self._engine.tokenizer.decode(ids)
            hit = min((p for p in (text.find(s) for s in job["stop"] if s) if p >= 0), default=None)
            text = text if hit is None else text[:hit]
            ended = cand.ended or cut is not None or hit is not None
            finish = "stop" if ended and len(cand.token_ids) <= job["max_tokens"] else "length"
            generated += len(ids)
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None,
                            "token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None})
        return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": self.served_name,
                "choices": choices, "usage": {"prompt_tokens": len(job["ids"]), "completion_tokens": generated,
                                              "total_tokens": len(job["ids"]) + generated}}
