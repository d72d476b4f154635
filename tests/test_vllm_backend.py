"""The vLLM remote backend against the contract server (tests/support/vllm_contract.py):
the request it sends, what comes back, cancellation and budget closing the request, the
kept-alive connection, and one clear error per failure."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from dgls.backends import BackendError, BackendUnavailable, NoModel
from dgls.backends.base import Cancel
from dgls.backends.vllm import VllmBackend
from dgls.complete import prepare
from dgls.languages import BY_NAME
from dgls.model.api import InfillRequest
from dgls.model.prompt import build_prompt, prompt_text
from dgls.model.tokenizer import Tokenizer
from dgls.options import DEFAULTS
from dgls.service import Status

from .support.fixed_model import CANVAS, answer_of


def options(url, checkpoint=None, **changes):
    base = dataclasses.replace(DEFAULTS, backend="vllm", remote_url=url, remote_model="dgls-test",
                               line_canvas=CANVAS, block_canvas=CANVAS, line_budget_ms=20000, block_budget_ms=20000,
                               remote_tokenizer=None if checkpoint is None else str(checkpoint))
    return dataclasses.replace(base, **changes)


def hole(backend, text="def f(value):\n    return \n", offset=None, opts=None):
    offset = len("def f(value):\n    return ") if offset is None else offset
    return prepare(text, offset, BY_NAME["python"], backend.count_tokens, path="/project/app.py",
                   options=opts or backend.options)


def post(url, body, headers=None):
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_request_mapping_for_vllm_0_33(random_checkpoint):
    fixed_checkpoint = random_checkpoint  # any FIM checkpoint: only its tokenizer and config are read
    backend = VllmBackend(options("http://127.0.0.1:9", fixed_checkpoint))
    req = InfillRequest("x = ", "\n", "python", "/project/app.py")
    body = backend.body(req, n=3, canvas_length=CANVAS, max_steps=16)
    tok = Tokenizer.from_file(fixed_checkpoint / "tokenizer.json")
    # The prompt is the one the local engine encodes (BOS and control tokens by id).
    assert body["prompt"] == build_prompt("fim", tok, req, 2)
    assert body["max_tokens"] == CANVAS and body["n"] == 3 and body["temperature"] == 1.0
    assert body["vllm_xargs"] == {"diffusion_canvas_length": CANVAS, "diffusion_max_steps": 16}
    assert not {"suffix", "seed", "min_p", "logit_bias", "min_tokens"} & set(body)
    assert set(body["stop_token_ids"]) == tok.special_ids() and "<|fim_prefix|>" in body["stop"]
    # Without a local tokenizer: the prompt goes as text (DiffusionGemma's chat prompt by default).
    text = VllmBackend(options("http://127.0.0.1:9")).body(req, n=1, canvas_length=CANVAS, max_steps=16)
    assert text["prompt"] == prompt_text("gemma-chat", req) and "<|turn>" in text["prompt"]
    assert "stop_token_ids" not in text


def test_a_model_trained_suffix_first_is_prompted_suffix_first_remotely(random_checkpoint, tmp_path):
    """A dgls-trained model served by vLLM gets its own order, read from generation_config.json."""
    import shutil

    spm = shutil.copytree(random_checkpoint, tmp_path / "spm")
    gen = spm / "generation_config.json"
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "dgls_fim_order": "spm"}))
    req = InfillRequest("x = ", "\nprint(x)\n", "python", "/project/app.py")
    body = VllmBackend(options("http://127.0.0.1:9", spm)).body(req, n=1, canvas_length=CANVAS, max_steps=16)
    assert body["prompt"] == build_prompt("fim-spm", Tokenizer.from_file(spm / "tokenizer.json"), req, 2)
    assert body["prompt"] != build_prompt("fim", Tokenizer.from_file(spm / "tokenizer.json"), req, 2)


def test_windows_count_with_the_tokenizer_or_three_characters_per_token(random_checkpoint):
    fixed_checkpoint = random_checkpoint
    exact = VllmBackend(options("http://x", fixed_checkpoint))
    tok = Tokenizer.from_file(fixed_checkpoint / "tokenizer.json")
    assert exact.count_tokens("def f(value):") == len(tok.encode("def f(value):"))
    assert VllmBackend(options("http://x")).count_tokens("abcdefg") == 3


def test_missing_url_or_unreadable_tokenizer_is_one_line(tmp_path):
    with pytest.raises(NoModel, match="no remoteUrl"):
        VllmBackend(dataclasses.replace(DEFAULTS, backend="vllm"))
    with pytest.raises(NoModel, match="remoteTokenizer"):
        VllmBackend(options("http://x", tmp_path / "nothing-here"))


def test_contract_server_enforces_what_vllm_enforces(contract):
    ok = {"model": "dgls-test", "prompt": "x = ", "max_tokens": 4}
    assert post(contract.url, ok)[0] == 200
    for extra, says in [({"suffix": "\n"}, "suffix is not currently supported"),
                        ({"temperature": 0.7}, "not yet supported with diffusion"),
                        ({"seed": 1}, "not yet supported with diffusion"),
                        ({"min_p": 0.1}, "not yet supported with diffusion"),
                        ({"logit_bias": {"1": 1.0}}, "not yet supported with diffusion"),
                        ({"vllm_xargs": {"diffusion_steps": 4}}, "unknown vllm_xargs"),
                        ({"vllm_xargs": {"diffusion_canvas_length": 10 ** 6}}, "no larger than the served canvas")]:
        status, body = post(contract.url, {**ok, **extra})
        assert status == 400 and says in body["error"]["message"], extra
    assert post(contract.url, {**ok, "model": "other"})[0] == 404
    # max_tokens defaults to 16 when left out: an unset canvas would be cut there.
    status, body = post(contract.url, {"prompt": "x = ", "n": 2})
    assert status == 200 and len(body["choices"]) == 2 and body["usage"]["completion_tokens"] <= 2 * 16
    contract.api_key = "secret"
    assert post(contract.url, ok)[0] == 401
    assert post(contract.url, ok, {"Authorization": "Bearer secret"})[0] == 200


async def test_real_completions_come_back_whole_and_candidates_are_n(contract, fixed_checkpoint):
    answer = answer_of(fixed_checkpoint)
    for tokenizer in (fixed_checkpoint, None):  # token-id prompt, then a text prompt
        backend = VllmBackend(options(contract.url, tokenizer, remote_prompt="fim"))
        try:
            prep = hole(backend)
            result = await backend.infill(prep.call(2), Cancel())
        finally:
            await backend.close()
        assert len(result.candidates) == 2 and all(c.text.startswith(answer) for c in result.candidates)
        assert result.stop_reason == "remote" and result.canvas_length == CANVAS
    sent = contract.requests[-1]
    assert sent["vllm_xargs"]["diffusion_max_steps"] == DEFAULTS.remote_line_steps


async def test_connections_are_kept_alive(contract, fixed_checkpoint):
    backend = VllmBackend(options(contract.url, fixed_checkpoint))
    try:
        for _ in range(3):
            assert await backend.infill(hole(backend).call(1), Cancel())
        await backend.refresh(Status())
    finally:
        await backend.close()
    assert len(contract.peers) == 1  # one TCP connection for five requests


async def test_cancel_closes_the_request_and_the_server_aborts(contract, fixed_checkpoint):
    contract.delay_s = 5.0
    backend = VllmBackend(options(contract.url, fixed_checkpoint))
    me = Cancel()
    try:
        task = asyncio.ensure_future(backend.infill(hole(backend).call(1), me))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await me.cancel()
        assert await asyncio.wait_for(task, 2) is None
        assert time.monotonic() - started < 1
    finally:
        await backend.close()
    assert await asyncio.to_thread(contract.wait_for, lambda: contract.aborted, 5)
    assert not contract.completed


async def test_an_exhausted_budget_closes_the_request(contract, fixed_checkpoint):
    contract.delay_s = 5.0
    backend = VllmBackend(options(contract.url, fixed_checkpoint, line_budget_ms=300))
    started = time.monotonic()
    try:
        with pytest.raises(BackendError, match="within the 300 ms budget of a line hole.*come back whole"):
            await backend.infill(hole(backend).call(1), Cancel())
    finally:
        await backend.close()
    assert time.monotonic() - started < 2
    assert await asyncio.to_thread(contract.wait_for, lambda: contract.aborted, 5)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("case", ["unreachable", "401", "404", "400", "503", "malformed", "slow"])
async def test_each_failure_is_one_clear_line(case, contract, fixed_checkpoint, monkeypatch):
    url = contract.url
    changes = {}
    if case == "unreachable":
        url = f"http://127.0.0.1:{free_port()}"
    elif case == "401":
        contract.api_key = "secret"
        monkeypatch.setenv("DGLS_VLLM_API_KEY", "wrong")
    elif case == "404":
        changes["remote_model"] = "not-served"
    elif case == "400":
        contract.fail = (400, "This model's maximum context length is 4096 tokens.")
    elif case == "503":
        contract.fail = (503, "engine is dead\nTraceback ...")
    elif case == "malformed":
        contract.malformed = True
    elif case == "slow":  # health and model list slower than the read timeout
        contract.delay_s = 3.0
        changes["remote_read_timeout_s"] = 0.3
        changes["remote_model"] = None
    backend = VllmBackend(options(url, fixed_checkpoint, **changes))
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as raised:
            await backend.infill(hole(backend).call(1), Cancel())
    finally:
        await backend.close()
    message = str(raised.value)
    assert "\n" not in message and time.monotonic() - started < 3
    expected = {"unreachable": ("cannot reach", True), "401": ("refused the API key (HTTP 401): check $DGLS_VLLM_API_KEY", False),
                "404": ("does not serve model 'not-served'", False), "400": ("HTTP 400): This model's maximum", False),
                "503": ("failed (HTTP 503): engine is dead", True), "malformed": ("malformed reply", False),
                "slow": ("did not answer within 0.3 s", True)}[case]
    assert expected[0] in message
    assert isinstance(raised.value, BackendUnavailable) == expected[1]  # what a fallback is for


async def test_status_asks_health_and_models(contract, fixed_checkpoint):
    backend = VllmBackend(options(contract.url, fixed_checkpoint, remote_model=None))
    status = Status()
    try:
        await backend.refresh(status)
        assert (status.state, status.model) == ("ready", "dgls-test")
        contract.healthy = False
        await backend.refresh(status)
        assert status.state == "unavailable" and "HTTP 503" in status.message
    finally:
        await backend.close()
    info = backend.describe()
    assert info["served"] == ["dgls-test"] and info["partial_on_budget"] is False and "whole" in info["note"]


# --- the CLI through the same backend, configured by the user's config file


def run_cli(args, config, code="", timeout=120):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DGLS_CONFIG": str(config)}
    env.pop("DGLS_VLLM_API_KEY", None)
    script = ("import sys; from dgls.cli import main; rc = main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def write_config(path, url, checkpoint, extra=""):
    path.write_text(f'backend = "vllm"\nremoteUrl = "{url}"\nremoteTokenizer = "{checkpoint}"\n'
                    f"lineCanvas = {CANVAS}\nblockCanvas = {CANVAS}\nmaxLatencyMs = 30000\n{extra}")
    return path


def test_cli_complete_and_status_use_the_remote_backend_without_torch(contract, fixed_checkpoint, tmp_path):
    config = write_config(tmp_path / "config.toml", contract.url, fixed_checkpoint)
    source = tmp_path / "app.py"
    source.write_text("def f(value):\n    return \n")
    done = run_cli(["complete", f"{source}:2", "--json", "--n", "2"], config)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["candidates"][0]["text"].startswith(answer_of(fixed_checkpoint)) and out["stop_reason"] == "remote"
    assert contract.requests[-1]["n"] == 2 and contract.requests[-1]["model"] == "dgls-test"  # listed by the server
    status = run_cli(["status", "--json"], config)
    info = json.loads(status.stdout)
    assert status.returncode == 0 and info["state"] == "ready" and info["backend"]["served"] == ["dgls-test"]
    assert info["backend"]["partial_on_budget"] is False
    refused = run_cli(["complete", f"{source}:2", "--seed", "1"], config)
    assert refused.returncode == 2 and "vLLM refuses seeds" in refused.stderr


def test_cli_status_of_a_dead_server_and_bad_config(fixed_checkpoint, tmp_path):
    config = write_config(tmp_path / "config.toml", f"http://127.0.0.1:{free_port()}", fixed_checkpoint,
                          'debounceMs = "soon"\n')
    done = run_cli(["status"], config)
    assert done.returncode == 1
    assert "debounceMs='soon' ignored" in done.stderr and "cannot reach the vLLM server" in done.stdout
    assert "Traceback" not in done.stderr
    bad = run_cli(["status", "--url", "ftp://x"], config)
    assert bad.returncode == 2 and "http:// or https://" in bad.stderr
    (tmp_path / "broken.toml").write_text("backend = \n")
    broken = run_cli(["status", "--backend", "vllm", "--url", "http://127.0.0.1:9"], tmp_path / "broken.toml")
    assert "broken.toml ignored" in broken.stderr and broken.returncode == 1


def test_remote_settings_are_checked_like_the_others(tmp_path):
    from dgls.options import from_config_file, from_settings

    options, problems = from_settings({"backend": "vllm", "remoteUrl": "https://gpu:8000", "remoteFallback": True,
                                       "remoteLineSteps": 8})
    assert (options.backend, options.remote_url, options.remote_fallback, options.remote_steps_for("line")) == \
        ("vllm", "https://gpu:8000", True, 8) and problems == []
    options, problems = from_settings({"backend": "cloud", "remoteUrl": "gpu:8000", "remoteFallback": "yes",
                                       "remoteApiKeyEnv": "$(rm -rf)", "remotePrompt": "chatml"})
    assert options == DEFAULTS and len(problems) == 5
    # A workspace's settings cannot make dgls send another secret of the environment.
    options, problems = from_settings({"remoteApiKeyEnv": "AWS_SECRET_ACCESS_KEY"})
    assert options == DEFAULTS and "starting with DGLS_" in problems[0]
    options, problems = from_settings({"remoteUrl": "https://me:s3cret@gpu:8000"})
    assert options == DEFAULTS and "remoteApiKeyEnv" in problems[0] and "s3cret" not in problems[0]
    config = tmp_path / "c.toml"
    config.write_text('backend = "vllm"\nremoteUrl = "http://h:1"\n')
    options, problems = from_config_file(DEFAULTS, config)
    assert options.backend == "vllm" and problems == []
    assert from_config_file(DEFAULTS, tmp_path / "missing.toml") == (DEFAULTS, [])
