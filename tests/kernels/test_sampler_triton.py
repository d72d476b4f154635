"""The streaming logit statistics against `ops.logit_stats`, and that reference against what
the sampler computes today.

Legend: B canvases, L canvas length, R rows, V vocabulary.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from dgls.kernels import ops  # noqa: E402
from dgls.kernels.sampler_triton import logit_stats  # noqa: E402
from dgls.model.sampler import token_entropy  # noqa: E402

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
# fp32: the online sums run in another order than torch's and tanh is computed in the kernel,
# a few fp32 ulps each; on logsumexp values near 30 / 0.4 = 75 that is ~1e-5 absolute.
TOL = dict(rtol=1e-5, atol=2e-5)


def logits(*shape, seed=0, scale=8.0, dtype=torch.float32):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).to(dtype)


def check(got: ops.LogitStats, expected: ops.LogitStats):
    assert torch.equal(got.argmax, expected.argmax)
    for name in ("max_prob", "entropy", "logsumexp"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), **TOL, msg=name)


# (leading shape, V, soft-cap, block): V not a multiple of the block, V below one block, one-wide.
CASES = {
    "canvases": ((2, 5), 1000, 30.0, 256),
    "ragged-vocab": ((7,), 333, 30.0, 64),
    "vocab-below-block": ((3,), 50, 30.0, 1024),
    "no-softcap": ((4,), 515, None, 128),
    "single-token-vocab": ((2,), 1, 30.0, 16),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_reference_fp32(case, device):
    lead, V, cap, block = CASES[case]
    x = logits(*lead, V).to(device)
    check(logit_stats(x, 0.55, cap, block_v=block), ops.logit_stats(x, 0.55, cap))


def test_per_row_temperatures(device):
    x = logits(3, 4, 300).to(device)
    temps = torch.tensor([[0.4], [0.6], [0.8]], device=device)  # one per canvas, like batched requests
    check(logit_stats(x, temps, 30.0, block_v=64), ops.logit_stats(x, temps, 30.0))
    per_position = torch.rand(3, 4, generator=torch.Generator().manual_seed(5)).to(device) + 0.3
    check(logit_stats(x, per_position, 30.0, block_v=64), ops.logit_stats(x, per_position, 30.0))
    zero_dim = torch.tensor(0.7, device=device)  # the sampler's temperature is a 0-d fp32 tensor
    check(logit_stats(x, zero_dim, 30.0, block_v=64), ops.logit_stats(x, zero_dim, 30.0))


def test_bf16_logits_are_read_as_they_come(device):
    x = logits(6, 700, dtype=torch.bfloat16).to(device)
    check(logit_stats(x, 0.6, 30.0, block_v=128), ops.logit_stats(x, 0.6, 30.0))


def test_ties_go_to_the_first_index(device):
    x = logits(4, 200, scale=1.0)
    x[0, [17, 81, 150]] = 50.0  # across chunks of 64, 17 and 81 in the same lane
    x[1, [70, 71]] = 50.0  # inside one chunk
    x[2, [130, 3]] = 50.0  # earlier index in an earlier chunk, seen second by its lane
    x[3] = 0.0  # all equal
    got = logit_stats(x.to(device), 1.0, None, block_v=64)
    assert got.argmax.tolist() == [17, 70, 3, 0]
    assert got.argmax.tolist() == ops.logit_stats(x, 1.0, None).argmax.tolist()


def test_masked_vocabulary(device):
    # -inf logits (banned tokens) count as probability 0 and entropy 0, as Categorical does.
    x = logits(3, 300)
    x[0, ::2] = float("-inf")
    x[1, 100:] = float("-inf")  # whole chunks of -inf after the first
    x[2, :250] = float("-inf")  # whole chunks of -inf before any finite logit
    x = x.to(device)
    got, expected = logit_stats(x, 0.5, None, block_v=64), ops.logit_stats(x, 0.5, None)
    check(got, expected)
    assert torch.isfinite(got.entropy).all()
    # with the soft-cap, -inf becomes -softcap, as torch.tanh(-inf) = -1
    check(logit_stats(x, 0.5, 30.0, block_v=64), ops.logit_stats(x, 0.5, 30.0))


def test_extreme_confidence(device):
    x = logits(2, 400, scale=0.1)
    x[0, 9] = 1e4  # probability 1, entropy 0 (no soft-cap to tame it)
    x = x.to(device)
    got = logit_stats(x, 0.4, None, block_v=128)
    check(got, ops.logit_stats(x, 0.4, None))
    assert got.max_prob[0] == 1.0 and got.entropy[0].abs() < 1e-6


def test_reference_is_what_the_sampler_computes():
    # The sampler divides the decoder's soft-capped logits by the temperature, then reads the
    # argmax, the softmax's max and token_entropy; ops.logit_stats must give the same numbers.
    raw = logits(2, 8, 512)
    capped = torch.tanh(raw / 30.0) * 30.0  # DiffusionGemma.decode's soft-cap
    temperature = torch.tensor(0.4) + torch.tensor(0.4) * (torch.tensor(5, dtype=torch.int32) / 48)
    z = capped / temperature
    stats = ops.logit_stats(raw, temperature, 30.0)
    assert torch.equal(stats.argmax, z.argmax(-1))
    torch.testing.assert_close(stats.entropy, token_entropy(z), rtol=0, atol=0)
    torch.testing.assert_close(stats.max_prob, torch.softmax(z, -1, dtype=torch.float32).max(-1).values,
                               rtol=0, atol=0)
    torch.testing.assert_close(stats.logsumexp, torch.logsumexp(z, -1), rtol=0, atol=0)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=GPU)])
def test_bf16_logits_full_vocabulary_on_gpu(device):
    # DiffusionGemma's vocabulary in bf16, as the decoder's head writes it. Both sides compute
    # in fp32 from the same bf16 inputs; the GPU's exp/log/tanh approximations add a few ulps:
    # stated tolerance 1e-4 relative and absolute. bf16 logits tie often, and tanh may round
    # two adjacent bf16 values alike, so the argmax must hit a maximal value, not an index.
    x = logits(64, 262_144, dtype=torch.bfloat16).to(device)
    got, expected = logit_stats(x, 0.6, 30.0), ops.logit_stats(x, 0.6, 30.0)
    for name in ("max_prob", "entropy", "logsumexp"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-4, atol=1e-4, msg=name)
    z = torch.tanh(x.float() / 30.0) * 30.0 / 0.6
    chosen = z.gather(-1, got.argmax[:, None]).squeeze(-1)
    assert (z.max(-1).values - chosen).max() <= 1e-4
