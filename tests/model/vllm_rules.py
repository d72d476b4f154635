"""What vLLM 0.33 requires of a DiffusionGemma checkpoint, written from vLLM's code.

vLLM cannot run here (no GPU; its wheel pins another torch and transformers < 5.21), so the
export is held to these rules instead. Each rule names the vLLM code it was read from
(vllm-project/vllm, the DiffusionGemma support added in PR #45163):

- vllm/config/model.py `ModelConfig.is_diffusion`: a model is served as a diffusion model
  when config.json has `canvas_length`; vllm/config/diffusion.py `DiffusionConfig`:
  `canvas_length: int = Field(gt=0)`.
- vllm/model_executor/models/diffusion_gemma.py `DiffusionGemmaModelState.custom_sampler`:
  `"EntropyBound" in sampler_config["_cls_name"]`, else "DiffusionGemma requires an
  EntropyBound sampler_config"; `entropy_bound` present and > 0; `t_min`, `t_max` and
  `confidence_threshold` read as `gen[...]` (a KeyError when absent).
- the same file, `DiffusionGemmaModelState.__init__`: `gen["stability_threshold"] + 1` sizes
  the history buffer (an int >= 0); `max_denoising_steps` from generation_config.json
  (default 48) is the step cap.
- vLLM reads generation_config.json through transformers, whose DiffusionGemmaGenerationConfig
  resolves `_cls_name` to a class of its own module (EntropyBoundSamplerConfig is the only
  EntropyBound one) and checks t_max > t_min >= 0, confidence_threshold a float > 0.
- the same file, `hf_to_vllm_mapper` and `load_weights`: checkpoint names under
  model.decoder., model.encoder.language_model., model.encoder.vision_tower. and
  model.encoder.embed_vision.; the vision tower is always built, so its weights must be there.
- vllm/model_executor/models/gemma4.py `Gemma4DecoderLayer`: global layers take their geometry
  from text_config `global_head_dim` and `num_global_key_value_heads`, and the expert block
  exists only when `enable_moe_block` is true.
"""

from __future__ import annotations

ENTROPY_BOUND_CLASSES = ("EntropyBoundSamplerConfig",)  # transformers' diffusion_gemma generation module
WEIGHT_PREFIXES = ("model.decoder.", "model.encoder.language_model.", "model.encoder.vision_tower.",
                   "model.encoder.embed_vision.", "lm_head.")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def vllm_033_checkpoint_errors(config: dict, generation: dict, tensor_names: list[str]) -> list[str]:
    """Every rule above the checkpoint breaks, one line each; [] when vLLM 0.33 would serve it."""
    errors = []
    canvas = config.get("canvas_length")
    if not (isinstance(canvas, int) and not isinstance(canvas, bool) and canvas > 0):
        errors.append(f"config.json canvas_length must be a positive integer, got {canvas!r}")
    if config.get("architectures") != ["DiffusionGemmaForBlockDiffusion"]:
        errors.append(f"config.json architectures must be ['DiffusionGemmaForBlockDiffusion'], got {config.get('architectures')!r}")
    text = config.get("text_config") or {}
    for key in ("global_head_dim", "num_global_key_value_heads"):
        if not isinstance(text.get(key), int):
            errors.append(f"config.json text_config.{key} is missing")
    if text.get("enable_moe_block") is not True:
        errors.append("config.json text_config.enable_moe_block must be true")

    sampler = generation.get("sampler_config")
    name = sampler.get("_cls_name", "") if isinstance(sampler, dict) else ""
    if "EntropyBound" not in name or name not in ENTROPY_BOUND_CLASSES:
        errors.append(f"sampler_config._cls_name must be one of {ENTROPY_BOUND_CLASSES}, got {name!r}")
    bound = sampler.get("entropy_bound") if isinstance(sampler, dict) else None
    if not (isinstance(bound, float) and bound > 0):
        errors.append(f"sampler_config.entropy_bound must be a float > 0, got {bound!r}")
    for key in ("t_min", "t_max", "confidence_threshold", "stability_threshold"):
        if not _number(generation.get(key)):
            errors.append(f"generation_config.json {key} is missing")
    t_min, t_max = generation.get("t_min"), generation.get("t_max")
    if _number(t_min) and _number(t_max) and not 0 <= t_min < t_max:
        errors.append(f"need 0 <= t_min < t_max, got {t_min} and {t_max}")
    confidence = generation.get("confidence_threshold")
    if _number(confidence) and not (isinstance(confidence, float) and confidence > 0):
        errors.append(f"confidence_threshold must be a float > 0, got {confidence!r}")
    stability = generation.get("stability_threshold")
    if _number(stability) and not (isinstance(stability, int) and stability >= 0):
        errors.append(f"stability_threshold must be an integer >= 0, got {stability!r}")
    steps = generation.get("max_denoising_steps", 48)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
        errors.append(f"max_denoising_steps must be a positive integer, got {steps!r}")

    stray = [n for n in tensor_names if not n.startswith(WEIGHT_PREFIXES)]
    if stray:
        errors.append(f"tensors vLLM cannot map: {stray[:3]}")
    if config.get("vision_config") is not None and not any(n.startswith("model.encoder.vision_tower.") for n in tensor_names):
        errors.append("config.json has a vision_config but the checkpoint has no vision tower weights")
    return errors
