"""Model and sampler configuration: one plain dataclass each, one table of named configs.

Every default of the network and of the sampler lives here. A checkpoint's config.json
(Hugging Face format, `model_type` "diffusion_gemma") is read by `from_hf_config`, and
`to_hf_config` writes the same format back, so checkpoints dgls writes load in transformers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SLIDING = "sliding_attention"
GLOBAL = "full_attention"

ACTIVATIONS = ("gelu_pytorch_tanh", "gelu")


class ConfigError(ValueError):
    """A config.json that dgls cannot run. The message is one line."""


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding of one layer type. `partial` is the rotated fraction of head_dim."""

    theta: float
    kind: str = "default"  # "default" | "proportional"
    partial: float = 1.0
    factor: float = 1.0


@dataclass(frozen=True)
class LayerSpec:
    """What differs between layers: attention kind and its head geometry."""

    sliding: bool
    head_dim: int
    kv_heads: int

    @property
    def kind(self) -> str:
        return SLIDING if self.sliding else GLOBAL


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # dense MLP beside the experts, and the self-conditioning MLP
    num_heads: int
    layers: tuple[LayerSpec, ...]
    num_experts: int
    top_k: int
    moe_intermediate_size: int
    sliding_window: int = 1024
    rope_sliding: RopeSpec = RopeSpec(theta=10_000.0)
    rope_global: RopeSpec = RopeSpec(theta=1_000_000.0, kind="proportional", partial=0.25)
    final_logit_softcap: float = 30.0
    rms_norm_eps: float = 1e-6
    activation: str = "gelu_pytorch_tanh"
    canvas_length: int = 256
    max_position_embeddings: int = 131_072
    pad_id: int = 0
    eos_ids: tuple[int, ...] = (1,)
    bos_id: int | None = 2

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def rope(self, layer: LayerSpec) -> RopeSpec:
        return self.rope_sliding if layer.sliding else self.rope_global


@dataclass(frozen=True)
class SamplerConfig:
    """The reference sampler's knobs (transformers `DiffusionGemmaGenerationConfig` defaults)."""

    max_steps: int = 48
    entropy_bound: float = 0.1
    t_min: float = 0.4
    t_max: float = 0.8
    stability_threshold: int = 1
    confidence_threshold: float = 0.005

    def __post_init__(self):
        if self.max_steps <= 0:
            raise ConfigError(f"max_steps must be a positive integer, got {self.max_steps}")
        if self.entropy_bound <= 0:
            raise ConfigError(f"entropy_bound must be > 0, got {self.entropy_bound}")
        if not 0 <= self.t_min < self.t_max:
            raise ConfigError(f"need 0 <= t_min < t_max, got t_min={self.t_min} t_max={self.t_max}")


@dataclass(frozen=True)
class CanvasLengths:
    """Canvas length in tokens by hole kind: what training pads each middle to (middle + EOS +
    padding) and what the engine should denoise for that kind. A diffusion model writes the
    whole canvas, so a wrong length changes the answer: a diffusion coder's infill pass@1
    falls by about a third when the canvas length is wrong (published, not measured here)."""

    line: int = 32  # finish the current line
    block: int = 128  # a new statement or body, one line or several

    def __post_init__(self):
        if not 2 <= self.line <= self.block:
            raise ConfigError(f"need 2 <= line canvas <= block canvas, got {self.line} and {self.block}")

    def for_kind(self, kind: str) -> int:
        return self.line if kind == "line" else self.block


CANVAS = CanvasLengths()

# The worker's store of recent prompts' encoder states (model/prompt_store.py), in MiB: a dozen
# dgls-tiny prompts at the server's windows (~8 MiB each), and the worker's RSS grows by ~1.5x
# the bound when it is full (bench/RESULTS.md, "Prompt cache"). A full-size model needs more.
PROMPT_CACHE_MIB = 96


def layer_pattern(num_layers: int, sliding_per_global: int = 5) -> tuple[bool, ...]:
    """Gemma's layer pattern: `sliding_per_global` sliding layers then one global; last is global."""
    period = sliding_per_global + 1
    sliding = [bool((i + 1) % period) for i in range(num_layers)]
    sliding[-1] = False
    return tuple(sliding)


