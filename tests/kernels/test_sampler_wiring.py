"""The sampler reads argmax, entropy and top probability from the one-pass statistics kernel
under DGLS_KERNELS=triton, and still writes the same tokens as the torch backend (whose
bit-for-bit parity with transformers' `generate` tests/model/test_parity.py checks)."""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from dgls.model.api import InfillRequest  # noqa: E402
from dgls.model.engine import Engine  # noqa: E402

REQUEST = InfillRequest("def area(width, height):\n    return ", "\n\nprint(area(2, 3))\n", "python", "geometry.py")


def infill(engine: Engine, max_steps: int):
    return engine.infill(REQUEST, n=2, canvas_length=16, max_steps=max_steps, seed=7)


# The trained model accepts many low-entropy tokens a step and converges; random weights
# accept one token a step (every entropy is near log V) and run out of steps.
@pytest.mark.parametrize(("checkpoint", "max_steps"), [("fixed_checkpoint", 12), ("random_checkpoint", 4)])
def test_same_tokens_through_the_statistics_kernel(checkpoint, max_steps, request, kernel_backend, monkeypatch,
                                                   device):
    from dgls.kernels import sampler_triton

    engine = Engine.load(request.getfixturevalue(checkpoint), dtype="float32", device=device)
    kernel_backend("torch")
    expected = infill(engine, max_steps)

    calls = []
    original = sampler_triton.logit_stats
    monkeypatch.setattr(sampler_triton, "logit_stats", lambda *a, **kw: calls.append(a[0].shape) or original(*a, **kw))
    kernel_backend("triton")
    got = infill(engine, max_steps)

    steps = max(c.steps for c in got.candidates)
    assert calls == [(2, 16, engine.cfg.vocab_size)] * steps  # one pass per step over every position
    assert got.stop_reason == expected.stop_reason
    for a, b in zip(expected.candidates, got.candidates):
        assert (b.token_ids, b.steps, b.accepted_per_step) == (a.token_ids, a.steps, a.accepted_per_step)
        assert b.confidence == pytest.approx(a.confidence, abs=1e-5)
    if checkpoint == "fixed_checkpoint":
        assert expected.stop_reason == "converged" and max(expected.candidates[0].accepted_per_step) > 1
