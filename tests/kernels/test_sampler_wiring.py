"""The sampler reads argmax, entropy and top probability from the one-pass statistics kernel
under DGLS_KERNELS=triton, and still writes the same tokens as the torch backend (whose
bit-for-bit parity with transformers' `generate` tests/model/test_parity.py checks). The
token test alone is blind to small errors (acceptance counts change only at the entropy
bound), so the statistics themselves are compared with the reference ops too."""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from dgls.model.api import InfillRequest  # noqa: E402
from dgls.model.config import SamplerConfig  # noqa: E402
from dgls.model.engine import Engine  # noqa: E402

REQUEST = InfillRequest("def area(width, height):\n    return ", "\n\nprint(area(2, 3))\n", "python", "geometry.py")


def infill(engine: Engine, sampler: SamplerConfig):
    engine.loaded.sampler = sampler
    return engine.infill(REQUEST, n=2, canvas_length=16, seed=7)


# The trained model accepts many near-zero-entropy tokens a step and converges. Random
# weights put every entropy near log V = 6.2: under a bound of 15 each step accepts the
# few lowest, so how many and which depend on the entropies' values, not just their order.
@pytest.mark.parametrize(("checkpoint", "sampler"), [("fixed_checkpoint", SamplerConfig(max_steps=12)),
                                                     ("random_checkpoint", SamplerConfig(max_steps=4, entropy_bound=15.0))],
                         ids=["trained", "random"])
def test_same_tokens_through_the_statistics_kernel(checkpoint, sampler, request, kernel_backend, monkeypatch, device):
    from dgls.kernels import sampler_triton

    engine = Engine.load(request.getfixturevalue(checkpoint), dtype="float32", device=device)
    kernel_backend("torch")
    expected = infill(engine, sampler)

    calls = []
    original = sampler_triton.logit_stats
    monkeypatch.setattr(sampler_triton, "logit_stats", lambda *a, **kw: calls.append(a[0].shape) or original(*a, **kw))
    kernel_backend("triton")
    got = infill(engine, sampler)

    steps = max(c.steps for c in got.candidates)
    assert calls == [(2, 16, engine.cfg.vocab_size)] * steps  # one pass per step over every position
    assert got.stop_reason == expected.stop_reason
    for a, b in zip(expected.candidates, got.candidates):
        assert (b.token_ids, b.steps, b.accepted_per_step) == (a.token_ids, a.steps, a.accepted_per_step)
        assert b.confidence == pytest.approx(a.confidence, abs=1e-5)
    accepted = expected.candidates[0].accepted_per_step
    if checkpoint == "fixed_checkpoint":
        assert expected.stop_reason == "converged" and max(accepted) > 1
    else:
        assert 1 < min(accepted) and max(accepted) < 16


def test_position_stats_match_the_reference_ops(kernel_backend, device):
    import torch

    from dgls.kernels import dispatch
    from dgls.model.sampler import position_stats

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 1000, generator=g) * torch.tensor([0.1, 3.0, 30.0])[:, None, None]).to(device)
    logits[0, 0, 10] = logits[0, 0, 500] = 50.0  # a tie: the first index wins in both
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    kernel_backend("torch")
    expected = position_stats(logits, probs)
    kernel_backend("triton")
    assert dispatch.runs_triton(logits)
    argmax, entropy, max_prob = position_stats(logits, probs)
    assert torch.equal(argmax, expected[0]) and argmax[0, 0] == 10
    torch.testing.assert_close(entropy, expected[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(max_prob, expected[2], rtol=1e-5, atol=1e-6)
