"""The completion path in-process with a real (random-weight) engine."""

import asyncio

import pytest

from dgls.backends.engine import EngineBackend
from dgls.complete import complete as complete_async
from dgls.complete import replace_range
from dgls.languages import by_name
from dgls.model.api import InfillCall, InfillRequest
from dgls.model.engine import Engine

from .cursor import at


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    return EngineBackend(Engine.load(random_checkpoint, device="cpu"))


def complete(backend, *args, **kwargs):
    return asyncio.run(complete_async(backend, *args, **kwargs))


def test_suggestions_are_post_processed_and_valid(engine):
    text, offset = at("def f(a, b):\n    return █\n")
    result = complete(engine, text, offset, by_name("python"), n=4, seed=0, budget_ms=10_000)
    assert result.hole.kind == "line" and result.canvas_length == 32
    assert len(result.suggestions) + len(result.rejected) >= 1
    for s in result.suggestions:
        assert "\n" not in s.text and s.text.strip()
    confidences = [s.confidence for s in result.suggestions]
    assert confidences == sorted(confidences, reverse=True)


def test_end_of_block_opener_suggestions_start_on_the_next_line(engine):
    text, offset = at("def f(a, b):█\n")
    result = complete(engine, text, offset, by_name("python"), n=4, seed=3, budget_ms=10_000)
    assert result.hole.needs_newline and result.canvas_length == 128
    for s in result.suggestions:
        assert s.text.startswith("\n    ")


def test_no_model_call_where_no_code_belongs(engine):
    text, offset = at("# a comment █\n")
    result = complete(engine, text, offset, by_name("python"))
    assert result.hole.kind == "none" and result.suggestions == [] and result.prompt_tokens == 0


def test_prompt_window_respects_the_token_budget(engine):
    from dgls.options import Options

    text, offset = at("import os\n" * 3000 + "x = █\n")
    result = complete(engine, text, offset, by_name("python"), n=1, seed=0,
                      options=Options(prefix_tokens=64, suffix_tokens=16))
    assert result.prompt_tokens <= 64 + 16 + 10  # plus the FIM markers and header


def test_one_line_items_replace_the_auto_closed_characters():
    text, offset = at("print(f(█))\n")
    assert replace_range(text, offset, ["x", "y, 2"]) == (offset + 2, ["x))", "y, 2))"])
    # a multi-line middle goes in at the cursor; nothing but spaces right of it is left alone
    assert replace_range(text, offset, ["x\n    y"]) == (offset, ["x\n    y"])
    spaces, at_spaces = at("x = █  \n")
    assert replace_range(spaces, at_spaces, ["1"]) == (at_spaces, ["1"])


def test_completion_items_carry_their_final_text_and_range(engine):
    text, offset = at("def f(a, b):\n    return max(█)\n")
    result = complete(engine, text, offset, by_name("python"), n=4, seed=0, budget_ms=10_000, mode="line")
    assert result.start == offset
    if result.suggestions:  # random weights: the post-processing may keep none
        assert result.end == offset + 1
        assert result.texts == [s.text + ")" for s in result.suggestions]


def test_a_request_cancelled_before_it_runs_answers_nothing(engine):
    from dgls.backends.base import Cancel

    async def run():
        cancel = Cancel()
        await cancel.cancel()  # e.g. superseded while its prompt was being built
        return await engine.infill(InfillCall(InfillRequest("def f(a, b):\n    ", "\n"), n=1, seed=0), cancel)

    assert asyncio.run(run()) is None
