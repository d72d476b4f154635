"""The engine's infill path on real (random-weight) checkpoints of both prompt families."""

from __future__ import annotations

import time

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


def test_batched_requests_each_get_their_candidates(engine):
    from dgls.model.engine import BatchItem

    items = [BatchItem(InfillRequest("def f(a):\n    return ", "\n"), n=2),
             BatchItem(InfillRequest("x = [", "]\nprint(x)\n", path="m.py"), n=3)]
    a, b = engine.infill_many(items, canvas_length=8)
    assert len(a.candidates) == 2 and len(b.candidates) == 3
    assert a.prompt_tokens == len(engine.prompt_ids(items[0].request))
    assert b.prompt_tokens == len(engine.prompt_ids(items[1].request))


def test_a_cancelled_request_stops_without_stopping_its_batch(engine):
    from dgls.model.engine import BatchItem

    steps = {"n": 0}

    def cancel_after_two_checks():
        steps["n"] += 1
        return steps["n"] > 2

    items = [BatchItem(InfillRequest("a = ", ""), n=1),
             BatchItem(InfillRequest("b = ", ""), n=2, cancelled=cancel_after_two_checks)]
    kept, cancelled = engine.infill_many(items, canvas_length=16)
    assert cancelled.stop_reason == "callback" and all(c.steps == 3 for c in cancelled.candidates)
    assert kept.stop_reason in ("max_steps", "converged") and kept.candidates[0].steps > 3


def test_left_padded_batch_decodes_as_each_prompt_alone(engine):
    """What batching rests on: a prompt encoded left-padded beside a longer one gives the
    canvas the same logits as encoding it alone (RoPE sees relative positions only)."""
    import torch

    model = engine.model
    short, long = [5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]
    canvas = torch.tensor([[30, 31, 32, 33]])
    alone = model.decode(canvas, model.encode(torch.tensor([short])))
    prompt = torch.tensor([[0] * (len(long) - len(short)) + short, long])
    mask = prompt != 0
    mask[1] = True
    padded = model.encode(prompt, mask)
    row0 = type(padded)([k[:1] for k in padded.keys], [v[:1] for v in padded.values], padded.length, padded.mask[:1])
    torch.testing.assert_close(model.decode(canvas, row0), alone, rtol=1e-4, atol=1e-4)


# A slow CPU, simulated: every decoder pass takes 300 ms more than the model's own work.
# The request must come back within its 800 ms budget, with the best canvas so far, rather
# than run the step that ends past it (the budget counts from the call, encode included;
# after one or two steps the next one visibly would not fit). The margins leave room for
# an encode of a few hundred ms on a loaded machine.
SLOW_STEP_S, BUDGET_MS = 0.3, 800


@pytest.fixture
def slow_engine(engine, monkeypatch):
    fast = engine.model.decode

    def decode(*args, **kwargs):
        time.sleep(SLOW_STEP_S)
        return fast(*args, **kwargs)

    monkeypatch.setattr(engine.model, "decode", decode)
    return engine


def test_a_slow_step_that_would_overrun_the_budget_is_not_started(slow_engine):
    result = slow_engine.infill(InfillRequest("def f(a):\n    return ", "\n"), n=2, canvas_length=8, max_steps=20,
                                seed=0, budget_ms=BUDGET_MS)
    assert result.stop_reason == "callback"
    assert result.encode_ms + result.denoise_ms < BUDGET_MS
    assert result.candidates[0].steps in (1, 2)


def test_a_batched_request_keeps_its_budget_on_a_slow_step(slow_engine):
    from dgls.model.engine import BatchItem

    result, = slow_engine.infill_many([BatchItem(InfillRequest("x = [", "]\n"), n=1, budget_ms=BUDGET_MS)],
                                      canvas_length=8, max_steps=20)
    assert result.stop_reason == "callback"
    assert result.encode_ms + result.denoise_ms < BUDGET_MS
    assert result.candidates[0].steps in (1, 2)
