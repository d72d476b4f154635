"""Plain-PyTorch reference implementations of the step's ops.

These are the ground truth the fused kernels are tested against, and what runs on CPU.
Shapes: T tokens, D hidden, E experts, K experts per token, I expert width,
B batch, H heads, Hkv key/value heads, Lq/Lk query/key lengths, Dh head dim,
R rows (leading dimensions flattened), V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm, computed in fp32 (x * (mean(x^2) + eps)^-1/2 * weight)."""
    xf = x.float()
    y = xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    if weight is not None:
        y = y * weight.float()
    return y.type_as(x)


def rms_norm_add(x: torch.Tensor, weight: torch.Tensor | None, eps: float, residual: torch.Tensor) -> torch.Tensor:
    """residual + rms_norm(x): Gemma's norm-then-add after each sub-block, rounded as unfused."""
    return residual + rms_norm(x, weight, eps)


def activation(name: str):
    if name == "gelu_pytorch_tanh":
        return lambda t: F.gelu(t, approximate="tanh")
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unknown activation {name!r}")


def moe(
    x: torch.Tensor,  # [T, D]
    gate_up: torch.Tensor,  # [E, 2I, D]
    down: torch.Tensor,  # [E, D, I]
    topk_weights: torch.Tensor,  # [T, K] fp32
    topk_ids: torch.Tensor,  # [T, K]
    act: str,
) -> torch.Tensor:  # [T, D]
    """Sum over each token's K experts of weight * down(act(gate) * up), experts grouped by a sort."""
    T, K = topk_ids.shape
    fn = activation(act)
    flat = topk_ids.reshape(-1)  # [T*K]
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=gate_up.shape[0]).tolist()
    token_of = order // K  # [T*K] token of each sorted slot
    xs = x[token_of]  # [T*K, D]
    out = torch.empty_like(xs)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        seg = xs[start : start + n]
        g, u = F.linear(seg, gate_up[e]).chunk(2, dim=-1)
        out[start : start + n] = F.linear(fn(g) * u, down[e])
        start += n
    weighted = out * topk_weights.reshape(-1)[order, None]  # fp32
    return torch.zeros_like(x).index_add_(0, token_of, weighted.to(x.dtype))


def attention(
    q: torch.Tensor,  # [B, H, Lq, Dh]
    k: torch.Tensor,  # [B, Hkv, Lk, Dh]
    v: torch.Tensor,  # [B, Hkv, Lk, Dh]
    mask: torch.Tensor | None = None,  # [Lq, Lk] bool, True = attend
) -> torch.Tensor:  # [B, H, Lq, Dh]
    """Scaled-dot-product attention with scale 1 (q and k are RMS-normed) and grouped KV heads."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0, enable_gqa=q.shape[1] != k.shape[1])


def canvas_attention(
    q: torch.Tensor,  # [B, H, L, Dh] canvas queries
    cache_k: torch.Tensor,  # [Bp, Hkv, Pk, Dh] prompt keys the encoder cached, Bp = 1 or B
    cache_v: torch.Tensor,  # [Bp, Hkv, Pk, Dh]
    k: torch.Tensor,  # [B, Hkv, L, Dh] the canvas's own keys
    v: torch.Tensor,  # [B, Hkv, L, Dh]
    key_start: torch.Tensor | None = None,  # [Bp] int: first cache key each row reads (left padding)
) -> torch.Tensor:  # [B, H, L, Dh]
    """The decoder's attention: each canvas token reads the cached prompt keys from `key_start`
    on (None: all of them; a sliding layer's cache already holds only its window) and every
    canvas token in both directions. Keys concatenated, an explicit [B, 1, 1, Pk + L] mask."""
    B, L, Pk = q.shape[0], q.shape[2], cache_k.shape[2]
    keys = torch.cat([cache_k.expand(B, -1, -1, -1), k], dim=2)
    values = torch.cat([cache_v.expand(B, -1, -1, -1), v], dim=2)
    mask = None
    if key_start is not None:
        kept = torch.arange(Pk, device=q.device)[None, :] >= key_start[:, None]  # [Bp, Pk]
        mask = torch.cat([kept.expand(B, -1), kept.new_ones(B, L)], dim=1)[:, None, None, :]
    return attention(q, keys, values, mask)


class LogitStats(NamedTuple):
    """Per-position summaries of a distribution over the vocabulary, each [...] (logits [..., V])."""

    argmax: torch.Tensor  # int64, first index of the largest processed logit
    max_prob: torch.Tensor  # fp32, the largest probability
    entropy: torch.Tensor  # fp32, as torch.distributions.Categorical computes it
    logsumexp: torch.Tensor  # fp32, of the processed logits


def logit_stats(
    logits: torch.Tensor,  # [..., V] raw logits (any float dtype)
    temperature: float | torch.Tensor,  # scalar, or [...] per position (broadcastable)
    softcap: float | None,
) -> LogitStats:
    """What the sampler reads from each position's logits, after soft-cap and temperature:
    z = tanh(logits / softcap) * softcap / temperature, all in fp32."""
    z = logits.float()
    if softcap:
        z = torch.tanh(z / softcap) * softcap
    if isinstance(temperature, torch.Tensor) and temperature.dim() > 0:
        temperature = temperature.float()[..., None]
    z = z / temperature
    return LogitStats(
        argmax=z.argmax(dim=-1),
        max_prob=torch.softmax(z, dim=-1).max(dim=-1).values,
        entropy=torch.distributions.Categorical(logits=z, validate_args=False).entropy(),
        logsumexp=torch.logsumexp(z, dim=-1),
    )
