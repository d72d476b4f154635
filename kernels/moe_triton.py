"""Fused mixture of experts in Triton, in the manner of vLLM's fused_moe. Reference: `ops.moe`.

    align_block_size   token-expert slots sorted by expert, each expert's run padded to BLOCK_M
    gate_up kernel     grouped GEMM over the aligned blocks, act(gate) * up in the epilogue
    down kernel        grouped GEMM, the routing weight multiplied in the epilogue
    sum kernel         each token's K expert outputs added in fp32, in a fixed order

Every program of the GEMMs works on BLOCK_M slots of one expert, so an expert's weights are
read once per block and no dense [T, E] dispatch is built. The sum over experts is its own
tiny pass rather than an atomic add in the down GEMM's epilogue: atomics add in whatever
order the programs finish, and the sampler's entropy-bound acceptance flips on an ulp.

Shape legend: T tokens, D hidden, E experts, K experts per token, I expert width,
S = T*K token-expert slots (slot t*K + k), EM the aligned buffer's length: a multiple of
BLOCK_M sized for the worst case, of which the first `num_aligned` entries are used.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .moe_configs import MoeBlockConfig, device_name, get_config

ACTIVATIONS = ("gelu_pytorch_tanh", "gelu")


class Alignment(NamedTuple):
    sorted_slots: torch.Tensor  # [EM] int32, slot ids grouped by expert; padding holds S
    block_expert: torch.Tensor  # [EM / BLOCK_M] int32, the expert of each block
    num_aligned: torch.Tensor  # [1] int32, entries in use; the blocks after them are idle


def align_block_size(topk_ids: torch.Tensor, num_experts: int, block_m: int) -> Alignment:
    """Sort the S slots by expert (stable: slots keep token order within an expert) and pad
    each expert's run to a multiple of block_m. Empty experts get no block.

    Stays on the device without a host sync (no .item(), no bincount): the buffers are sized
    for the worst case, at most min(E, S) non-empty experts each padding < block_m, and the
    kernels' idle programs stop at `num_aligned`."""
    S = topk_ids.numel()
    device = topk_ids.device
    flat = topk_ids.reshape(-1).long()  # [S]
    counts = torch.zeros(num_experts, dtype=torch.long, device=device).index_add_(
        0, flat, torch.ones_like(flat))  # [E]; bincount would sync to size its output
    padded = (counts + block_m - 1) // block_m * block_m  # [E]
    padded_end = padded.cumsum(0)  # [E]
    start = padded_end - padded  # [E] first aligned slot of each expert
    order = torch.argsort(flat, stable=True)  # [S]
    expert_sorted = flat[order]  # [S]
    run_start = counts.cumsum(0) - counts  # [E] first sorted position of each expert
    rank = torch.arange(S, device=device) - run_start[expert_sorted]  # [S] place within its expert
    capacity = S + min(num_experts, S) * (block_m - 1)
    capacity = (capacity + block_m - 1) // block_m * block_m
    sorted_slots = torch.full((capacity,), S, dtype=torch.int32, device=device)
    sorted_slots[start[expert_sorted] + rank] = order.to(torch.int32)
    blocks = torch.arange(capacity // block_m, device=device) * block_m  # [EM / BLOCK_M]
    # An idle block past the end maps to E; it is never read, but clamp to keep it a valid id.
    block_expert = torch.searchsorted(padded_end, blocks, right=True).clamp_(max=num_experts - 1)
    num_aligned = padded_end[-1:].to(torch.int32)
    return Alignment(sorted_slots, block_expert.to(torch.int32), num_aligned)


@triton.jit
def _tile(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped program order: GROUP_M row blocks walk the column blocks together (L2 reuse)."""
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    return pid_m, pid_n


@triton.jit
def _activation(x, ACTIVATION: tl.constexpr):
    if ACTIVATION == "gelu_pytorch_tanh":
        # 0.5 * (1 + tanh(z)) == sigmoid(2z): no tanh in tl, and sigmoid has no cancellation.
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        return x * tl.sigmoid(2.0 * inner)
    else:
        return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def _gate_up_kernel(
    x_ptr, w_ptr, h_ptr, sorted_slots_ptr, block_expert_ptr, num_aligned_ptr,
    num_slots, D, I, capacity,
    stride_xt, stride_xd, stride_we, stride_wn, stride_wd, stride_hs, stride_hi,
    TOP_K: tl.constexpr, ACTIVATION: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """h[slot, n] = act(x[token] . w[e, n]) * (x[token] . w[e, I + n]) for one expert's block."""
    pid_m, pid_n = _tile(tl.program_id(0), capacity // BLOCK_M, tl.cdiv(I, BLOCK_N), GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_aligned_ptr):
        return
    slots = tl.load(sorted_slots_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # [BM]
    live = slots < num_slots  # padding rows compute nothing and store nothing
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + (slots // TOP_K)[:, None] * stride_xt + offs_k[None, :] * stride_xd
    # Gate rows [0, I) and up rows [I, 2I) of the same expert: two accumulators, one pass over D.
    g_ptrs = w_ptr + expert * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wd
    u_ptrs = g_ptrs + I * stride_wn
    n_ok = offs_n[None, :] < I
    gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        k_ok = offs_k < D - k0
        a = tl.load(x_ptrs, mask=live[:, None] & k_ok[None, :], other=0.0)
        wg = tl.load(g_ptrs, mask=k_ok[:, None] & n_ok, other=0.0)
        wu = tl.load(u_ptrs, mask=k_ok[:, None] & n_ok, other=0.0)
        gate = tl.dot(a, wg, gate, input_precision=PRECISION)
        up = tl.dot(a, wu, up, input_precision=PRECISION)
        x_ptrs += BLOCK_K * stride_xd
        g_ptrs += BLOCK_K * stride_wd
        u_ptrs += BLOCK_K * stride_wd
    h = _activation(gate, ACTIVATION) * up
    h_ptrs = h_ptr + slots[:, None] * stride_hs + offs_n[None, :] * stride_hi
    tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=live[:, None] & n_ok)


@triton.jit
def _down_kernel(
    h_ptr, w_ptr, y_ptr, weights_ptr, sorted_slots_ptr, block_expert_ptr, num_aligned_ptr,
    num_slots, I, D, capacity,
    stride_hs, stride_hi, stride_we, stride_wd, stride_wi, stride_ys, stride_yd,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """y[slot, d] = weight[slot] * (h[slot] . w[e, d]) for one expert's block."""
    pid_m, pid_n = _tile(tl.program_id(0), capacity // BLOCK_M, tl.cdiv(D, BLOCK_N), GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_aligned_ptr):
        return
    slots = tl.load(sorted_slots_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # [BM]
    live = slots < num_slots
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    h_ptrs = h_ptr + slots[:, None] * stride_hs + offs_k[None, :] * stride_hi
    w_ptrs = w_ptr + expert * stride_we + offs_n[None, :] * stride_wd + offs_k[:, None] * stride_wi
    n_ok = offs_n[None, :] < D
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        k_ok = offs_k < I - k0
        a = tl.load(h_ptrs, mask=live[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None] & n_ok, other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
        h_ptrs += BLOCK_K * stride_hi
        w_ptrs += BLOCK_K * stride_wi
    acc = acc * tl.load(weights_ptr + slots, mask=live, other=0.0)[:, None]
    y_ptrs = y_ptr + slots[:, None] * stride_ys + offs_n[None, :] * stride_yd
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=live[:, None] & n_ok)


@triton.jit
def _sum_topk_kernel(y_ptr, out_ptr, T, D, stride_yt, stride_yk, stride_ot,
                     TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """out[t] = sum over k of y[t, k], in fp32, k ascending."""
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (offs_t[:, None] < T) & (offs_d[None, :] < D)
    ptrs = y_ptr + offs_t[:, None].to(tl.int64) * stride_yt + offs_d[None, :]
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        acc += tl.load(ptrs + k * stride_yk, mask=mask, other=0.0).to(tl.float32)
    out_ptrs = out_ptr + offs_t[:, None].to(tl.int64) * stride_ot + offs_d[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs would otherwise go through TF32 tensor cores (10-bit mantissa) and miss the
    # fp32 reference; for bf16/fp16 inputs the setting has no effect.
    return "ieee" if dtype == torch.float32 else "tf32"


def fused_moe(
    x: torch.Tensor,  # [T, D]
    gate_up: torch.Tensor,  # [E, 2I, D]
    down: torch.Tensor,  # [E, D, I]
    topk_weights: torch.Tensor,  # [T, K] fp32
    topk_ids: torch.Tensor,  # [T, K]
    act: str,
    config: MoeBlockConfig | None = None,
) -> torch.Tensor:  # [T, D]
    """`ops.moe` fused: sum over each token's K experts of weight * down(act(gate) * up).

    `config` None looks up the tuned block sizes for this device and shape (moe_configs)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}")
    T, D = x.shape
    E, two_i, _ = gate_up.shape
    I = two_i // 2
    K = topk_ids.shape[1]
    if gate_up.shape != (E, 2 * I, D) or down.shape != (E, D, I) or topk_weights.shape != topk_ids.shape:
        raise ValueError(f"moe shapes disagree: x {tuple(x.shape)}, gate_up {tuple(gate_up.shape)}, "
                         f"down {tuple(down.shape)}, topk {tuple(topk_ids.shape)}")
    if not x.dtype == gate_up.dtype == down.dtype:
        # tl.dot multiplies equal dtypes only; a silent cast here would hide a copy of the weights.
        raise ValueError(f"moe dtypes disagree: x {x.dtype}, gate_up {gate_up.dtype}, down {down.dtype}")
    if T == 0:
        return torch.zeros_like(x)
    if config is None:
        config = get_config(T, E, I, device_name(x.device))
    BM = config.block_m
    S = T * K
    sorted_slots, block_expert, num_aligned = align_block_size(topk_ids, E, BM)
    capacity = sorted_slots.numel()
    weights = topk_weights.reshape(-1).to(torch.float32).contiguous()  # [S]
    launch = dict(BLOCK_M=BM, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
                  num_warps=config.num_warps, num_stages=config.num_stages)
    precision = _precision(x.dtype)

    h = torch.empty(S, I, dtype=x.dtype, device=x.device)  # [S, I]
    grid = (capacity // BM * triton.cdiv(I, config.block_n),)
    _gate_up_kernel[grid](
        x, gate_up, h, sorted_slots, block_expert, num_aligned, S, D, I, capacity,
        x.stride(0), x.stride(1), gate_up.stride(0), gate_up.stride(1), gate_up.stride(2),
        h.stride(0), h.stride(1),
        TOP_K=K, ACTIVATION=act, PRECISION=precision, **launch)

    y = torch.empty(T, K, D, dtype=x.dtype, device=x.device)  # [T, K, D], slot t*K + k
    grid = (capacity // BM * triton.cdiv(D, config.block_n),)
    _down_kernel[grid](
        h, down, y, weights, sorted_slots, block_expert, num_aligned, S, I, D, capacity,
        h.stride(0), h.stride(1), down.stride(0), down.stride(1), down.stride(2),
        y.stride(1), y.stride(2),
        PRECISION=precision, **launch)

    out = torch.empty_like(x, memory_format=torch.contiguous_format)  # [T, D]
    block_d = min(triton.next_power_of_2(D), 1024)
    block_t = max(1, 4096 // block_d)
    grid = (triton.cdiv(T, block_t), triton.cdiv(D, block_d))
    _sum_topk_kernel[grid](y, out, T, D, y.stride(0), y.stride(1), out.stride(0),
                           TOP_K=K, BLOCK_T=block_t, BLOCK_D=block_d)
    return out
