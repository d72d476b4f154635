"""Fused RMSNorm (and norm-then-add) against `ops.rms_norm` / `ops.rms_norm_add`.

Legend: R rows, N normalised width; B, L, H, Dh as in the network's head-dim norms.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from dgls.kernels import ops  # noqa: E402
from dgls.kernels.rmsnorm_triton import rms_norm, rms_norm_add  # noqa: E402

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
SHAPES = {"rows": (7, 33), "one-wide": (5, 1), "non-pow2": (3, 100), "one-row": (1, 64),
          "4d": (2, 3, 4, 24), "many-short-rows": (130, 16)}


def randn(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_matches_reference_fp32(shape, with_weight, device):
    x = randn(*SHAPES[shape]).to(device)
    weight = randn(x.shape[-1], seed=1).to(device) if with_weight else None
    torch.testing.assert_close(rms_norm(x, weight, 1e-6), ops.rms_norm(x, weight, 1e-6))


@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_add_matches_reference_fp32(shape, device):
    x, residual = randn(*SHAPES[shape]).to(device), randn(*SHAPES[shape], seed=2).to(device)
    weight = randn(x.shape[-1], seed=1).to(device)
    fused = rms_norm_add(x, weight, 1e-6, residual)
    torch.testing.assert_close(fused, ops.rms_norm_add(x, weight, 1e-6, residual))
    assert torch.equal(fused, residual + rms_norm(x, weight, 1e-6))  # the add itself is exact


def test_strided_views_like_the_networks_q_slice(device):
    # Attention.project normalises q = qkv[..., :H*Dh].view(B, L, H, Dh): rows are not evenly spaced.
    B, L, H, Dh = 2, 5, 3, 24
    qkv = randn(B, L, (H + 2) * Dh).to(device)
    q = qkv[..., : H * Dh].view(B, L, H, Dh)
    assert not q.is_contiguous()
    weight = randn(Dh, seed=3).to(device)
    torch.testing.assert_close(rms_norm(q, weight, 1e-6), ops.rms_norm(q, weight, 1e-6))
    residual = randn(B, L, H, Dh, seed=4).to(device).transpose(0, 1)  # strides no view can merge
    q = q.transpose(0, 1)
    torch.testing.assert_close(rms_norm_add(q, weight, 1e-6, residual), ops.rms_norm_add(q, weight, 1e-6, residual))
    torch.testing.assert_close(rms_norm(randn(Dh).to(device), weight, 1e-6), ops.rms_norm(randn(Dh).to(device), weight, 1e-6))


def test_eps_dominates_tiny_rows(device):
    x = torch.full((4, 20), 1e-4, device=device)
    torch.testing.assert_close(rms_norm(x, None, 1e-2), ops.rms_norm(x, None, 1e-2))
    zeros = torch.zeros(3, 8, device=device)
    assert (rms_norm(zeros, None, 1e-6) == 0).all()


def test_empty_and_bad_shapes(device):
    assert rms_norm(torch.empty(0, 16, device=device), None, 1e-6).shape == (0, 16)
    with pytest.raises(ValueError, match="weight has shape"):
        rms_norm(randn(2, 8).to(device), randn(9).to(device), 1e-6)
    with pytest.raises(ValueError, match="residual has shape"):
        rms_norm_add(randn(2, 8).to(device), None, 1e-6, randn(2, 9).to(device))


@pytest.mark.parametrize("shape", [(256, 2816), (64, 16, 256), (4, 2, 512)])
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=GPU)])
def test_bf16_on_gpu(shape, device):
    # Stated tolerance: the fp32 statistics differ from the reference's only in summation order
    # and rsqrt rounding, so each output is at most one bf16 rounding away: 2^-7 relative
    # (rtol 8e-3; atol only matters for outputs near 0).
    x = randn(*shape).to(device, torch.bfloat16)
    residual = randn(*shape, seed=2).to(device, torch.bfloat16)
    weight = randn(shape[-1], seed=1).to(device, torch.bfloat16)
    normed = rms_norm(x, weight, 1e-6)
    torch.testing.assert_close(normed, ops.rms_norm(x, weight, 1e-6), rtol=8e-3, atol=1e-3)
    # The add rounds exactly as the unfused `residual + rms_norm(x)`: bit for bit, given the norm.
    assert torch.equal(rms_norm_add(x, weight, 1e-6, residual), residual + normed)
