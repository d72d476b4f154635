"""The decoder's attention in Triton: canvas queries over the prompt KV cache and the canvas's
own keys, flash-attention style. Reference: `ops.canvas_attention`.

One program takes BLOCK_M canvas queries of one head and streams the keys in BLOCK_N blocks
with an online softmax: first the prompt cache (read where it lies, shared by every canvas
when its batch is 1, never concatenated with the canvas keys), then the canvas. The canvas
is bidirectional and reads every cached key a sliding layer kept, so the only mask is the
prompt's left padding, computed in the kernel from each row's first real key: whole padded
key blocks are skipped, and no [B, H, L, P + L] mask or [B, Hkv, P + L, Dh] key copy exists.
Scale 1 (q and k are RMS-normed); grouped KV heads are read by index, not repeated.

Shape legend: B canvases, Bp prompt-cache batch (1 or B), H query heads, Hkv key/value heads,
L canvas tokens, Pk cached prompt keys, Dh head dim.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

# A finite start for the running max: a block whose keys are all masked then leaves every
# term a clean 0 (exp2(-inf - NEG) = 0, rescale exp2(NEG - NEG) = 1) where -inf - -inf is NaN.
NEG: tl.constexpr = tl.constexpr(-3.0e38)
LOG2E = 1.4426950408889634


class AttentionBlocks(NamedTuple):
    """Launch shape of one call; the defaults per head dim are untuned first guesses (bench/
    bench_attention.py times alternatives on a GPU). Each block dimension is a power of two >= 16."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


def default_blocks(head_dim: int) -> AttentionBlocks:
    # The fp32 accumulator is BLOCK_M x Dh per program: narrower key blocks and more warps as
    # the head widens (DiffusionGemma: 256 on sliding layers, 512 on global ones).
    if head_dim <= 64:
        return AttentionBlocks(64, 64, 4, 2)
    if head_dim <= 128:
        return AttentionBlocks(64, 64, 4, 2)
    if head_dim <= 256:
        return AttentionBlocks(64, 32, 8, 2)
    return AttentionBlocks(32, 32, 8, 1)


