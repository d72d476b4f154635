"""The completion path in-process with a real (random-weight) engine."""

import pytest

from dgls.complete import complete
from dgls.languages import by_name
from dgls.model.engine import Engine

from .cursor import at


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    return Engine.load(random_checkpoint, device="cpu")


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
