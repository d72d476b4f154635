"""The remote backend: a vLLM server (>= 0.33) serving a DiffusionGemma checkpoint.

Request mapping, from vLLM 0.33's `entrypoints/openai/completion/protocol.py`,
`sampling_params.py` (`_validate_diffusion`) and `utils/diffusion.py`:

- `POST /v1/completions`. dgls renders the infill prompt itself (model/prompt.py, the same
  parts the local engine encodes): vLLM answers 400 to `suffix`.
- `max_tokens` is always the canvas length (vLLM's default is 16); `n` is the number of
  candidates; `vllm_xargs` carries `diffusion_canvas_length` and `diffusion_max_steps` from
  the hole's class.
- `temperature` is sent as 1.0 (vLLM refuses any other value for diffusion models, and a
  server-side default from a generation config would otherwise apply); `seed`, `min_p`,
  `logit_bias` (and `min_tokens`, `bad_words`, `allowed_token_ids`) are never sent.
- Stops are the local path's: the model's control tokens (`stop_token_ids` when the
  tokenizer is known, their text as `stop` always, with `skip_special_tokens` off so the
  text can match), and the text is cut at them here again.

Cancellation and budget: vLLM aborts a request when its client disconnects, so a newer
keystroke, a change, a close or the end of the latency budget cancels the HTTP request,
which closes its connection. A remote canvas only comes back whole: a request over its
budget gives no suggestion (there is no best-so-far as with the local worker).

HTTP client: aiohttp. It is asyncio-native like pygls (no second async layer), released
monthly, has separate connect and socket-read timeouts, keeps connections alive in a pool,
and closes (never pools) a connection whose request was cancelled half-way: exactly what
makes vLLM see the disconnect and abort.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time

from ..model.api import InfillCall, InfillCandidate, InfillRequest, InfillResult
from ..options import Options
from .base import BackendError, BackendUnavailable, Cancel, NoModel, read_tokenizer

VLLM_VERSION = "0.33"  # the vLLM release this request mapping was taken from
CHARS_PER_TOKEN = 3.0  # window estimate without a local tokenizer (code runs ~3-4 characters per token)
POOL_CONNECTIONS = 16  # keep-alive connections kept per server
KEEPALIVE_S = 30.0
WHOLE_CANVAS_NOTE = "remote canvases come back whole: a suggestion over its budget is dropped, not cut short"


class VllmBackend:
    kind = "vllm"

    def __init__(self, options: Options):
        if not options.remote_url:
            raise NoModel("backend is vllm but no remoteUrl is set")
        self.options = options
        self.url = options.remote_url.rstrip("/").removesuffix("/v1")
        self.model: str | None = options.remote_model  # else the first the server lists
        self.served: list[str] | None = None
        self._session = None
        # (tokenizer | None, family, bos id | None); a bad remoteTokenizer is said here, once
        self._prompt = load_prompt_setup(options.remote_tokenizer, options.remote_prompt)

    @staticmethod
    def key_for(options: Options) -> tuple:
        o = options
        return ("vllm", o.remote_url, o.remote_model, o.remote_api_key_env, o.remote_connect_timeout_s,
                o.remote_read_timeout_s, o.remote_tokenizer, o.remote_prompt)

    # --- prompt and windows

    def count_tokens(self, text: str) -> int:
        tok, _, _ = self._prompt
        return len(tok.encode(text)) if tok is not None else math.ceil(len(text) / CHARS_PER_TOKEN)

    def body(self, req: InfillRequest, *, n: int, canvas_length: int, max_steps: int) -> dict:
        """The /v1/completions request for one hole."""
        from ..model.prompt import FAMILIES, build_prompt, prompt_text

        tok, family, bos = self._prompt
        body = {
            "model": self.model,
            "prompt": build_prompt(family, tok, req, bos) if tok is not None else prompt_text(family, req),
            "max_tokens": canvas_length,
            "n": n,
            "temperature": 1.0,
            "stop": list(FAMILIES[family][0]),
            "skip_special_tokens": False,
            "vllm_xargs": {"diffusion_canvas_length": canvas_length, "diffusion_max_steps": max_steps},
        }
        if tok is not None:
            body["stop_token_ids"] = sorted(tok.special_ids())
        return body

    # --- HTTP

    def _headers(self) -> dict:
        key = os.environ.get(self.options.remote_api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def session(self):
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers())
        return self._session

    def _timeout(self, read: float | None):
        import aiohttp

        ct = self.options.remote_connect_timeout_s
        return aiohttp.ClientTimeout(total=None, connect=ct, sock_connect=ct, sock_read=read)

    async def _call(self, method: str, path: str, *, json_body: dict | None = None, read: float | None) -> object:
        """One request; the decoded JSON reply, or a one-line BackendError."""
        import aiohttp

        session = await self.session()
        try:
            async with session.request(method, self.url + path, json=json_body, timeout=self._timeout(read)) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ConnectionTimeoutError:
            raise BackendUnavailable(f"the vLLM server at {self.url} did not accept a connection within "
                                     f"{self.options.remote_connect_timeout_s:g} s") from None
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            raise BackendUnavailable(f"the vLLM server at {self.url} did not answer within "
                                     f"{self.options.remote_read_timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as e:
            raise BackendUnavailable(f"cannot reach the vLLM server at {self.url}: {e.os_error.strerror or e}") from None
        except (aiohttp.ClientError, OSError) as e:
            raise BackendUnavailable(f"lost the connection to the vLLM server at {self.url}: "
                                     f"{type(e).__name__}") from None
        if status != 200:
            raise self._http_error(status, raw, path)
        if path == "/health":
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BackendError(f"malformed reply from the vLLM server at {self.url}{path}: not JSON") from None

    def _http_error(self, status: int, raw: bytes, path: str) -> BackendError:
        reason = error_message(raw)
        env = self.options.remote_api_key_env
        if status in (401, 403):
            hint = f"check ${env}" if os.environ.get(env) else f"set ${env}"
            return BackendError(f"the vLLM server at {self.url} refused the API key (HTTP {status}): {hint}")
        if status == 404:
            return BackendError(f"the vLLM server at {self.url} does not serve model {self.model!r} "
                                f"(HTTP 404): {reason}" if path == "/v1/completions"
                                else f"the vLLM server at {self.url} has no {path} (HTTP 404): is it vLLM?")
        if status >= 500:
            return BackendUnavailable(f"the vLLM server at {self.url} failed (HTTP {status}): {reason}")
        return BackendError(f"the vLLM server at {self.url} refused the request (HTTP {status}): {reason}")

    async def models(self) -> list[str]:
        data = await self._call("GET", "/v1/models", read=self.options.remote_read_timeout_s)
        try:
            self.served = [m["id"] for m in data["data"]]
        except (TypeError, KeyError):
            raise BackendError(f"malformed reply from the vLLM server at {self.url}/v1/models") from None
        return self.served

    async def _model(self) -> str:
        if self.model is None:
            served = await self.models()
            if not served:
                raise BackendError(f"the vLLM server at {self.url} serves no model")
            self.model = served[0]
        return self.model

    async def infill(self, call: InfillCall, cancel: Cancel) -> InfillResult | None:
        """n whole canvases, or None when `cancel` is set first. Cancellation and the end of
        the budget close the HTTP request at once (vLLM aborts on the disconnect)."""
        if call.seed is not None:
            raise BackendError("seeds cannot be used with the vllm backend: vLLM refuses seeds for diffusion models")
        await self._model()
        kind = call.hole or "line"
        body = self.body(call.request, n=call.n, canvas_length=call.canvas_length or self.options.canvas_for(kind),
                         max_steps=self.options.remote_steps_for(kind))
        started = time.perf_counter()
        post = asyncio.ensure_future(self._call("POST", "/v1/completions", json_body=body, read=None))
        stop = asyncio.ensure_future(cancel.wait())
        budget = None if call.budget_ms is None else call.budget_ms / 1e3
        try:
            done, _ = await asyncio.wait({post, stop}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (post, stop):
                if not task.done():
                    task.cancel()  # for the call: its connection is closed, not pooled
        if post in done:
            return parse_completion(post.result(), self._prompt[1], body, (time.perf_counter() - started) * 1e3,
                                    self.url)
        if stop in done:
            return None
        raise BackendError(f"no answer from the vLLM server within the {call.budget_ms:g} ms budget of a {kind} "
                           f"hole ({WHOLE_CANVAS_NOTE}; raise {kind}BudgetMs)")

    async def refresh(self, status) -> None:
        """`GET /health` and `GET /v1/models` into `status`."""
        try:
            await self._call("GET", "/health", read=self.options.remote_read_timeout_s)
            served = await self.models()
            model = await self._model()
        except BackendError as e:
            status.state, status.message = "unavailable", str(e)
            return
        status.model = model
        if model not in served:
            status.state = "unavailable"
            status.message = f"the vLLM server at {self.url} does not serve {model!r} (it serves {', '.join(served)})"
        else:
            status.state, status.message = "ready", None

    async def warm_up(self, status, progress) -> None:
        await self.refresh(status)
        if status.state == "ready":
            progress.end(f"{status.model} ready at {self.url}")
        else:
            progress.fail(status.message)

    def describe(self) -> dict:
        return {"kind": "vllm", "url": self.url, "model": self.model, "served": self.served,
                "vllm_version": VLLM_VERSION, "partial_on_budget": False, "note": WHOLE_CANVAS_NOTE,
                "api_key_env": self.options.remote_api_key_env,
                "api_key_set": bool(os.environ.get(self.options.remote_api_key_env)),
                "tokenizer": self.options.remote_tokenizer}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def load_prompt_setup(tokenizer: str | None, prompt: str):
    """(tokenizer or None, prompt family, BOS id or None) for the remote model. With a local
    tokenizer the prompt goes out as token ids, exactly as the local engine builds it."""
    from ..model.prompt import infill_family, read_fim_order

    if tokenizer is None:
        return None, "gemma-chat" if prompt == "auto" else prompt, None
    tok, directory = read_tokenizer(tokenizer, "remoteTokenizer")
    try:  # a dgls-trained model says which FIM order it learnt
        family = infill_family(tok, read_fim_order(directory)) if prompt == "auto" else prompt
    except ValueError as e:
        raise NoModel(f"remoteTokenizer {tokenizer}: {e}") from None
    if family is None:
        raise NoModel(f"remoteTokenizer {tokenizer} defines neither FIM nor Gemma chat tokens; set remotePrompt")
    try:  # DiffusionGemma's config keeps the token ids in text_config
        raw = json.loads((directory / "config.json").read_text())
        bos = (raw.get("text_config") or raw).get("bos_token_id")
    except (OSError, ValueError, AttributeError):
        bos = tok.token_id("<bos>")
    return tok, family, bos


def error_message(raw: bytes) -> str:
    """vLLM's error reply (`{"error": {"message": ...}}`, or an older top-level `message`) as
    one short line."""
    try:
        data = json.loads(raw)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("message") or data
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, KeyError):
        message = raw.decode("utf-8", "replace")
    line = str(message).strip().splitlines()[0] if str(message).strip() else "no reason given"
    return line[:200]


def parse_completion(data: object, family: str, body: dict, elapsed_ms: float, url: str) -> InfillResult:
    """The server's choices as candidates, in the server's order (vLLM gives no confidence),
    each cut at the first stop text as the local engine cuts at the first control token."""
    try:
        choices = sorted(data["choices"], key=lambda c: c["index"])
        texts = [(c["text"], c.get("finish_reason")) for c in choices]
        if not all(isinstance(t, str) for t, _ in texts):
            raise TypeError
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
    except (TypeError, KeyError, AttributeError, ValueError):
        raise BackendError(f"malformed reply from the vLLM server at {url}/v1/completions: no choices") from None
    stops = body["stop"]
    candidates = []
    for text, finish in texts:
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=None)
        candidates.append(InfillCandidate(text=text if cut is None else text[:cut], token_ids=[], steps=0,
                                          confidence=1.0, accepted_per_step=[],
                                          ended=cut is not None or finish == "stop"))
    canvas = body["max_tokens"]
    return InfillResult(candidates, prompt_tokens, canvas, 0.0, elapsed_ms, "remote")
