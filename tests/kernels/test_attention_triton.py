"""The decoder's canvas attention kernel against `ops.canvas_attention` and against attention
written out from the prompt mask itself, as the network used to build it.

Each case is built the way the network builds it: prompts left-padded in a [Bp, P] mask, a
sliding layer's cache holding the last window - 1 positions (smaller or larger than the
prompt), q and keys as strided views of the projections, GQA by head index.

Legend: B canvases, Bp cache batch (1 or B), H/Hkv heads, L canvas, P prompt, W window, Dh.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from dgls import kernels  # noqa: E402
from dgls.kernels import ops  # noqa: E402
from dgls.kernels.attention_triton import AttentionBlocks, canvas_attention, default_blocks  # noqa: E402

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
SMALL = AttentionBlocks(16, 16)  # several query and key blocks even at these sizes


def case(B, Bp, H, Hkv, L, P, lengths, W, Dh, *, seed=0, device="cpu", dtype=torch.float32):
    """q, cache k/v, canvas k/v, the [Bp, P] prompt mask and the kept-cache key_start, as the
    network makes them. `lengths` are the real prompt lengths per cache row (left padding);
    W None is a global layer (whole prompt cached), else the cache keeps the last W - 1."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return (torch.randn(*shape, generator=g) * 1.5).to(device, dtype)

    # The network's q: [B, L, H, Dh] transposed. Scaled so scores have the same spread (std
    # ~9, a peaked softmax) whatever Dh, and fp32 rounding stays comparable across cases.
    q = (randn(B, L, H, Dh) * (16 / Dh) ** 0.5).transpose(1, 2)
    prompt_k, prompt_v = randn(Bp, P, Hkv, Dh).transpose(1, 2), randn(Bp, P, Hkv, Dh).transpose(1, 2)
    keep = P if W is None else W - 1
    ck, cv = prompt_k[:, :, -keep:], prompt_v[:, :, -keep:]  # the encoder's slice, a view
    k, v = randn(B, L, Hkv, Dh).transpose(1, 2), randn(B, L, Hkv, Dh).transpose(1, 2)
    mask = torch.arange(P)[None, :] >= torch.tensor([P - n for n in lengths])[:, None]  # [Bp, P]
    starts = P - mask.sum(-1)
    key_start = (starts - (P - ck.shape[2])).to(device)
    return q, ck, cv, k, v, mask.to(device), key_start


