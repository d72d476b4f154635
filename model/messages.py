"""The worker's messages: one schema for what crosses its socket, one encode and one decode
for each, used by both ends (dgls/worker_client.py and dgls/worker.py).

Frames (dgls/wire.py) bound a message's size; here each field is checked for its type and
range at the boundary, so a bad message is one clear line (MessageError), never a traceback
deep inside the engine. torch-free: the editor side imports it.
"""

from __future__ import annotations

import dataclasses
import math

from .api import InfillCall, InfillCandidate, InfillRequest, InfillResult

MAX_CANDIDATES = 16
MAX_CANVAS = 4096


class MessageError(ValueError):
    """A message of the wrong shape; the text names the field, in one line."""


def _get(data: dict, name: str, kind: type, *, default=None, optional: bool = False, low=None, high=None):
    value = data.get(name, default)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MessageError(f"{name} must be {kind.__name__}")
    if kind is float and math.isnan(value):
        raise MessageError(f"{name} must be a number")
    if low is not None and value < low or high is not None and value > high:
        raise MessageError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise MessageError(f"{name} must be bool")
    return value


def _list(data: dict, name: str, kind: type) -> list:
    value = data.get(name)
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise MessageError(f"{name} must be a list of {kind.__name__}")
    return value


# --- infill: the request ----------------------------------------------------------------

def encode_call(call: InfillCall) -> dict:
    req = call.request
    return {"prefix": req.prefix, "suffix": req.suffix, "language": req.language, "path": req.path,
            "n": call.n, "canvas_length": call.canvas_length, "budget_ms": call.budget_ms, "seed": call.seed,
            "hole": call.hole}


def decode_call(data: dict) -> InfillCall:
    request = InfillRequest(_get(data, "prefix", str, default=""), _get(data, "suffix", str, default=""),
                            language=_get(data, "language", str, default=""), path=_get(data, "path", str, default=""))
    return InfillCall(
        request,
        n=_get(data, "n", int, default=1, low=1, high=MAX_CANDIDATES),
        canvas_length=_get(data, "canvas_length", int, optional=True, low=1, high=MAX_CANVAS),
        budget_ms=_get(data, "budget_ms", float, optional=True, low=0.0),
        seed=_get(data, "seed", int, optional=True),
        hole=_get(data, "hole", str, default=""),
    )


# --- infill: the result -----------------------------------------------------------------

def encode_result(result: InfillResult) -> dict:
    return dataclasses.asdict(result)


def decode_result(data: object) -> InfillResult:
    if not isinstance(data, dict):
        raise MessageError("an infill result must be a map")
    raw = data.get("candidates")
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise MessageError("candidates must be a list of maps")
    candidates = [InfillCandidate(_get(c, "text", str), _list(c, "token_ids", int), _get(c, "steps", int, low=0),
                                  _get(c, "confidence", float), _list(c, "accepted_per_step", int),
                                  _flag(c, "ended")) for c in raw]
    return InfillResult(
        candidates,
        prompt_tokens=_get(data, "prompt_tokens", int, low=0),
        canvas_length=_get(data, "canvas_length", int, low=0),
        encode_ms=_get(data, "encode_ms", float),
        denoise_ms=_get(data, "denoise_ms", float),
        stop_reason=_get(data, "stop_reason", str),
        reused_tokens=_get(data, "reused_tokens", int, default=0, low=0),
        note=_get(data, "note", str, optional=True),
    )