def make_config(
    *,
    num_layers: int,
    head_dim: int,
    kv_heads: int,
    global_head_dim: int,
    global_kv_heads: int,
    sliding_per_global: int = 5,
    **kwargs: Any,
) -> ModelConfig:
    layers = tuple(
        LayerSpec(True, head_dim, kv_heads) if s else LayerSpec(False, global_head_dim, global_kv_heads)
        for s in layer_pattern(num_layers, sliding_per_global)
    )
    return ModelConfig(layers=layers, **kwargs)


# Named configs (gpt-fast's `transformer_configs`): the real model's dimensions (from the
# google/diffusiongemma-26B-A4B-it config.json), for benchmarks with random weights, and small ones for tests. The shipped default's own config travels
# with its weights (config.json beside the safetensors).
CONFIGS: dict[str, ModelConfig] = {
    "diffusiongemma-26b-a4b": make_config(
        vocab_size=262_144, hidden_size=2816, intermediate_size=2112, num_heads=16,
        num_layers=30, head_dim=256, kv_heads=8, global_head_dim=512, global_kv_heads=2,
        num_experts=128, top_k=8, moe_intermediate_size=704, sliding_window=1024,
        max_position_embeddings=262_144, eos_ids=(1, 106, 50),
    ),
    "test-tiny": make_config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_heads=4,
        num_layers=3, head_dim=16, kv_heads=2, global_head_dim=32, global_kv_heads=1,
        sliding_per_global=2, num_experts=4, top_k=2, moe_intermediate_size=32,
        sliding_window=16, canvas_length=16, max_position_embeddings=4096,
    ),
    # The size the CPU benchmarks compare dgls against the transformers reference at.
    "bench-16m": make_config(
        vocab_size=8192, hidden_size=256, intermediate_size=512, num_heads=4,
        num_layers=6, head_dim=64, kv_heads=2, global_head_dim=128, global_kv_heads=1,
        num_experts=8, top_k=2, moe_intermediate_size=256, sliding_window=256,
        canvas_length=32, max_position_embeddings=8192,
    ),
    # The embedded default: ref-16M's shape, sized to answer on a CPU; trained by model/training/train.py
    # (prompts up to the engine's 1024 + 256 token windows, canvases of CANVAS's lengths).
    "dgls-tiny": make_config(
        vocab_size=8192, hidden_size=256, intermediate_size=512, num_heads=4,
        num_layers=6, head_dim=64, kv_heads=2, global_head_dim=128, global_kv_heads=1,
        num_experts=8, top_k=2, moe_intermediate_size=256, sliding_window=512,
        canvas_length=CANVAS.block, max_position_embeddings=4096,
    ),
}