def from_prompt_mask(q, ck, cv, k, v, mask):
    """Softmax attention written out, masked as network.py did before the kernel: the kept
    slice of the prompt mask, then every canvas key; GQA by repeating heads."""
    B, H, L, _ = q.shape
    Bp, Hkv, Pk, _ = ck.shape
    P = mask.shape[1]
    keys = torch.cat([ck.expand(B, -1, -1, -1), k], dim=2).repeat_interleave(H // Hkv, dim=1).double()
    values = torch.cat([cv.expand(B, -1, -1, -1), v], dim=2).repeat_interleave(H // Hkv, dim=1).double()
    allowed = torch.cat([mask[:, P - Pk:].expand(B, -1), mask.new_ones(B, L)], dim=1)[:, None, None, :]
    scores = (q.double() @ keys.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ values).to(q.dtype)


# (B, Bp, H, Hkv, L, P, lengths per cache row, W or None, Dh)
CASES = {
    "shared-unpadded-mha": (2, 1, 2, 2, 19, 21, [21], None, 16),
    "gqa2-window-smaller": (3, 3, 4, 2, 19, 40, [40, 12, 3], 16, 16),
    "gqa4-window-larger": (2, 2, 8, 2, 17, 9, [9, 4], 32, 32),
    "gqa3-shared-padded": (3, 1, 6, 2, 5, 23, [7], 16, 32),
    "padding-cut-off-by-window": (2, 2, 4, 1, 16, 50, [50, 20], 16, 16),
    "row-all-padding-in-window": (2, 2, 2, 1, 9, 33, [33, 1], 8, 16),
    "global-dh64-ragged": (2, 2, 4, 1, 33, 45, [45, 30], None, 64),
    "dh24-not-pow2": (1, 1, 2, 1, 7, 11, [11], None, 24),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_reference_fp32(name, device):
    q, ck, cv, k, v, mask, key_start = case(*CASES[name], device=device)
    # fp32 with different summation orders, outputs mixing values of std 1.5: within 5e-5.
    expected = ops.canvas_attention(q, ck, cv, k, v, key_start)
    torch.testing.assert_close(expected, from_prompt_mask(q, ck, cv, k, v, mask), rtol=5e-5, atol=5e-5)
    got = canvas_attention(q, ck, cv, k, v, key_start, SMALL)
    torch.testing.assert_close(got, expected, rtol=5e-5, atol=5e-5)


def test_default_blocks_and_no_padding_argument(device):
    # One query block covers the canvas, key blocks of 64: the launch the network makes.
    q, ck, cv, k, v, _, _ = case(2, 1, 4, 2, 20, 70, [70], None, 32, seed=3, device=device)
    assert default_blocks(32).block_m >= 20
    torch.testing.assert_close(canvas_attention(q, ck, cv, k, v), ops.canvas_attention(q, ck, cv, k, v),
                               rtol=5e-5, atol=5e-5)


def test_output_is_a_view_the_projection_reshapes_free(device):
    q, ck, cv, k, v, _, key_start = case(2, 2, 4, 2, 9, 12, [12, 5], None, 16, device=device)
    out = canvas_attention(q, ck, cv, k, v, key_start, SMALL)
    assert out.shape == q.shape and out.transpose(1, 2).is_contiguous()


def test_padding_is_invisible_to_a_row(device):
    """What left padding must mean: a padded row attends exactly as its prompt alone would."""
    q, ck, cv, k, v, _, key_start = case(2, 2, 4, 2, 11, 30, [30, 13], None, 16, seed=5, device=device)
    padded = canvas_attention(q, ck, cv, k, v, key_start, SMALL)[1]
    alone = canvas_attention(q[1:], ck[1:, :, 17:], cv[1:, :, 17:], k[1:], v[1:], None, SMALL)[0]
    torch.testing.assert_close(padded, alone, rtol=5e-5, atol=5e-5)


def test_bad_shapes_are_one_line_errors(device):
    q, ck, cv, k, v, _, _ = case(2, 1, 4, 2, 9, 12, [12], None, 16, device=device)
    with pytest.raises(ValueError, match=r"^canvas attention shapes disagree: q \(2, 4, 9, 16\)"):
        canvas_attention(q, ck, cv, k[:, :, :5], v, None)
    with pytest.raises(ValueError, match="key_start has shape"):
        canvas_attention(q, ck, cv, k, v, torch.zeros(2, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="dtypes disagree"):
        canvas_attention(q, ck.double(), cv, k, v)


def test_backend_dispatch(kernel_backend, monkeypatch, device):
    from dgls.kernels import attention_triton

    calls = []
    original = attention_triton.canvas_attention
    monkeypatch.setattr(attention_triton, "canvas_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    q, ck, cv, k, v, _, key_start = case(2, 2, 4, 2, 9, 12, [12, 5], 8, 16, device=device)
    kernel_backend("torch")
    expected = kernels.canvas_attention(q, ck, cv, k, v, key_start)
    assert calls == []
    kernel_backend("triton")
    torch.testing.assert_close(kernels.canvas_attention(q, ck, cv, k, v, key_start), expected, rtol=5e-5, atol=5e-5)
    assert calls == [1]
    kernels.canvas_attention(q.double(), ck.double(), cv.double(), k.double(), v.double(), key_start)
    assert calls == [1]  # fp64 goes to the reference


# Real DiffusionGemma geometry (16 query heads; sliding: 8 KV heads of 256 over a 1023-key
# cache; global: 2 KV heads of 512 = keys' width over the whole 2k prompt), 4 canvases of 256.
REAL = {"sliding-256": (4, 1, 16, 8, 256, 2048, [2048], 1024, 256),
        "global-512": (4, 1, 16, 2, 256, 2048, [2048], None, 512),
        "global-512-padded": (4, 4, 16, 2, 256, 2048, [2048, 1500, 700, 33], None, 512)}


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=GPU)])
def test_bf16_on_gpu_at_real_dims(name, device):
    # Stated tolerance: bf16 inputs, fp32 softmax state, P rounded to bf16 before the PV
    # product (as flash attention does); against the fp32 reference on the same bf16 inputs,
    # outputs (convex mixes of unit-RMS values) within 2e-2 absolute, and no worse than SDPA's own bf16.
    q, ck, cv, k, v, _, key_start = case(*REAL[name], device=device, dtype=torch.bfloat16)
    expected = ops.canvas_attention(*(t.float() for t in (q, ck, cv, k, v)), key_start)
    got = canvas_attention(q, ck, cv, k, v, key_start).float()
    sdpa = ops.canvas_attention(q, ck, cv, k, v, key_start).float()
    err, sdpa_err = (got - expected).abs().max().item(), (sdpa - expected).abs().max().item()
    assert err < 2e-2 and err <= 2 * sdpa_err + 1e-3, (err, sdpa_err)
