"""The sampler's per-position statistics in one streaming pass over the vocabulary, in Triton.
Reference: `ops.logit_stats`.

Each row's logits are read once, in their own dtype, chunk by chunk; soft-cap and temperature
are applied in registers. Every lane of the chunk keeps an online-softmax state: its running
max m, s = sum exp(z - m) and u = sum exp(z - m) * (z - m), rescaled when m grows. The lanes
are merged once at the end, and with M, S, U the merged values

    logsumexp = M + log S      max_prob = 1 / S      entropy = log S - U / S

so neither the processed logits nor the probabilities of a row (262,144 of them in fp32 for
DiffusionGemma) are ever written out.

Shape legend: R rows (positions, leading dimensions flattened), V vocabulary, BV chunk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .ops import LogitStats

# A finite start for the running max: an all -inf lane then leaves every term a clean 0
# (exp(-inf - NEG) = 0) where -inf - -inf would be NaN.
NEG: tl.constexpr = tl.constexpr(-3.0e38)


@triton.jit
def _tanh(x):
    """tanh to a few fp32 ulps (tl has none): its Taylor series near 0, where the exp form cancels."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    far = (1.0 - e) / (1.0 + e)
    x2 = ax * ax
    near = ax * (1.0 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333
                 + x2 * (-0.05396825396825397 + x2 * 0.021869488536155203))))
    t = tl.where(ax < 0.25, near, far)
    return tl.where(x < 0, -t, t)


@triton.jit
def _logit_stats_kernel(logits_ptr, temp_ptr, argmax_ptr, max_prob_ptr, entropy_ptr, lse_ptr,
                        V, stride_row, softcap,
                        HAS_SOFTCAP: tl.constexpr, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    temperature = tl.load(temp_ptr + row)
    base = logits_ptr + row * stride_row
    cols = tl.arange(0, BLOCK_V)
    m = tl.full((BLOCK_V,), NEG, tl.float32)  # [BV] per-lane state
    s = tl.zeros((BLOCK_V,), tl.float32)
    u = tl.zeros((BLOCK_V,), tl.float32)
    best = tl.zeros((BLOCK_V,), tl.int64)  # where each lane saw its max first
    for v0 in range(0, V, BLOCK_V):
        valid = v0 + cols < V
        z = tl.load(base + v0 + cols, mask=valid, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            z = _tanh(z / softcap) * softcap
        z = tl.where(valid, z / temperature, float("-inf"))
        # One exp per logit: exp(-|z - m|) is the rescale of the old state when z is the new
        # max, else z's own weight.
        diff = z - m
        e = tl.exp(-tl.abs(diff))
        shift = tl.where(e > 0.0, diff, 0.0)  # a -inf logit adds 0, as Categorical's clamp makes it
        grow = diff > 0.0  # strict: a lane keeps the first index of its max, as torch.argmax does
        best = tl.where(grow, v0 + cols, best)
        u = tl.where(grow, e * (u - shift * s), u + e * shift)
        s = tl.where(grow, e * s + 1.0, s + e)
        m = tl.where(grow, z, m)
    top = tl.max(m, axis=0)
    scale = tl.exp(m - top)
    total = tl.sum(scale * s, axis=0)
    spread = tl.sum(scale * (u + (m - top) * s), axis=0)
    first = tl.min(tl.where(m == top, best, V), axis=0)
    log_total = tl.log(total)
    tl.store(argmax_ptr + row, first)
    tl.store(max_prob_ptr + row, 1.0 / total)
    tl.store(entropy_ptr + row, log_total - spread / total)
    tl.store(lse_ptr + row, top + log_total)


def logit_stats(
    logits: torch.Tensor,  # [..., V]
    temperature: float | torch.Tensor,  # scalar or [...] (broadcastable)
    softcap: float | None,
    block_v: int = 1024,
) -> LogitStats:
    """`ops.logit_stats`, streamed: argmax, max probability, entropy and logsumexp per row."""
    lead = logits.shape[:-1]
    V = logits.shape[-1]
    rows = logits.reshape(-1, V)  # [R, V]
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    R = rows.shape[0]
    temps = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device)
    temps = temps.expand(lead).reshape(-1).contiguous()  # [R]
    device = logits.device
    argmax = torch.empty(R, dtype=torch.int64, device=device)
    max_prob, entropy, lse = (torch.empty(R, dtype=torch.float32, device=device) for _ in range(3))
    if R and V:
        block = min(block_v, triton.next_power_of_2(V))
        _logit_stats_kernel[(R,)](rows, temps, argmax, max_prob, entropy, lse, V, rows.stride(0),
                                  float(softcap or 0.0), HAS_SOFTCAP=bool(softcap), BLOCK_V=block,
                                  num_warps=8 if block >= 2048 else 4)
    return LogitStats(argmax.view(lead), max_prob.view(lead), entropy.view(lead), lse.view(lead))