@triton.jit
def _online_block(acc, l_i, m_i, q, k, v, valid, qk_scale, PRECISION: tl.constexpr):
    """Fold one key block into the running (acc, l, m) of the online softmax, in base 2."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BM, BN]
    s = tl.where(valid[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _canvas_attention_kernel(
    q_ptr, ck_ptr, cv_ptr, k_ptr, v_ptr, o_ptr, start_ptr,
    H, L, PK, GROUP, qk_scale, s_start,
    sq_b, sq_h, sq_m, sck_b, sck_h, sck_n, scv_b, scv_h, scv_n,
    sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, so_b, so_h, so_m,
    HAS_START: tl.constexpr, D: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid (cdiv(L, BLOCK_M), B * H). Strides are in elements; the last dimension is dense.
    A cache of batch 1 is passed with sck_b = scv_b = s_start = 0."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    kvh = (h // GROUP).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = tl.arange(0, BLOCK_N)  # [BN]
    offs_d = tl.arange(0, BLOCK_D)  # [BD]
    d_ok = offs_d < D

    q_ptrs = q_ptr + b * sq_b + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :]
    q = tl.load(q_ptrs, mask=(offs_m[:, None] < L) & d_ok[None, :], other=0.0)  # [BM, BD]
    m_i = tl.full((BLOCK_M,), NEG, tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)

    # The prompt cache, from the block holding the row's first real key.
    start = 0
    if HAS_START:
        start = tl.minimum(tl.maximum(tl.load(start_ptr + b * s_start), 0), PK)
    ck_base = ck_ptr + b * sck_b + kvh * sck_h
    cv_base = cv_ptr + b * scv_b + kvh * scv_h
    for n0 in range(start - start % BLOCK_N, PK, BLOCK_N):
        n = n0 + offs_n
        valid = (n >= start) & (n < PK)
        kv_mask = valid[:, None] & d_ok[None, :]
        k = tl.load(ck_base + n[:, None] * sck_n + offs_d[None, :], mask=kv_mask, other=0.0)  # [BN, BD]
        v = tl.load(cv_base + n[:, None] * scv_n + offs_d[None, :], mask=kv_mask, other=0.0)
        acc, l_i, m_i = _online_block(acc, l_i, m_i, q, k, v, valid, qk_scale, PRECISION)

    # The canvas's own keys: every one, both directions.
    k_base = k_ptr + b * sk_b + kvh * sk_h
    v_base = v_ptr + b * sv_b + kvh * sv_h
    for n0 in range(0, L, BLOCK_N):
        n = n0 + offs_n
        valid = n < L
        kv_mask = valid[:, None] & d_ok[None, :]
        k = tl.load(k_base + n[:, None] * sk_n + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + n[:, None] * sv_n + offs_d[None, :], mask=kv_mask, other=0.0)
        acc, l_i, m_i = _online_block(acc, l_i, m_i, q, k, v, valid, qk_scale, PRECISION)

    out = acc / l_i[:, None]  # l >= 1: every query reads at least the canvas
    o_ptrs = o_ptr + b * so_b + h * so_h + offs_m[:, None] * so_m + offs_d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < L) & d_ok[None, :])


def _dense_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def canvas_attention(
    q: torch.Tensor,  # [B, H, L, Dh]
    cache_k: torch.Tensor,  # [Bp, Hkv, Pk, Dh]
    cache_v: torch.Tensor,  # [Bp, Hkv, Pk, Dh]
    k: torch.Tensor,  # [B, Hkv, L, Dh]
    v: torch.Tensor,  # [B, Hkv, L, Dh]
    key_start: torch.Tensor | None = None,  # [Bp] int, first cache key each row reads
    blocks: AttentionBlocks | None = None,
) -> torch.Tensor:  # [B, H, L, Dh], a view of a [B, L, H, Dh] buffer
    """`ops.canvas_attention` without the concatenated keys or the mask."""
    B, H, L, Dh = q.shape
    Bp, Hkv, Pk, _ = cache_k.shape
    if (cache_v.shape != cache_k.shape or k.shape != (B, Hkv, L, Dh) or v.shape != k.shape
            or cache_k.shape[3] != Dh or Bp not in (1, B) or H % Hkv):
        raise ValueError(f"canvas attention shapes disagree: q {tuple(q.shape)}, cache {tuple(cache_k.shape)}/"
                         f"{tuple(cache_v.shape)}, canvas k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not q.dtype == cache_k.dtype == cache_v.dtype == k.dtype == v.dtype:
        raise ValueError(f"canvas attention dtypes disagree: q {q.dtype}, cache {cache_k.dtype}/{cache_v.dtype}, "
                         f"canvas {k.dtype}/{v.dtype}")
    if key_start is not None and key_start.shape != (Bp,):
        raise ValueError(f"key_start has shape {tuple(key_start.shape)}, need ({Bp},)")
    # Written as [B, L, H, Dh]: the output projection then reshapes it to [B, L, H * Dh] free.
    out = torch.empty(B, L, H, Dh, dtype=q.dtype, device=q.device).transpose(1, 2)
    if out.numel() == 0:
        return out
    q, cache_k, cache_v, k, v = (_dense_last(t) for t in (q, cache_k, cache_v, k, v))
    blocks = blocks or default_blocks(Dh)
    start = key_start.to(torch.int32).contiguous() if key_start is not None else q  # q: unread
    # A shared cache (Bp = 1) is read by every canvas: batch stride 0.
    shared = Bp == 1
    sck_b, scv_b = (0, 0) if shared else (cache_k.stride(0), cache_v.stride(0))
    grid = (triton.cdiv(L, blocks.block_m), B * H)
    _canvas_attention_kernel[grid](
        q, cache_k, cache_v, k, v, out, start,
        H, L, Pk, H // Hkv, LOG2E, 0 if shared else 1,  # scale 1: q and k are RMS-normed
        q.stride(0), q.stride(1), q.stride(2),
        sck_b, cache_k.stride(1), cache_k.stride(2), scv_b, cache_v.stride(1), cache_v.stride(2),
        k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        HAS_START=key_start is not None, D=Dh, PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n, BLOCK_D=max(16, triton.next_power_of_2(Dh)),
        num_warps=blocks.num_warps, num_stages=blocks.num_stages)
    return out


