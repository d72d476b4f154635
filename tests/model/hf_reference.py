"""Tiny random DiffusionGemma checkpoints written by transformers, the reference dgls is held to."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=1,
                   num_key_value_heads=1, head_dim=16)

BASE_TEXT = dict(
    vocab_size=384, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    num_experts=4, top_k_experts=2, moe_intermediate_size=32,
    sliding_window=8, max_position_embeddings=2048,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    global_head_dim=32, num_global_key_value_heads=1,
)

# Shapes the parity tests cover (each differs from BASE_TEXT where named).
SHAPES = {
    "sliding+global": {},
    "global-only": dict(layer_types=["full_attention"] * 2, num_hidden_layers=2),
    "global-head-equal-no-gqa": dict(num_key_value_heads=4, global_head_dim=16, num_global_key_value_heads=None),
    "top1-of-8": dict(num_experts=8, top_k_experts=1),
    "all-experts": dict(num_experts=3, top_k_experts=3),
    "long-window-5-to-1": dict(num_hidden_layers=6, layer_types=None, sliding_window=6),
}


def make_reference(shape: str, directory: Path, *, canvas_length: int = 12, seed: int = 0, settle: bool = False):
    """Build, randomise and save a reference model; return it (fp32, eval).

    `settle` shrinks each layer's contribution to the residual stream, so the model mostly
    copies its canvas: the sampler then reaches a stable argmax and stops early, as a
    trained model does, which random weights alone never do."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    text = {**BASE_TEXT, **SHAPES[shape]}
    if text["layer_types"] is None:
        del text["layer_types"]
    if text.get("num_global_key_value_heads") is None:
        text.pop("num_global_key_value_heads", None)
    cfg = DiffusionGemmaConfig(text_config=text, vision_config=TINY_VISION, canvas_length=canvas_length)
    torch.manual_seed(seed)
    model = DiffusionGemmaForBlockDiffusion(cfg).eval()
    with torch.no_grad():  # norms, scales and scalars start at one; move them so each one is tested
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
            if settle:
                for name, p in model.named_parameters():
                    if name.endswith(("post_attention_layernorm.weight", "post_feedforward_layernorm.weight")):
                        p.mul_(0.02)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.fill_(0.5 + torch.rand(()).item())
    model.save_pretrained(directory)
    return model
