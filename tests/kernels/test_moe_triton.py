"""The fused MoE against `ops.moe`: fp32 on small odd shapes (interpreter without a GPU), bf16 on CUDA.

Legend: T tokens, D hidden, E experts, K experts per token, I expert width, BM block rows.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from dgls.kernels import ops  # noqa: E402
from dgls.kernels.moe_configs import MoeBlockConfig  # noqa: E402
from dgls.kernels.moe_triton import align_block_size, fused_moe  # noqa: E402

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
SMALL = MoeBlockConfig(block_m=16, block_n=16, block_k=16, group_m=2)


def routed(T: int, E: int, K: int, seed: int, experts: list[int] | None = None):
    """weights [T, K] fp32 (normalised), ids [T, K]: distinct experts per token, drawn from
    `experts` (default all), with a skewed router so the loads are ragged."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(experts if experts is not None else list(range(E)))
    skew = torch.linspace(0, 3, len(pool))  # later experts are picked far more often
    scores = torch.randn(T, len(pool), generator=g) + skew
    weights, pick = torch.topk(torch.softmax(scores, -1), K, dim=-1)
    return weights / weights.sum(-1, keepdim=True), pool[pick]


def make(T, D, E, I, K, seed=0, experts=None, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(T, D, generator=g)
    gate_up = torch.randn(E, 2 * I, D, generator=g) * D**-0.5
    down = torch.randn(E, D, I, generator=g) * I**-0.5
    weights, ids = routed(T, E, K, seed, experts)
    return (x.to(device, dtype), gate_up.to(device, dtype), down.to(device, dtype), weights.to(device), ids.to(device))


# (T, D, E, I, K, experts used, config): odd D and I exercise the masks, T not a multiple of BM.
CASES = {
    "ragged": (13, 40, 5, 24, 2, None, SMALL),
    "top1": (9, 48, 6, 32, 1, None, SMALL),
    "top8-odd-sizes": (7, 33, 8, 17, 8, None, SMALL),
    "empty-experts": (11, 24, 7, 20, 2, [1, 4, 5], SMALL),
    "one-expert-takes-all": (21, 16, 4, 16, 1, [2], SMALL),
    "several-blocks-per-expert": (40, 20, 3, 24, 2, None, MoeBlockConfig(16, 16, 16, group_m=3)),
    "one-token": (1, 30, 4, 18, 2, None, SMALL),
    "wide-blocks": (10, 50, 4, 40, 3, None, MoeBlockConfig(block_m=32, block_n=64, block_k=32, group_m=1)),
}


@pytest.mark.parametrize("case", CASES)
def test_align_block_size_groups_every_slot_once(case):
    T, _, E, _, K, experts, config = CASES[case]
    _, ids = routed(T, E, K, 0, experts)
    BM = config.block_m
    sorted_slots, block_expert, num_aligned = align_block_size(ids, E, BM)
    S, n = T * K, int(num_aligned)
    counts = torch.bincount(ids.reshape(-1), minlength=E)
    assert n == int(((counts + BM - 1) // BM * BM).sum())
    assert n % BM == 0 and n <= sorted_slots.numel() and sorted_slots.numel() % BM == 0
    live = sorted_slots[:n]
    assert sorted(live[live < S].tolist()) == list(range(S))  # every slot exactly once
    assert (sorted_slots[n:] == S).all()  # idle tail is padding
    for b in range(n // BM):
        block = live[b * BM:(b + 1) * BM]
        real = block[block < S].long()
        assert len(real) > 0  # no block without work: empty experts get none
        assert (ids.reshape(-1)[real] == block_expert[b]).all()
        assert (real.diff() > 0).all()  # token order kept within an expert
    assert set(block_expert[: n // BM].tolist()) == set(ids.unique().tolist())


@pytest.mark.parametrize("act", ["gelu_pytorch_tanh", "gelu"])
@pytest.mark.parametrize("case", CASES)
def test_fused_moe_matches_reference_fp32(case, act, device):
    T, D, E, I, K, experts, config = CASES[case]
    inputs = make(T, D, E, I, K, experts=experts, device=device)
    got = fused_moe(*inputs, act, config)
    torch.testing.assert_close(got, ops.moe(*inputs, act))  # fp32 defaults: rtol 1.3e-6, atol 1e-5


def test_tokens_routed_nowhere_but_zero_weight_still_match(device):
    # Zero routing weights must zero a slot's contribution, not drop or NaN it.
    x, gate_up, down, weights, ids = make(6, 24, 4, 16, 2, device=device)
    weights[:, 1] = 0.0
    torch.testing.assert_close(fused_moe(x, gate_up, down, weights, ids, "gelu_pytorch_tanh", SMALL),
                               ops.moe(x, gate_up, down, weights, ids, "gelu_pytorch_tanh"))


def test_looked_up_config_and_no_tokens(device):
    inputs = make(8, 64, 4, 32, 2, device=device)  # test-tiny's expert shape: a shipped cpu config
    torch.testing.assert_close(fused_moe(*inputs, "gelu_pytorch_tanh"), ops.moe(*inputs, "gelu_pytorch_tanh"))
    x, gate_up, down, weights, ids = inputs
    empty = fused_moe(x[:0], gate_up, down, weights[:0], ids[:0], "gelu_pytorch_tanh")
    assert empty.shape == (0, 64)


def test_bad_arguments_are_one_line_errors():
    x, gate_up, down, weights, ids = make(4, 16, 3, 24, 2)
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        fused_moe(x, gate_up, down, weights, ids, "relu", SMALL)
    with pytest.raises(ValueError, match="moe shapes disagree"):
        fused_moe(x, gate_up, down.transpose(1, 2), weights, ids, "gelu", SMALL)
    with pytest.raises(ValueError, match="moe dtypes disagree"):
        fused_moe(x, gate_up.double(), down, weights, ids, "gelu", SMALL)


@pytest.mark.parametrize("K", [1, 8])
@pytest.mark.parametrize("T", [3, 200])
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=GPU)])
def test_fused_moe_bf16_on_gpu(T, K, device):
    # A DiffusionGemma-like expert (D, I multiples of 16 but not of the blocks) in bf16 against
    # the reference in fp32 on the same bf16 inputs. Stated tolerance: 3e-2 absolute and
    # relative on outputs of order 1: h and the per-expert outputs are rounded to bf16 (2^-8
    # relative) as the reference's bf16 path rounds them, and D = 704 products accumulate in fp32.
    inputs = make(T, 704, 16, 176, K, dtype=torch.bfloat16, device=device)
    expected = ops.moe(*[t.float() if t.is_floating_point() else t for t in inputs], "gelu_pytorch_tanh")
    got = fused_moe(*inputs, "gelu_pytorch_tanh")
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=3e-2, atol=3e-2)
    # and no further from fp32 than the torch path in bf16 is, give or take one bf16 rounding
    torch_bf16 = ops.moe(*inputs, "gelu_pytorch_tanh").float()
    assert (got.float() - expected).abs().max() <= 2 * (torch_bf16 - expected).abs().max() + 1e-2
