"""The DiffusionGemma network: a causal encoder over the prompt that writes a KV cache, and a
bidirectional decoder over the canvas that reads it. Encoder and decoder share every weight
except the per-layer scalars and the decoder's self-conditioning block.

Gradients flow only in training mode: a model in eval mode (what the loader returns) runs
both passes without autograd, whatever the caller's grad mode, so inference callers need no
context manager. Training may left-pad a batch of prompts (`prompt_mask`): padded keys are
masked out, and since RoPE sees only relative positions, a padded row computes what the
same prompt alone would.

Shape legend: B canvases, P prompt tokens, L canvas tokens, D hidden, V vocabulary,
H query heads, Hkv key/value heads, Dh head dim, E experts, K experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dgls.kernels import attention, canvas_attention, moe, rms_norm
from dgls.kernels.ops import activation

from .config import LayerSpec, ModelConfig, RopeSpec


def rope_inv_freq(spec: RopeSpec, head_dim: int) -> torch.Tensor:
    """Inverse frequencies; "proportional" rotates a fraction of head_dim and leaves the rest unrotated."""
    if spec.kind == "proportional":
        angles = int(spec.partial * head_dim // 2)
        rotated = 1.0 / (spec.theta ** (torch.arange(0, 2 * angles, 2, dtype=torch.float, device="cpu") / head_dim))
        inv = torch.cat([rotated, torch.zeros(head_dim // 2 - angles, device="cpu")])
    else:
        dim = int(head_dim * spec.partial)
        inv = 1.0 / (spec.theta ** (torch.arange(0, dim, 2, dtype=torch.float, device="cpu") / dim))
    return inv / spec.factor


def rope_tables(inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype):
    freqs = positions[..., None].float() * inv_freq.to(positions.device)  # [L, Dh/2] or [B, L, Dh/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [L, Dh] or [B, L, Dh]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, L, H, Dh]; cos/sin: [L, Dh], or [B, L, Dh] when each row has its own positions."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    cos, sin = (cos[:, :, None, :], sin[:, :, None, :]) if cos.dim() == 3 else (cos[None, :, None, :], sin[None, :, None, :])
    return x * cos + rotated * sin


@dataclass
class PromptCache:
    """Keys/values the encoder wrote, per layer: [Bp, Hkv, Pk, Dh], Bp = 1 (shared by every
    canvas) or the canvas batch. Sliding layers keep only their last `sliding_window - 1`
    positions, as the reference's cache does. `length` is the full prompt length P."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int
    mask: torch.Tensor | None = None  # [Bp, P] bool, True = real token (left padding); None = no padding
    # [Bp] where each row's canvas starts. None: at `length`, which is right when the rows were
    # encoded together, left-padded (the padding shifts a row's positions, not their distances).
    # Rows encoded one by one and padded afterwards each start their canvas after their own prompt.
    canvas_start: torch.Tensor | None = None
    starts: torch.Tensor | None = field(init=False, default=None)  # [Bp] each row's first real token

    def __post_init__(self):
        # The decoder masks padding by where each row's prompt starts (no mask tensor in its
        # attention), so the mask must be left padding, as every batch dgls builds is.
        if self.mask is not None:
            P = self.mask.shape[-1]
            starts = P - self.mask.sum(-1)
            left = torch.arange(P, device=self.mask.device)[None, :] >= starts[:, None]
            if P != self.length or not torch.equal(self.mask.bool(), left):
                raise ValueError(f"prompt mask must be left padding over the {self.length} prompt positions")
            self.starts = starts

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    def repeat_rows(self, k: int) -> PromptCache:
        """Each row k times in a row (several canvases per prompt in training; autograd sums
        their gradients into the one encoding)."""
        rows = lambda ts: [t.repeat_interleave(k, 0) for t in ts]  # noqa: E731
        return PromptCache(rows(self.keys), rows(self.values), self.length,
                           None if self.mask is None else self.mask.repeat_interleave(k, 0),
                           None if self.canvas_start is None else self.canvas_start.repeat_interleave(k, 0))


