"""Fused RMSNorm in Triton, optionally followed by a residual add. References: `ops.rms_norm`,
`ops.rms_norm_add`.

One read of x (and of the residual), one write: the fp32 statistics never reach memory.
Gemma normalises after each sub-block and then adds (`h + norm(attn_out)`), so the residual
is added after the norm, and the normed value is rounded to the input dtype before the add,
exactly as the unfused `h + rms_norm(...)` does.

Shape legend: R rows (every leading dimension flattened), M rows per outer step
(the next-to-last dimension), N normalised width.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# One program holds whole rows in registers; Gemma's widest norm is its hidden size (2816).
MAX_WIDTH = 32768


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, r_ptr, out_ptr, R, M, N, eps,
                     stride_x0, stride_x1, stride_r0, stride_r1,
                     HAS_WEIGHT: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """Rows r = (i, j) of an [R / M, M, N] view (two strides: a head slice of the fused qkv
    projection is normalised in place, without a copy); the output is contiguous."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BR]
    cols = tl.arange(0, BLOCK_N)  # [BN]
    mask = (rows[:, None] < R) & (cols[None, :] < N)
    rows = rows.to(tl.int64)
    outer, inner = rows // M, rows % M
    x_off = (outer * stride_x0 + inner * stride_x1)[:, None] + cols[None, :]
    x = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=1) / N  # [BR]
    y = x * tl.rsqrt(mean_sq + eps)[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    y = y.to(out_ptr.dtype.element_ty)
    if HAS_RESIDUAL:
        r_off = (outer * stride_r0 + inner * stride_r1)[:, None] + cols[None, :]
        r = tl.load(r_ptr + r_off, mask=mask, other=0.0)
        y = (r.to(tl.float32) + y.to(tl.float32)).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + rows[:, None] * N + cols[None, :], y, mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """[..., M, N] as [R / M, M, N] with unit column stride: a view where the leading
    dimensions merge (they do for the network's q/k/v head slices), a copy otherwise."""
    t3 = t.reshape(-1, t.shape[-2], t.shape[-1]) if t.dim() >= 2 else t.reshape(1, 1, -1)
    return t3 if t3.stride(-1) == 1 else t3.contiguous()


def _launch(x: torch.Tensor, weight: torch.Tensor | None, eps: float, residual: torch.Tensor | None) -> torch.Tensor:
    N = x.shape[-1]
    if N > MAX_WIDTH:
        raise ValueError(f"rms_norm_triton normalises rows up to {MAX_WIDTH} wide, got {N}")
    if weight is not None and weight.shape != (N,):
        raise ValueError(f"rms_norm weight has shape {tuple(weight.shape)}, need ({N},)")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual has shape {tuple(residual.shape)}, x {tuple(x.shape)}")
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    x3 = _rows(x)  # [R / M, M, N]
    r3 = _rows(residual) if residual is not None else x3
    w = weight.contiguous() if weight is not None else x3  # unread without HAS_WEIGHT
    R, M = x3.shape[0] * x3.shape[1], x3.shape[1]
    block_n = triton.next_power_of_2(N)
    # Several short rows per program (head-dim norms have many rows of 256 or 512).
    block_r = max(1, min(64, 4096 // block_n))
    _rms_norm_kernel[(triton.cdiv(R, block_r),)](
        x3, w, r3, out, R, M, N, eps, x3.stride(0), x3.stride(1), r3.stride(0), r3.stride(1),
        HAS_WEIGHT=weight is not None, HAS_RESIDUAL=residual is not None,
        BLOCK_R=block_r, BLOCK_N=block_n, num_warps=8 if block_n * block_r > 4096 else 4)
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`ops.rms_norm`, fused: x [..., N] -> [..., N] in x's dtype."""
    return _launch(x, weight, eps, None)


def rms_norm_add(x: torch.Tensor, weight: torch.Tensor | None, eps: float, residual: torch.Tensor) -> torch.Tensor:
    """`ops.rms_norm_add`, fused: residual + rms_norm(x, weight, eps)."""
    return _launch(x, weight, eps, residual)
