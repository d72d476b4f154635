"""Every user-facing default of the completion path, in one typed dataclass.

The CLI's flags and the server's initializationOptions / didChangeConfiguration read their
defaults from here and never restate them. Invalid values fall back to the default with one
message each. Model and sampler defaults live with the model (dgls/model/config.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .model.config import CANVAS, PROMPT_CACHE_MIB  # no torch there
from .model.dataclass_args import opt  # the one field-with-help helper
from .runtime import WORKER_IDLE_S

MODEL_ENV = "DGLS_MODEL"
# What to tell a user who has no model; said by the CLI, the server and `dgls status` alike.
NO_MODEL_HINT = (f"set `model` in the config file (~/.config/dgls/config.toml or $DGLS_CONFIG) or the editor "
                 f"settings, or ${MODEL_ENV}, or pass --model DIR; the default dgls-tiny is not in this installation")
CONFIG_ENV = "DGLS_CONFIG"  # the config file; unset: $XDG_CONFIG_HOME/dgls/config.toml
LANGUAGES = ("python", "javascript", "typescript", "tsx", "go", "rust")
BACKENDS = ("local", "vllm")
PROMPT_FORMATS = ("auto", "gemma-chat", "fim", "fim-spm")


DTYPES = ("auto", "float32", "bfloat16", "float16")  # the worker's weight dtypes; auto: bf16 on CUDA, fp32 on CPU


@dataclass(frozen=True)
class Options:
    model: str | None = opt(None, "checkpoint directory or local Hugging Face cache id; unset: $DGLS_MODEL, else dgls-tiny",
                             machine=True)
    device: str | None = opt(None, "`cpu` or `cuda`; unset: CUDA when present")
    dtype: str = opt("auto", "`auto` (bf16 on CUDA, fp32 on CPU), `float32`, `bfloat16`, `float16`")
    debounce_ms: int = opt(150, "wait before an automatic request runs; a newer keystroke replaces it")
    line_budget_ms: int = opt(400, "latency budget of a single-line suggestion: the sampler stops and keeps its best canvas")
    block_budget_ms: int = opt(1200, "latency budget of a block suggestion")
    candidates_invoked: int = opt(4, "parallel candidates when the user asks (one shared prompt encoding)")
    candidates_automatic: int = opt(2, "parallel candidates while typing")
    # The lengths the model was trained at (dgls/model/config.py CANVAS, their one home).
    line_canvas: int = opt(CANVAS.line, "canvas length in tokens for a line hole")
    block_canvas: int = opt(CANVAS.block, "canvas length in tokens for a block hole")
    prefix_tokens: int = opt(1024, "prompt window before the cursor, in model tokens, cut at statement bounds")
    suffix_tokens: int = opt(256, "prompt window after the cursor")
    max_file_bytes: int = opt(2_000_000, "larger files get no suggestions (and the CLI refuses them)")
    enabled_languages: tuple[str, ...] = opt(LANGUAGES, "languages to complete")
    cache_entries: int = opt(250, "exact suggestion cache size (LRU)")
    cache_ttl_s: float = opt(300.0, "exact suggestion cache lifetime")
    worker_idle_s: float = opt(WORKER_IDLE_S, "the worker exits after this long without requests")
    prompt_cache_mib: int = opt(PROMPT_CACHE_MIB, "memory the worker keeps recent prompts' encodings in, so a "
                                "keystroke re-encodes only what changed (0: off; the first server to start the worker sets it)")
    worker_grace_ms: int = opt(5000, "past the latency budget, a worker that answers neither the request nor a "
                                     "health check within this long is given up on (no suggestion)")
    # A remote vLLM (>= 0.33) serving DiffusionGemma instead of the local worker (docs/remote-vllm.md).
    backend: str = opt("local", "`local` (the worker on this machine) or `vllm` (a vLLM server at `remoteUrl`)",
                       choices=BACKENDS, machine=True)
    remote_url: str | None = opt(None, "base URL of the vLLM server, e.g. `https://gpu.example.com:8000`",
                                machine=True)
    remote_model: str | None = opt(None, "the served model name; unset: the first one the server lists",
                                  machine=True)
    remote_api_key_env: str = opt("DGLS_VLLM_API_KEY", "environment variable (named `DGLS_…`) holding the API key, "
                                  "sent as a Bearer token; the key itself is never a setting", machine=True)
    remote_connect_timeout_s: float = opt(2.0, "seconds to open a connection to the vLLM server")
    remote_read_timeout_s: float = opt(10.0, "seconds to wait for a health or model-list answer; a suggestion "
                                       "waits at most its latency budget")
    remote_tokenizer: str | None = opt(None, "local tokenizer.json (or checkpoint directory) of the served model: "
                                       "windows are counted in its tokens and the prompt is sent as token ids; "
                                       "unset: 3 characters per token and a text prompt", machine=True)
    remote_prompt: str = opt("auto", "infill prompt for the remote model: `auto` (from `remoteTokenizer`, else "
                             "`gemma-chat`), `gemma-chat` (DiffusionGemma), `fim` (prefix first) or `fim-spm` (suffix first)",
                             choices=PROMPT_FORMATS)
    remote_line_steps: int = opt(16, "most denoising steps the server runs for a line hole (`diffusion_max_steps`)")
    remote_block_steps: int = opt(48, "most denoising steps for a block hole")
    remote_fallback: bool = opt(False, "when the vLLM server is unreachable or failing, use the local worker")

    def canvas_for(self, kind: str) -> int:
        return self.block_canvas if kind == "block" else self.line_canvas

    def budget_for(self, kind: str) -> int:
        return self.block_budget_ms if kind == "block" else self.line_budget_ms

    def remote_steps_for(self, kind: str) -> int:
        return self.remote_block_steps if kind == "block" else self.remote_line_steps


DEFAULTS = Options()

# Options a workspace may not set (see `opt(machine=...)`): the user's own settings only.
MACHINE_OPTIONS = tuple(f.name for f in fields(Options) if f.metadata.get("machine"))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_BY_CAMEL = {_camel(f.name): f for f in fields(Options)}
_FIELDS = {f.name: f for f in fields(Options)}
_POSITIVE = {"debounce_ms", "cache_entries", "prompt_cache_mib"}  # may be 0; the rest of the numbers must be > 0


def _check(name: str, value, default):
    """The value converted to the field's type, or raise ValueError with the reason."""
    if name == "remote_url":
        if isinstance(value, str) and "@" in value.split("//", 1)[-1].split("/", 1)[0]:
            # It would show in every log line and status; the key has its own variable.
            raise ValueError("no user:password@ in the URL; put the API key in the remoteApiKeyEnv variable")
        if value is None or (isinstance(value, str) and value.startswith(("http://", "https://"))):
            return value
        raise ValueError("expected an http:// or https:// URL or null")
    if name in ("model", "device", "remote_model", "remote_tokenizer"):
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        raise ValueError("expected a non-empty string or null")
    choices = _FIELDS[name].metadata.get("choices")
    if choices:
        if value in choices:
            return value
        raise ValueError(f"expected {' or '.join(choices)}")
    if name == "remote_api_key_env":
        # Only DGLS_* variables: settings can come from a workspace, which must not be able
        # to send another secret of the environment (a cloud key) to a URL it names.
        if isinstance(value, str) and value.startswith("DGLS_") and value.replace("_", "").isalnum():
            return value
        raise ValueError("expected the name of an environment variable starting with DGLS_")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError("expected true or false")
    if name == "dtype":
        if value in DTYPES:
            return value
        raise ValueError(f"expected {', '.join(DTYPES[:-1])} or {DTYPES[-1]}")
    if name == "enabled_languages":
        if isinstance(value, list) and all(v in LANGUAGES for v in value):
            return tuple(value)
        raise ValueError(f"expected a list of {', '.join(LANGUAGES)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    if value < 0 or (value == 0 and name not in _POSITIVE):
        raise ValueError("out of range")
    return type(default)(value)


def from_settings(settings: object, base: Options = DEFAULTS) -> tuple[Options, list[str]]:
    """Options from an editor's settings object (camelCase keys), and one message per
    ignored key or value. `maxLatencyMs` sets both budgets."""
    if settings is None:
        return base, []
    if not isinstance(settings, dict):
        return base, [f"dgls settings must be an object, got {type(settings).__name__}; using defaults"]
    changes, problems = {}, []
    for key, value in settings.items():
        if key == "maxLatencyMs":
            for name in ("line_budget_ms", "block_budget_ms"):
                try:
                    changes[name] = _check(name, value, getattr(DEFAULTS, name))
                except ValueError as e:
                    problems.append(f"setting maxLatencyMs={value!r} ignored: {e}")
                    break
            continue
        f = _BY_CAMEL.get(key)
        if f is None:
            problems.append(f"unknown setting {key!r} ignored")
            continue
        try:
            changes[f.name] = _check(f.name, value, getattr(DEFAULTS, f.name))
        except ValueError as e:
            shown = "…" if f.name == "remote_url" else repr(value)  # it may hold a password
            problems.append(f"setting {key}={shown} ignored: {e}")
    return dataclasses.replace(base, **changes), problems


def model_path(options: Options) -> str | None:
    """The model to run: the option, else $DGLS_MODEL, else the shipped dgls-tiny if present."""
    if options.model:
        return options.model
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    from .model import weights_dir  # light: no torch

    shipped = weights_dir() / "dgls-tiny"
    return str(shipped) if (shipped / "config.json").exists() else None


def settings_doc() -> str:
    """Markdown table of the settings, generated from the dataclass (README embeds it)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for f in fields(Options):
        default = getattr(DEFAULTS, f.name)
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        rows.append(f"| `{_camel(f.name)}` | `{shown}` | {f.metadata['help']} |")
    rows.append("| `maxLatencyMs` | | sets `lineBudgetMs` and `blockBudgetMs` together |")
    return "\n".join(rows)


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dgls" / "config.toml"


def from_config_file(base: Options = DEFAULTS, path: Path | None = None) -> tuple[Options, list[str]]:
    """Options from the user's config file (TOML, the same camelCase keys as the editor
    settings), and one message per problem. It lives in the user's config directory, never
    in a workspace; a missing file is no problem."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return base, []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return base, [f"config file {path} ignored: {e}"]
    options, problems = from_settings(data, base)
    return options, [f"{path}: {p}" for p in problems]