@dataclass
class EncoderState:
    """Every key and value the encoder wrote for one prompt, untruncated ([1, Hkv, P, Dh] per
    layer): what a later prompt that starts with the same tokens extends instead of encoding
    again (`DiffusionGemma.extend`). `PromptCache` is its view for the decoder."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    sliding: list[bool]  # per layer: the decoder reads only the last `window - 1` keys
    window: int

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def prompt_cache(self, mask: torch.Tensor | None = None) -> PromptCache:
        """`mask` [Bp, P]: left padding of a batch encoded together (training)."""
        keep = self.window - 1
        keys = [k[:, :, -keep:] if s else k for k, s in zip(self.keys, self.sliding)]
        values = [v[:, :, -keep:] if s else v for v, s in zip(self.values, self.sliding)]
        return PromptCache(keys, values, self.length, mask)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: LayerSpec):
        super().__init__()
        self.spec = spec
        self.num_heads = cfg.num_heads
        self.eps = cfg.rms_norm_eps
        # Global layers have no value projection: values are the (unrotated) keys.
        kv_proj = 2 if spec.sliding else 1
        self.wqkv = nn.Parameter(torch.empty((cfg.num_heads + kv_proj * spec.kv_heads) * spec.head_dim, cfg.hidden_size))
        self.wo = nn.Parameter(torch.empty(cfg.hidden_size, cfg.num_heads * spec.head_dim))
        self.q_norm = nn.Parameter(torch.ones(spec.head_dim))
        self.k_norm = nn.Parameter(torch.ones(spec.head_dim))

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B, L, D] -> q [B, H, L, Dh], k and v [B, Hkv, L, Dh]."""
        B, L, _ = x.shape
        Dh, Hkv = self.spec.head_dim, self.spec.kv_heads
        qkv = F.linear(x, self.wqkv)
        q_size, kv_size = self.num_heads * Dh, Hkv * Dh
        q = qkv[..., :q_size].view(B, L, self.num_heads, Dh)
        k_raw = qkv[..., q_size : q_size + kv_size].view(B, L, Hkv, Dh)
        v_raw = qkv[..., q_size + kv_size :].view(B, L, Hkv, Dh) if self.spec.sliding else k_raw
        q = apply_rope(rms_norm(q, self.q_norm, self.eps), cos, sin).transpose(1, 2)
        k = apply_rope(rms_norm(k_raw, self.k_norm, self.eps), cos, sin).transpose(1, 2)
        v = rms_norm(v_raw, None, self.eps).transpose(1, 2)
        return q, k, v

    def output(self, o: torch.Tensor) -> torch.Tensor:
        """o [B, H, L, Dh] -> [B, L, D]."""
        B, _, L, _ = o.shape
        return F.linear(o.transpose(1, 2).reshape(B, L, -1), self.wo)


class Layer(nn.Module):
    """One transformer layer: attention, then a dense MLP beside a mixture of experts."""

    def __init__(self, cfg: ModelConfig, spec: LayerSpec):
        super().__init__()
        D, I, E, Ie = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.moe_intermediate_size
        self.eps = cfg.rms_norm_eps
        self.top_k = cfg.top_k
        self.act_name = cfg.activation
        self.act = activation(cfg.activation)
        self.attn = Attention(cfg, spec)
        for name in ("input_norm", "post_attn_norm", "pre_mlp_norm", "post_mlp_norm",
                     "pre_moe_norm", "post_moe_norm", "post_ffn_norm"):
            setattr(self, name, nn.Parameter(torch.ones(D)))
        self.mlp_gate_up = nn.Parameter(torch.empty(2 * I, D))
        self.mlp_down = nn.Parameter(torch.empty(D, I))
        self.router = nn.Parameter(torch.empty(E, D))
        self.router_scale = nn.Parameter(torch.ones(D))
        self.expert_scale = nn.Parameter(torch.ones(E))
        self.experts_gate_up = nn.Parameter(torch.empty(E, 2 * Ie, D))
        self.experts_down = nn.Parameter(torch.empty(E, D, Ie))
        self.encoder_scalar = nn.Parameter(torch.ones(1))
        self.decoder_scalar = nn.Parameter(torch.ones(1))

    def route(self, h: torch.Tensor):
        """h [T, D] -> weights [T, K] (fp32), expert ids [T, K]."""
        x = rms_norm(h, None, self.eps) * self.router_scale * (h.shape[-1] ** -0.5)
        probs = torch.softmax(F.linear(x, self.router), dim=-1, dtype=torch.float32)  # [T, E]
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights * self.expert_scale[ids], ids

    def feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        """The block after attention: h [B, L, D] -> h [B, L, D] (residual included)."""
        g, u = F.linear(rms_norm(h, self.pre_mlp_norm, self.eps), self.mlp_gate_up).chunk(2, dim=-1)
        dense = rms_norm(F.linear(self.act(g) * u, self.mlp_down), self.post_mlp_norm, self.eps)
        flat = h.reshape(-1, h.shape[-1])  # [T, D]
        weights, ids = self.route(flat)
        experts = moe(rms_norm(flat, self.pre_moe_norm, self.eps), self.experts_gate_up, self.experts_down,
                      weights, ids, self.act_name)
        experts = rms_norm(experts.view(h.shape), self.post_moe_norm, self.eps)
        return h + rms_norm(dense + experts, self.post_ffn_norm, self.eps)

    def after_attention(self, h: torch.Tensor, attn_out: torch.Tensor, scalar: torch.Tensor) -> torch.Tensor:
        h = h + rms_norm(attn_out, self.post_attn_norm, self.eps)
        return self.feed_forward(h) * scalar


