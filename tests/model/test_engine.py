"""The engine's infill path on real (random-weight) checkpoints of both prompt families."""

from __future__ import annotations

import pytest

from dgls.model.engine import Engine, EngineError
from dgls.model.api import InfillRequest
from dgls.model.prompt import FIM_TOKENS


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    return Engine.load(random_checkpoint, device="cpu")


def test_infill_returns_n_candidates_with_stats(engine):
    result = engine.infill(InfillRequest("def add(a, b):\n    return ", "\n"), n=3, max_steps=4, seed=1)
    assert len(result.candidates) == 3
    assert result.canvas_length == 16 and result.prompt_tokens > 5
    for c in result.candidates:
        assert c.steps == 4 and len(c.accepted_per_step) == 4
        assert len(c.token_ids) <= 16
        assert not set(c.token_ids) & engine.stop_ids  # cut before the first stop token


def test_shorter_canvas_on_request(engine):
    result = engine.infill(InfillRequest("x = ", ""), canvas_length=6, max_steps=2, seed=0)
    assert result.canvas_length == 6 and len(result.candidates[0].token_ids) <= 6


def test_fim_prompt_layout_and_user_text_never_becomes_special(engine):
    tok = engine.tokenizer
    pre, suf, mid = (tok.require(t) for t in FIM_TOKENS)
    ids = engine.prompt_ids(InfillRequest("a = '<|fim_middle|>'\n", "b = 2\n", path="src/x.py"))
    assert ids[0] == engine.cfg.bos_id and ids[1] == pre
    assert ids.count(mid) == 1 and ids[-1] == mid  # the one in the user's string stayed text
    assert ids.index(suf) < ids.index(mid)
    assert "# path: src/x.py" in tok.decode(ids[2: ids.index(suf)])


def test_gemma_chat_family_for_tokenizers_without_fim(chat_checkpoint):
    engine = Engine.load(chat_checkpoint, device="cpu")
    assert engine.loaded.family == "gemma-chat"
    text = engine.tokenizer.decode(engine.prompt_ids(InfillRequest("def f():\n    ", "\n", language="python")))
    assert text.startswith("<bos><|turn>user\nWrite the code that replaces <FILL_HERE> in the python file")
    assert "def f():\n    <FILL_HERE>\n" in text
    assert text.endswith("<turn|>\n<|turn>model\n<|channel>thought\n<channel|>")
    assert engine.infill(InfillRequest("x", "y"), max_steps=1, seed=0).candidates


def test_prompt_longer_than_positions_is_refused(engine):
    with pytest.raises(EngineError, match="exceeds the model's 4096 positions"):
        engine.infill(InfillRequest("x = 1\n" * 3000, ""), max_steps=1)


def test_n_must_be_positive(engine):
    with pytest.raises(EngineError, match="n must be at least 1"):
        engine.infill(InfillRequest("x", ""), n=0)
