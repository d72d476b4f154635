"""`dgls export-hf`: the export is a real DiffusionGemma checkpoint for transformers and vLLM."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from dgls.model import export_hf, loader
from dgls.model.api import InfillRequest
from dgls.model.prompt import FIM_TOKENS, build_prompt
from dgls.model.sampler import denoise

from ..support.fixed_model import answer_of
from .test_parity import pad_after_eos, prompts
from .vllm_rules import vllm_033_checkpoint_errors

pytest.importorskip("transformers")
from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion  # noqa: E402
from transformers.models.diffusion_gemma.generation_diffusion_gemma import (  # noqa: E402
    DiffusionGemmaGenerationConfig,
    EntropyBoundSamplerConfig,
)

TEXTS = ["def add(a, b):\n    return a + b\n", "  \t\n\n", "s = \"漢字🎉\"  # naïve café", "x<eos>y <|fim_prefix|>", ""]


@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory):
    return export_hf.export(random_checkpoint, tmp_path_factory.mktemp("export") / "hf").path


def read_json(path):
    return json.loads(path.read_text())


def tensor_names(directory):
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        return list(f.keys())


def test_transformers_loads_every_tensor_of_the_export(exported):
    model, info = DiffusionGemmaForBlockDiffusion.from_pretrained(exported, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}  # nothing missing, unexpected or mismatched
    assert model.config.architectures == ["DiffusionGemmaForBlockDiffusion"]
    assert model.config.canvas_length == 16


def reference_generate(ref, prompt, seed):
    """transformers' generate with nothing but the export's own generation_config.json."""
    torch.manual_seed(seed)
    out = ref.generate(prompt, max_new_tokens=ref.config.canvas_length)
    return out.sequences[:, prompt.shape[1]:]


def assert_same_tokens(directory, prompt, seeds) -> torch.Tensor:
    ref = DiffusionGemmaForBlockDiffusion.from_pretrained(directory).eval()
    mine = loader.load(directory, dtype="float32", device="cpu")
    pad, eos = ref.generation_config.pad_token_id, mine.model.cfg.eos_ids[0]
    for seed in seeds:
        expected = reference_generate(ref, prompt, seed)
        got = denoise(mine.model, mine.model.encode(prompt), prompt.shape[0], mine.sampler, seed=seed)
        assert torch.equal(pad_after_eos(got.tokens, eos, pad), expected), f"seed {seed}"
    return expected


def test_transformers_generate_gives_dgls_tokens_for_the_same_seed(exported):
    prompt = prompts(3, 11, 512)
    assert_same_tokens(exported, prompt, seeds=range(3))


def test_a_trained_model_answers_the_same_through_transformers(fixed_checkpoint, tmp_path):
    """The real trained model, exported: transformers alone (weights, sampler settings and
    tokenizer from the export) writes the answer dgls writes."""
    out = export_hf.export(fixed_checkpoint, tmp_path / "hf").path
    tok = AutoTokenizer.from_pretrained(out)
    pre, suf, mid = FIM_TOKENS
    # A FIM prompt rendered as text, as a remote client sends it: the tokenizer adds BOS.
    text = f"{pre}def f(self):\n    return {suf}\n{mid}"
    prompt = torch.tensor([tok(text).input_ids])
    tokens = assert_same_tokens(out, prompt, seeds=[0, 1])
    assert tok.decode(tokens[0], skip_special_tokens=True).startswith(answer_of(fixed_checkpoint))


def test_dgls_loads_the_export_back_identically(random_checkpoint, exported):
    a, b = loader.load(random_checkpoint, device="cpu"), loader.load(exported, device="cpu")
    assert a.model.cfg == b.model.cfg and a.sampler == b.sampler and a.family == b.family
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    for text in TEXTS:
        assert a.tokenizer.encode(text) == b.tokenizer.encode(text)


def test_export_passes_vllm_033_rules(exported):
    config, gen = read_json(exported / "config.json"), read_json(exported / "generation_config.json")
    assert vllm_033_checkpoint_errors(config, gen, tensor_names(exported)) == []
    assert config["text_config"]["global_head_dim"] == 32 and config["text_config"]["num_global_key_value_heads"] == 1
    # transformers' own parse of the sampler settings (vLLM reads the file through it)
    parsed = DiffusionGemmaGenerationConfig.from_pretrained(exported)
    assert parsed.sampler_config == EntropyBoundSamplerConfig(entropy_bound=0.1)
    assert (parsed.max_denoising_steps, parsed.t_min, parsed.t_max) == (48, 0.4, 0.8)
    assert (parsed.stability_threshold, parsed.confidence_threshold) == (1, 0.005)


@pytest.mark.parametrize("where,change,fragment", [
    ("config", lambda c, g: c.pop("canvas_length"), "canvas_length must be a positive integer"),
    ("config", lambda c, g: c.update(canvas_length=0), "canvas_length must be a positive integer"),
    ("config", lambda c, g: c["text_config"].pop("enable_moe_block"), "enable_moe_block must be true"),
    ("gen", lambda c, g: g["sampler_config"].update(_cls_name="DiscreteDDIMSamplerConfig"), "_cls_name must be one of"),
    ("gen", lambda c, g: g["sampler_config"].update(entropy_bound=0.0), "entropy_bound must be a float > 0"),
    ("gen", lambda c, g: g.pop("t_min"), "t_min is missing"),
    ("gen", lambda c, g: g.update(t_min=0.9), "need 0 <= t_min < t_max"),
    ("gen", lambda c, g: g.update(confidence_threshold=0), "confidence_threshold must be a float > 0"),
    ("gen", lambda c, g: g.update(stability_threshold=-1), "stability_threshold must be an integer >= 0"),
])
def test_the_vllm_rules_catch_what_vllm_refuses(exported, where, change, fragment):
    config, gen = read_json(exported / "config.json"), read_json(exported / "generation_config.json")
    change(config, gen)
    errors = vllm_033_checkpoint_errors(config, gen, tensor_names(exported))
    assert len(errors) == 1 and fragment in errors[0], errors


def test_the_vllm_rules_need_the_vision_tower(random_checkpoint):
    """loader.save alone writes no vision tower: what the export adds and vLLM needs."""
    config, gen = read_json(random_checkpoint / "config.json"), read_json(random_checkpoint / "generation_config.json")
    errors = vllm_033_checkpoint_errors(config, gen, tensor_names(random_checkpoint))
    assert errors == ["config.json has a vision_config but the checkpoint has no vision tower weights"]


def test_autotokenizer_encodes_and_decodes_as_dgls(random_checkpoint, exported):
    mine = loader.load_tokenizer(random_checkpoint)[0]
    tok = AutoTokenizer.from_pretrained(exported)
    for text in TEXTS[:3]:
        ids = mine.encode(text)
        assert tok(text, add_special_tokens=False).input_ids == ids
        assert tok.decode(ids) == mine.decode(ids) == text
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (2, 1, 0)
    # The rendered FIM prompt a server tokenizes is the prompt dgls builds, BOS included.
    req = InfillRequest("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n", "python")
    pre, suf, mid = FIM_TOKENS
    assert tok(f"{pre}{req.prefix}{suf}{req.suffix}{mid}").input_ids == build_prompt("fim", mine, req, 2)


def test_bfloat16_export_and_source_dtype(random_checkpoint, tmp_path):
    half = export_hf.export(random_checkpoint, tmp_path / "bf16", dtype="bfloat16")
    assert half.dtype == "bfloat16" and read_json(half.path / "config.json")["dtype"] == "bfloat16"
    with safe_open(str(half.path / "model.safetensors"), framework="pt") as f:
        assert {f.get_slice(n).get_dtype() for n in f.keys()} == {"BF16"}
    again = export_hf.export(half.path, tmp_path / "again")  # "source": stays bfloat16
    assert again.dtype == "bfloat16"
    a = loader.load(random_checkpoint, device="cpu", dtype="bfloat16").model
    b = loader.load(again.path, device="cpu").model
    assert b.dtype == torch.float32  # "auto" on CPU
    assert all(torch.equal(p.float(), q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_trained_runs_generation_config_is_cleaned_for_transformers(random_checkpoint, tmp_path):
    """dgls's training run writes dgls_canvas_lengths, which transformers refuses."""
    run = shutil.copytree(random_checkpoint, tmp_path / "run")
    gen = read_json(run / "generation_config.json") | {"dgls_canvas_lengths": {"line": 8, "block": 16}}
    (run / "generation_config.json").write_text(json.dumps(gen))
    with pytest.raises(ValueError, match="dgls_canvas_lengths"):
        DiffusionGemmaForBlockDiffusion.from_pretrained(run)
    out = export_hf.export(run, tmp_path / "hf").path
    DiffusionGemmaForBlockDiffusion.from_pretrained(out)


def test_serving_warnings_name_what_vllm_runs_differently(random_checkpoint, tmp_path):
    model = loader.load(random_checkpoint, device="cpu").model
    assert "layers 0, 1, 2 have different encoder and decoder layer scalars" in export_hf.serving_warnings(model)[0]
    with torch.no_grad():
        for layer in model.layers:
            layer.encoder_scalar.copy_(layer.decoder_scalar)
    assert export_hf.serving_warnings(model) == []