def from_name(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; known: {', '.join(sorted(CONFIGS))}") from None


# --- Hugging Face config.json -------------------------------------------------------------


def _rope(params: dict | None, default: RopeSpec) -> RopeSpec:
    if not params:
        return default
    kind = params.get("rope_type", "default")
    if kind not in ("default", "proportional"):
        raise ConfigError(f"unsupported rope_type {kind!r} (dgls runs 'default' and 'proportional')")
    return RopeSpec(
        theta=float(params.get("rope_theta", default.theta)),
        kind=kind,
        partial=float(params.get("partial_rotary_factor", 1.0)),
        factor=float(params.get("factor", 1.0)),
    )


def _require(text: dict, key: str) -> Any:
    value = text.get(key)
    if value is None:
        raise ConfigError(f"config.json: text_config.{key} is missing")
    return value


def from_hf_config(raw: dict) -> ModelConfig:
    """Read a DiffusionGemma config.json (already parsed) into a ModelConfig."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json is not a JSON object")
    model_type = raw.get("model_type")
    if model_type != "diffusion_gemma":
        raise ConfigError(f"unsupported model_type {model_type!r}: dgls runs 'diffusion_gemma' checkpoints")
    text = raw.get("text_config")
    if not isinstance(text, dict):
        raise ConfigError("config.json: text_config is missing")
    if text.get("use_bidirectional_attention") == "all":
        raise ConfigError("use_bidirectional_attention='all' (bidirectional prompt encoder) is not supported")
    if text.get("attention_bias"):
        raise ConfigError("attention_bias=true is not supported (DiffusionGemma has no attention bias)")
    activation = text.get("hidden_activation", "gelu_pytorch_tanh")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unsupported hidden_activation {activation!r}")
    if raw.get("tie_word_embeddings", True) is False or text.get("tie_word_embeddings", True) is False:
        raise ConfigError("untied word embeddings are not supported (DiffusionGemma ties them)")

    num_layers = int(_require(text, "num_hidden_layers"))
    layer_types = list(text.get("layer_types") or [])
    if not layer_types:
        layer_types = [SLIDING if s else GLOBAL for s in layer_pattern(num_layers)]
    if len(layer_types) != num_layers:
        raise ConfigError(f"layer_types has {len(layer_types)} entries for {num_layers} layers")
    unknown = set(layer_types) - {SLIDING, GLOBAL}
    if unknown:
        raise ConfigError(f"unknown layer types {sorted(unknown)}")
    layer_types[-1] = GLOBAL  # as the reference: the last layer is always global

    head_dim = int(_require(text, "head_dim"))
    kv_heads = int(_require(text, "num_key_value_heads"))
    per_layer = text.get("per_layer_config")
    if per_layer is None:
        # Older configs name the global geometry directly; the reference's defaults apply.
        override = {"head_dim": int(text.get("global_head_dim", 512))}
        if text.get("num_global_key_value_heads") is not None:
            override["num_key_value_heads"] = int(text["num_global_key_value_heads"])
        per_layer = {str(i): override for i, t in enumerate(layer_types) if t == GLOBAL}
    layers = []
    for i, kind in enumerate(layer_types):
        o = per_layer.get(str(i)) or per_layer.get(i) or {}
        layers.append(LayerSpec(
            sliding=kind == SLIDING,
            head_dim=int(o.get("head_dim", head_dim)),
            kv_heads=int(o.get("num_key_value_heads", kv_heads)),
        ))

    num_heads = int(_require(text, "num_attention_heads"))
    for i, layer in enumerate(layers):
        if num_heads % layer.kv_heads:
            raise ConfigError(f"layer {i}: {num_heads} heads not divisible by {layer.kv_heads} KV heads")

    rope = text.get("rope_parameters") or {}
    defaults = ModelConfig.__dataclass_fields__
    eos = text.get("eos_token_id", 1)
    eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
    top_k = int(_require(text, "top_k_experts"))
    num_experts = int(_require(text, "num_experts"))
    if not 1 <= top_k <= num_experts:
        raise ConfigError(f"top_k_experts={top_k} must be between 1 and num_experts={num_experts}")
    return ModelConfig(
        vocab_size=int(_require(text, "vocab_size")),
        hidden_size=int(_require(text, "hidden_size")),
        intermediate_size=int(_require(text, "intermediate_size")),
        num_heads=num_heads,
        layers=tuple(layers),
        num_experts=num_experts,
        top_k=top_k,
        moe_intermediate_size=int(_require(text, "moe_intermediate_size")),
        sliding_window=int(text.get("sliding_window", ModelConfig.sliding_window)),
        rope_sliding=_rope(rope.get(SLIDING), defaults["rope_sliding"].default),
        rope_global=_rope(rope.get(GLOBAL), defaults["rope_global"].default),
        final_logit_softcap=float(text.get("final_logit_softcapping") or 30.0),
        rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
        activation=activation,
        canvas_length=int(raw.get("canvas_length") or 256),
        max_position_embeddings=int(text.get("max_position_embeddings", 131_072)),
        pad_id=int(text.get("pad_token_id", 0) or 0),
        eos_ids=eos_ids,
        bos_id=text.get("bos_token_id"),
    )


def to_hf_config(cfg: ModelConfig) -> dict:
    """The config.json transformers' DiffusionGemmaForBlockDiffusion reads for `cfg`."""
    sliding = next((layer for layer in cfg.layers if layer.sliding), cfg.layers[0])

    def rope(spec: RopeSpec) -> dict:
        out: dict[str, Any] = {"rope_type": spec.kind, "rope_theta": spec.theta}
        if spec.partial != 1.0:
            out["partial_rotary_factor"] = spec.partial
        if spec.factor != 1.0:
            out["factor"] = spec.factor
        return out

    text = {
        "model_type": "diffusion_gemma_text",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": sliding.kv_heads,
        "head_dim": sliding.head_dim,
        "per_layer_config": {
            str(i): {"head_dim": layer.head_dim, "num_key_value_heads": layer.kv_heads}
            for i, layer in enumerate(cfg.layers)
            if (layer.head_dim, layer.kv_heads) != (sliding.head_dim, sliding.kv_heads)
        },
        "layer_types": [layer.kind for layer in cfg.layers],
        "sliding_window": cfg.sliding_window,
        "rope_parameters": {SLIDING: rope(cfg.rope_sliding), GLOBAL: rope(cfg.rope_global)},
        "final_logit_softcapping": cfg.final_logit_softcap,
        "rms_norm_eps": cfg.rms_norm_eps,
        "hidden_activation": cfg.activation,
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_experts": cfg.num_experts,
        "top_k_experts": cfg.top_k,
        "moe_intermediate_size": cfg.moe_intermediate_size,
        "pad_token_id": cfg.pad_id,
        "eos_token_id": list(cfg.eos_ids) if len(cfg.eos_ids) != 1 else cfg.eos_ids[0],
        "bos_token_id": cfg.bos_id,
        "attention_bias": False,
        "tie_word_embeddings": True,
        "use_bidirectional_attention": None,
        **_gemma4_geometry(cfg),
    }
    return {
        "architectures": ["DiffusionGemmaForBlockDiffusion"],
        "model_type": "diffusion_gemma",
        "canvas_length": cfg.canvas_length,
        "tie_word_embeddings": True,
        "text_config": text,
        "vision_config": dict(VISION_PLACEHOLDER),
    }


# The smallest vision tower transformers accepts. dgls is text-only: `dgls export-hf` fills it
# with zeros (checkpoint.vision_placeholder) because transformers and vLLM expect its weights.
VISION_PLACEHOLDER = {
    "model_type": "gemma4_vision", "hidden_size": 16, "intermediate_size": 32,
    "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 16,
    "patch_size": 16, "position_embedding_size": 10_240,
}


def uniform_geometry(cfg: ModelConfig) -> tuple[LayerSpec | None, LayerSpec] | None:
    """(sliding, global) layer geometry when every layer of each kind shares one, else None."""
    kinds = {kind: {(layer.head_dim, layer.kv_heads) for layer in cfg.layers if layer.sliding == kind}
             for kind in (True, False)}
    if len(kinds[True]) > 1 or len(kinds[False]) != 1:
        return None
    pick = {kind: next((layer for layer in cfg.layers if layer.sliding == kind), None) for kind in (True, False)}
    return pick[True], pick[False]


def _gemma4_geometry(cfg: ModelConfig) -> dict:
    """The Gemma 4 names for the global layers' geometry. transformers >= 5.21 reads
    per_layer_config instead; vLLM 0.33 (pinned to transformers < 5.21) reads only these, and
    builds no expert block without enable_moe_block."""
    geometry = uniform_geometry(cfg)
    if geometry is None:
        return {}
    return {
        "global_head_dim": geometry[1].head_dim,
        "num_global_key_value_heads": geometry[1].kv_heads,
        "attention_k_eq_v": True,  # global layers have no v_proj: values are the keys
        "enable_moe_block": True,
    }


def sampler_from_generation_config(raw: dict | None) -> SamplerConfig:
    """Read generation_config.json; unset fields keep the reference's defaults."""
    base = SamplerConfig()
    if not raw:
        return base
    sampler = raw.get("sampler_config") or {}
    values = {
        "max_steps": raw.get("max_denoising_steps"),
        "entropy_bound": sampler.get("entropy_bound") if isinstance(sampler, dict) else None,
        "t_min": raw.get("t_min"),
        "t_max": raw.get("t_max"),
        "stability_threshold": raw.get("stability_threshold"),
        "confidence_threshold": raw.get("confidence_threshold"),
    }
    return dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None})


def sampler_to_generation_config(s: SamplerConfig) -> dict:
    # transformers' DiffusionGemmaGenerationConfig type-checks these: floats stay floats in JSON.
    return {
        "max_denoising_steps": int(s.max_steps),
        "sampler_config": {"entropy_bound": float(s.entropy_bound), "_cls_name": "EntropyBoundSamplerConfig"},
        "t_min": float(s.t_min),
        "t_max": float(s.t_max),
        "stability_threshold": int(s.stability_threshold),
        "confidence_threshold": float(s.confidence_threshold),
    }


__all__ = [
    "CANVAS", "CONFIGS", "PROMPT_CACHE_MIB", "CanvasLengths", "ConfigError", "LayerSpec", "ModelConfig", "RopeSpec", "SamplerConfig",
    "VISION_PLACEHOLDER", "from_hf_config", "from_name", "make_config", "sampler_from_generation_config",
    "sampler_to_generation_config", "to_hf_config", "uniform_geometry",
]
