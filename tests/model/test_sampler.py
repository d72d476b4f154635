"""The sampler's own promises: seeds, the stopping callback, statistics."""

from __future__ import annotations

import pytest
import torch

from dgls.model import loader
from dgls.model.config import SamplerConfig
from dgls.model.sampler import MODES, denoise, lean_stats, position_stats


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return loader.load_network(random_checkpoint, device="cpu")[0]


@pytest.fixture(scope="module")
def cache(model):
    return model.encode(torch.tensor([[5, 9, 11, 40, 7]]))


def test_same_seed_same_canvases_other_seed_others(model, cache):
    s = SamplerConfig(max_steps=4)
    a = denoise(model, cache, 2, s, seed=3)
    b = denoise(model, cache, 2, s, seed=3)
    c = denoise(model, cache, 2, s, seed=4)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_callback_stops_the_loop_and_keeps_the_best_canvas_so_far(model, cache):
    seen = []

    def stop_at_three(state):
        seen.append((state.step, state.argmax.clone()))
        return state.step == 3

    result = denoise(model, cache, 2, SamplerConfig(max_steps=20), seed=0, on_step=stop_at_three)
    assert result.stop_reason == "callback"
    assert [step for step, _ in seen] == [1, 2, 3]
    assert result.steps == [3, 3]
    assert torch.equal(result.tokens, seen[-1][1])


def test_statistics_per_canvas(model, cache):
    result = denoise(model, cache, 3, SamplerConfig(max_steps=5), seed=0)
    assert result.stop_reason == "max_steps"
    assert result.steps == [5, 5, 5]
    for accepted, confidence in zip(result.accepted_per_step, result.confidence):
        assert len(accepted) == 5 and all(0 <= a <= 16 for a in accepted)
        assert 0.0 < confidence <= 1.0


def test_cache_batch_must_fit(model):
    cache = model.encode(torch.tensor([[5, 9], [7, 8]]))
    with pytest.raises(ValueError, match="prompt cache has batch 2, need 1 or 3"):
        denoise(model, cache, 3, SamplerConfig(max_steps=2), seed=0)


def test_sampler_config_rejects_nonsense():
    with pytest.raises(ValueError, match="t_min < t_max"):
        SamplerConfig(t_min=0.9, t_max=0.1)
    with pytest.raises(ValueError, match="max_steps"):
        SamplerConfig(max_steps=0)


def test_lean_statistics_agree_with_the_reference_ops():
    # Flat, peaked and one-hot-like rows, as a step's logits are early, late and at the end.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 512, generator=g) * torch.tensor([0.1, 3.0, 40.0])[:, None, None]
    ref_argmax, ref_entropy, ref_max_prob = position_stats(logits, torch.softmax(logits, dim=-1))
    probs, argmax, entropy, max_prob = lean_stats(logits.clone())
    assert torch.equal(argmax, ref_argmax)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=-1))
    torch.testing.assert_close(max_prob, ref_max_prob)
    torch.testing.assert_close(entropy, ref_entropy, atol=2e-5, rtol=1e-5)
    assert (entropy >= 0).all()


def test_lean_entropy_keeps_its_precision_on_peaked_rows():
    # dgls-tiny's vocabulary, soft-capped logits divided by the lowest temperature (up to
    # 30 / 0.4 = 75), one token far ahead: entropies of 1e-6..1e-2, where the stopping rule
    # (mean below 0.005) and the acceptance bound decide. Measured against float64.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 32, 8192, generator=g) * 2 + 45
    logits[..., 7] = logits.amax(-1) + torch.linspace(12, 28, 32)
    z = logits.double()
    p = torch.softmax(z, dim=-1)
    exact = -(p * torch.log_softmax(z, dim=-1)).sum(-1)
    assert exact.min() < 1e-6 and exact.max() > 1e-3  # the range the test is about
    _, _, entropy, _ = lean_stats(logits.clone())
    # The reference's ops are off by up to ~4e-6 here, the plain logsumexp - sum(p * z) by ~5e-4
    # (a tenth of the stopping threshold).
    err = (entropy.double() - exact).abs()
    assert err.max() < 2e-5, f"worst error {err.max():.2e}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lean_mode_writes_what_the_accepted_mode_writes(model, cache, seed):
    # Same draws, same acceptances, same self-conditioning (fp32): the lean arithmetic must not
    # change a single token or step count, also when a canvas stops early and keeps its own.
    def stop_first_at_two(state):
        return torch.tensor([state.step >= 2, False, False])

    s = SamplerConfig(max_steps=12)
    for on_step in (None, stop_first_at_two):
        lean = denoise(model, cache, 3, s, seed=seed, mode="lean", on_step=on_step)
        accepted = denoise(model, cache, 3, s, seed=seed, mode="accepted", on_step=on_step)
        assert torch.equal(lean.tokens, accepted.tokens)
        assert lean.steps == accepted.steps
        assert lean.accepted_per_step == accepted.accepted_per_step


def test_a_stopped_canvas_keeps_what_it_had(model, cache):
    # The canvas stopped after step 2 returns its step-2 argmax while the others go on.
    seen = {}

    def stop_first(state):
        seen[state.step] = state.argmax[0].clone()
        return torch.tensor([state.step >= 2, False])

    for mode in ("lean", "accepted"):
        result = denoise(model, cache, 2, SamplerConfig(max_steps=6), seed=0, on_step=stop_first, mode=mode)
        assert result.steps == [2, 6] and result.stop_reason == "max_steps"
        assert torch.equal(result.tokens[0], seen[2])


def test_unknown_mode_is_refused(model, cache):
    with pytest.raises(ValueError, match="mode must be one of " + ", ".join(MODES)):
        denoise(model, cache, 1, SamplerConfig(max_steps=2), seed=0, mode="fast")
