"""The worker's message schema (dgls/model/messages.py): what one end encodes the other decodes
to the same thing, and a message of the wrong shape is one line naming the field."""

from __future__ import annotations

import math

import msgpack
import pytest

from dgls.model.api import InfillCall, InfillCandidate, InfillRequest, InfillResult
from dgls.model.messages import MAX_CANDIDATES, MessageError, decode_call, decode_result, encode_call, encode_result
from dgls.worker_client import WorkerError, infill_result


def over_the_wire(data: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False)


def test_a_call_and_a_result_survive_the_wire():
    call = InfillCall(InfillRequest("def f(x):\n    return ", "\n", "python", "/p/a.py"), n=3, canvas_length=32,
                      budget_ms=120.0, seed=7, hole="line")
    assert decode_call(over_the_wire(encode_call(call))) == call
    result = InfillResult([InfillCandidate("x + 1", [5, 6], 3, 0.875, [2, 1, 0], True)], 40, 32, 1.5, 20.25,
                          "converged", reused_tokens=30, note="out of memory: gave 1 of 2 candidates")
    assert decode_result(over_the_wire(encode_result(result))) == result


def test_defaults_fill_what_a_client_leaves_out():
    call = decode_call({"prefix": "x = "})
    assert call == InfillCall(InfillRequest("x = ", ""), n=1, canvas_length=None, budget_ms=None, seed=None)
    assert decode_call({"budget_ms": math.inf}).budget_ms == math.inf  # a seeded CLI run has no clock


@pytest.mark.parametrize("field, value, said", [
    ("prefix", 3, "prefix must be str"),
    ("n", 0, "n=0 is out of range"),
    ("n", MAX_CANDIDATES + 1, f"n={MAX_CANDIDATES + 1} is out of range"),
    ("n", True, "n must be int"),
    ("canvas_length", 5000, "canvas_length=5000 is out of range"),
    ("budget_ms", -1, "budget_ms=-1.0 is out of range"),
    ("budget_ms", math.nan, "budget_ms must be a number"),
    ("seed", "7", "seed must be int"),
])
def test_a_bad_call_names_its_field_in_one_line(field, value, said):
    with pytest.raises(MessageError) as raised:
        decode_call({"prefix": "x", field: value})
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_a_reply_of_another_shape_is_a_worker_error_not_a_type_error():
    good = encode_result(InfillResult([InfillCandidate("x", [1], 1, 0.5, [1], True)], 3, 8, 1.0, 2.0, "converged"))
    for broken, said in [({**good, "candidates": "x"}, "candidates must be a list of maps"),
                         ({**good, "candidates": [{**good["candidates"][0], "token_ids": ["a"]}]}, "token_ids"),
                         ({k: v for k, v in good.items() if k != "prompt_tokens"}, "prompt_tokens must be int")]:
        with pytest.raises(WorkerError, match="unexpected reply from the worker") as raised:
            infill_result({"id": 1, "ok": True, "result": broken})
        assert said in str(raised.value)
    assert infill_result({"id": 1, "ok": True, "result": None, "cancelled": True}) is None