class DiffusionGemma(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, I = cfg.hidden_size, cfg.intermediate_size
        self.embed = nn.Parameter(torch.empty(cfg.vocab_size, D))  # tied with the output head
        self.layers = nn.ModuleList(Layer(cfg, spec) for spec in cfg.layers)
        self.norm = nn.Parameter(torch.ones(D))
        self.sc_norm = nn.Parameter(torch.ones(D))
        self.sc_gate_up = nn.Parameter(torch.empty(2 * I, D))
        self.sc_down = nn.Parameter(torch.empty(D, I))
        self.act = activation(cfg.activation)
        self._inv_freq = {spec: rope_inv_freq(cfg.rope(spec), spec.head_dim) for spec in set(cfg.layers)}

    @property
    def device(self) -> torch.device:
        return self.embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(self.cfg.hidden_size**0.5).to(self.dtype)
        return F.embedding(ids, self.embed) * scale

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> dict[LayerSpec, tuple]:
        return {spec: rope_tables(inv, positions, dtype) for spec, inv in self._inv_freq.items()}

    def _grad(self) -> torch.set_grad_enabled:
        return torch.set_grad_enabled(self.training and torch.is_grad_enabled())

    def encode(self, prompt: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> PromptCache:
        """Causal pass over the prompt [Bp, P]; returns the KV cache the decoder reads.

        `prompt_mask` [Bp, P] (True = token) marks left padding in a training batch."""
        with self._grad():
            return self._encode(prompt, prompt_mask)[0].prompt_cache(prompt_mask)

    def encode_with_hidden(self, prompt: torch.Tensor, prompt_mask: torch.Tensor | None = None):
        """The cache and the last layer's output [Bp, P, D] of the causal pass.

        The reference never reads the encoder's output; training does (through `head`), so
        that every prompt token carries a next-token loss on the weights the decoder shares
        (model/training/fim.py)."""
        with self._grad():
            state, h = self._encode(prompt, prompt_mask)
            return state.prompt_cache(prompt_mask), h

    def extend(self, prompt: torch.Tensor, past: EncoderState | None = None, reuse: int = 0) -> EncoderState:
        """The encoder's state for one prompt [1, P] whose first `reuse` tokens are those
        `past` was encoded from: only positions reuse..P-1 are computed, reading past's keys
        (a causal pass never lets earlier positions see later ones, so theirs are unchanged)."""
        if reuse and (past is None or not 0 < reuse <= past.length or reuse >= prompt.shape[1]):
            raise ValueError(f"cannot reuse {reuse} of {prompt.shape[1]} prompt tokens from "
                             f"{0 if past is None else past.length} encoded ones")
        with self._grad():
            return self._encode(prompt, None, past if reuse else None, reuse)[0]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm, tied output projection and soft-cap: h [B, L, D] -> fp32 logits [B, L, V]."""
        logits = F.linear(rms_norm(h, self.norm, self.cfg.rms_norm_eps), self.embed).float()
        cap = self.cfg.final_logit_softcap
        if torch.is_grad_enabled():
            return torch.tanh(logits / cap) * cap
        # The same values in place: at inference each [B, L, V] temporary costs a fresh
        # allocation (and its page faults) every denoising step.
        return logits.div_(cap).tanh_().mul_(cap)

    def _encode(self, prompt: torch.Tensor, prompt_mask: torch.Tensor | None,
                past: EncoderState | None = None, reuse: int = 0) -> tuple[EncoderState, torch.Tensor]:
        """Positions reuse..P-1 of the causal pass (all of them when reuse is 0), their
        queries reading past's first `reuse` keys as well; h [Bp, P - reuse, D]."""
        P, device = prompt.shape[1], prompt.device
        h = self.embed_tokens(prompt[:, reuse:])
        tables = self._rope(torch.arange(reuse, P, device=device), h.dtype)
        i = torch.arange(reuse, P, device=device)[:, None]  # query positions
        j = torch.arange(P, device=device)[None, :]  # key positions
        causal = j <= i  # [P - reuse, P]
        sliding = causal & (j > i - self.cfg.sliding_window)
        if prompt_mask is not None:
            # [Bp, 1, P, P]: no query reads a pad key; a pad query reads itself so no row is empty.
            keyed = prompt_mask[:, None, None, :] | torch.eye(P, dtype=torch.bool, device=device)
            causal, sliding = causal & keyed, sliding & keyed
        keys, values = [], []
        for n, layer in enumerate(self.layers):
            spec = layer.attn.spec
            x = rms_norm(h, layer.input_norm, self.cfg.rms_norm_eps)
            q, k, v = layer.attn.project(x, *tables[spec])
            if reuse:
                k = torch.cat([past.keys[n][:, :, :reuse], k], dim=2)
                v = torch.cat([past.values[n][:, :, :reuse], v], dim=2)
            o = attention(q, k, v, sliding if spec.sliding else causal)
            h = layer.after_attention(h, layer.attn.output(o), layer.encoder_scalar)
            keys.append(k)
            values.append(v)
        sliding_layers = [layer.attn.spec.sliding for layer in self.layers]
        return EncoderState(keys, values, sliding_layers, self.cfg.sliding_window), h

    def decode(
        self,
        canvas: torch.Tensor,
        cache: PromptCache,
        sc_logits: torch.Tensor | None = None,
        sc_mask: torch.Tensor | None = None,
        *,
        sc_probs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bidirectional pass over canvases [B, L] reading `cache`; returns soft-capped fp32 logits [B, L, V].

        `sc_logits` [B, L, V] are the previous step's (processed) logits for self-conditioning,
        or `sc_probs` their softmax when the caller has it already (the sampler does);
        `sc_mask` [B] bool turns it off per canvas (training), as the reference's
        `self_conditioning_mask`: a zero signal adds exactly nothing."""
        with self._grad():
            return self._decode(canvas, cache, sc_logits, sc_mask, sc_probs)

    def _decode(self, canvas, cache, sc_logits, sc_mask, sc_probs=None) -> torch.Tensor:
        L = canvas.shape[1]
        eps = self.cfg.rms_norm_eps
        h = self.embed_tokens(canvas)
        if sc_logits is not None or sc_probs is not None:
            if sc_probs is None:
                sc_probs = torch.softmax(sc_logits, dim=-1, dtype=torch.float32)
            probs = sc_probs.to(self.dtype)
            soft = (probs @ self.embed) * torch.tensor(self.cfg.hidden_size**0.5).to(h.dtype)
            if sc_mask is not None:
                soft = soft * sc_mask.to(soft.dtype)[:, None, None]
            g, u = F.linear(rms_norm(soft, self.sc_norm, eps), self.sc_gate_up).chunk(2, dim=-1)
            h = h + F.linear(self.act(g) * u, self.sc_down)
        h = rms_norm(h, None, eps)
        positions = torch.arange(cache.length, cache.length + L, device=canvas.device)
        if cache.canvas_start is not None:  # [B, L]: rows encoded one by one
            positions = (cache.canvas_start[:, None] + torch.arange(L, device=canvas.device)).expand(canvas.shape[0], -1)
        tables = self._rope(positions, h.dtype)
        # The canvas reads every real key a layer cached (a sliding layer kept its last
        # window - 1): padding is masked by each row's first real key in that layer's cache.
        key_start = {}
        if cache.starts is not None:
            key_start = {ck.shape[2]: cache.starts - (cache.length - ck.shape[2]) for ck in cache.keys}
        for n, layer in enumerate(self.layers):
            x = rms_norm(h, layer.input_norm, eps)
            q, k, v = layer.attn.project(x, *tables[layer.attn.spec])
            ck, cv = cache.keys[n], cache.values[n]
            o = canvas_attention(q, ck, cv, k, v, key_start.get(ck.shape[2]))
            h = layer.after_attention(h, layer.attn.output(o), layer.decoder_scalar)
        return self.head(h)
