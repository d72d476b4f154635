"""Hugging Face checkpoint names <-> dgls parameters, in one table.

dgls fuses some projections (q/k/v, gate/up) into one matrix; a dgls parameter is the
concatenation along dim 0 of the checkpoint tensors listed for it. Loading and saving both
read this table, so names are mapped in exactly one place and never in `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import VISION_PLACEHOLDER, ModelConfig

DECODER = "model.decoder."
ENCODER = "model.encoder.language_model."

# Text-only: the vision tower and its projection are present in real checkpoints and skipped.
IGNORED_PREFIXES = ("model.encoder.vision_tower.", "model.encoder.embed_vision.")


@dataclass(frozen=True)
class Entry:
    parts: tuple[str, ...]  # checkpoint names, concatenated along dim 0
    shapes: tuple[tuple[int, ...], ...]  # each part's shape
    optional: bool = False  # absent -> ones, the value the reference initialises it to


def layout(cfg: ModelConfig) -> dict[str, Entry]:
    """dgls parameter name -> checkpoint tensors (decoder names: the reference saves those)."""
    D, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    E, Ie = cfg.num_experts, cfg.moe_intermediate_size
    sc = DECODER + "self_conditioning."
    table = {
        "embed": Entry((DECODER + "embed_tokens.weight",), ((V, D),)),
        "norm": Entry((DECODER + "norm.weight",), ((D,),)),
        "sc_norm": Entry((sc + "pre_norm.weight",), ((D,),)),
        "sc_gate_up": Entry((sc + "gate_proj.weight", sc + "up_proj.weight"), ((I, D), (I, D))),
        "sc_down": Entry((sc + "down_proj.weight",), ((D, I),)),
    }
    for i, spec in enumerate(cfg.layers):
        p = f"{DECODER}layers.{i}."
        H, Hkv, Dh = cfg.num_heads, spec.kv_heads, spec.head_dim
        # Global layers have no v_proj: their values are the keys.
        qkv = [("q_proj", (H * Dh, D)), ("k_proj", (Hkv * Dh, D))] + ([("v_proj", (Hkv * Dh, D))] if spec.sliding else [])
        rows = {
            "attn.wqkv": [(f"self_attn.{n}.weight", s) for n, s in qkv],
            "attn.wo": [("self_attn.o_proj.weight", (D, H * Dh))],
            "attn.q_norm": [("self_attn.q_norm.weight", (Dh,))],
            "attn.k_norm": [("self_attn.k_norm.weight", (Dh,))],
            "input_norm": [("input_layernorm.weight", (D,))],
            "post_attn_norm": [("post_attention_layernorm.weight", (D,))],
            "pre_mlp_norm": [("pre_feedforward_layernorm.weight", (D,))],
            "post_mlp_norm": [("post_feedforward_layernorm_1.weight", (D,))],
            "pre_moe_norm": [("pre_feedforward_layernorm_2.weight", (D,))],
            "post_moe_norm": [("post_feedforward_layernorm_2.weight", (D,))],
            "post_ffn_norm": [("post_feedforward_layernorm.weight", (D,))],
            "mlp_gate_up": [("mlp.gate_proj.weight", (I, D)), ("mlp.up_proj.weight", (I, D))],
            "mlp_down": [("mlp.down_proj.weight", (D, I))],
            "router": [("router.proj.weight", (E, D))],
            "router_scale": [("router.scale", (D,))],
            "expert_scale": [("router.per_expert_scale", (E,))],
            "experts_gate_up": [("experts.gate_up_proj", (E, 2 * Ie, D))],
            "experts_down": [("experts.down_proj", (E, D, Ie))],
        }
        for name, parts in rows.items():
            table[f"layers.{i}.{name}"] = Entry(tuple(p + n for n, _ in parts), tuple(s for _, s in parts))
        # Buffers, not tied between encoder and decoder.
        table[f"layers.{i}.decoder_scalar"] = Entry((p + "layer_scalar",), ((1,),), optional=True)
        table[f"layers.{i}.encoder_scalar"] = Entry((f"{ENCODER}layers.{i}.layer_scalar",), ((1,),), optional=True)
    return table


def vision_placeholder(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of config.VISION_PLACEHOLDER's tower and its projection into
    the text model: what transformers and vLLM expect in a checkpoint, though dgls never runs it."""
    v = VISION_PLACEHOLDER
    D, I, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    H, Hkv, Dh = v["num_attention_heads"], v["num_key_value_heads"], v["head_dim"]
    tower = "model.encoder.vision_tower."
    shapes = {
        tower + "patch_embedder.input_proj.weight": (D, 3 * P * P),
        tower + "patch_embedder.position_embedding_table": (2, v["position_embedding_size"], D),
        "model.encoder.embed_vision.embedding_projection.weight": (cfg.hidden_size, D),
    }
    for i in range(v["num_hidden_layers"]):
        p = f"{tower}encoder.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.linear.weight": (H * Dh, D),
            p + "self_attn.k_proj.linear.weight": (Hkv * Dh, D),
            p + "self_attn.v_proj.linear.weight": (Hkv * Dh, D),
            p + "self_attn.o_proj.linear.weight": (D, H * Dh),
            p + "self_attn.q_norm.weight": (Dh,),
            p + "self_attn.k_norm.weight": (Dh,),
            p + "mlp.gate_proj.linear.weight": (I, D),
            p + "mlp.up_proj.linear.weight": (I, D),
            p + "mlp.down_proj.linear.weight": (D, I),
        } | {p + f"{norm}.weight": (D,) for norm in (
            "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")}
    assert all(name.startswith(IGNORED_PREFIXES) for name in shapes)  # dgls skips them on load
    return shapes


def aliases(name: str) -> tuple[str, ...]:
    """Other names the same tensor may be stored under (tied encoder copies, the output head)."""
    if not name.startswith(DECODER) or name.endswith("layer_scalar") or ".self_conditioning." in name:
        return ()
    out = (ENCODER + name[len(DECODER):],)
    if name == DECODER + "embed_tokens.weight":
        out += ("lm_head.weight",)
    return out


def is_ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)
