"""Checkpoint loading: formats dgls accepts, and a clear one-line error for everything else."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dgls.model import loader
from dgls.model.loader import CheckpointError


@pytest.fixture
def ckpt(random_checkpoint, tmp_path):
    """A private copy to damage."""
    return shutil.copytree(random_checkpoint, tmp_path / "ckpt")


def rewrite_weights(directory, change):
    tensors = load_file(directory / "model.safetensors")
    change(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def load_error(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        loader.load(path, device="cpu", **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_loads_and_runs(random_checkpoint):
    loaded = loader.load(random_checkpoint, device="cpu")
    assert loaded.family == "fim"
    assert loaded.model.dtype == torch.float32  # "auto" on CPU
    cache = loaded.model.encode(torch.tensor([[5, 6, 7]]))
    assert loaded.model.decode(torch.tensor([[8] * 16]), cache).shape == (1, 16, 512)


def test_bfloat16_on_request(random_checkpoint):
    assert loader.load(random_checkpoint, device="cpu", dtype="bfloat16").model.dtype == torch.bfloat16


def test_missing_tensor_is_named(ckpt):
    name = "model.decoder.layers.1.mlp.up_proj.weight"
    rewrite_weights(ckpt, lambda t: t.pop(name))
    message = load_error(ckpt)
    assert "missing 1 tensors" in message and name in message


def test_wrong_shape_is_named(ckpt):
    name = "model.decoder.layers.0.self_attn.o_proj.weight"
    rewrite_weights(ckpt, lambda t: t.__setitem__(name, torch.zeros(3, 3)))
    message = load_error(ckpt)
    assert name in message and "(3, 3)" in message and "(64, 64)" in message


def test_unexpected_tensor_is_named(ckpt):
    rewrite_weights(ckpt, lambda t: t.__setitem__("model.decoder.layers.7.extra.weight", torch.zeros(2)))
    assert "unexpected tensors model.decoder.layers.7.extra.weight" in load_error(ckpt)


def test_vision_tower_and_tied_copies_are_accepted(ckpt):
    def add(t):
        t["model.encoder.vision_tower.encoder.weight"] = torch.zeros(2)
        t["lm_head.weight"] = t["model.decoder.embed_tokens.weight"].clone()
        t["model.encoder.language_model.norm.weight"] = t["model.decoder.norm.weight"].clone()
    rewrite_weights(ckpt, add)
    loader.load(ckpt, device="cpu")


def test_tied_weights_stored_under_encoder_names_load(ckpt, random_checkpoint):
    """Some exports keep the encoder's copy of the shared weights instead of the decoder's."""
    def rename(t):
        for name in [n for n in t if n.startswith("model.decoder.layers.") and not n.endswith("layer_scalar")]:
            t[name.replace("model.decoder.", "model.encoder.language_model.")] = t.pop(name)
    rewrite_weights(ckpt, rename)
    a = loader.load(ckpt, device="cpu").model
    b = loader.load(random_checkpoint, device="cpu").model
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_corrupt_file(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert "corrupt safetensors file" in load_error(ckpt)


def test_garbage_header(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    assert "corrupt safetensors file" in load_error(ckpt)


def test_pickle_checkpoint_refused(ckpt):
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    assert "refusing pickle weights (pytorch_model.bin)" in load_error(ckpt)
    assert "refusing a pickle checkpoint" in load_error(ckpt / "pytorch_model.bin")


def test_unknown_model_type(ckpt):
    raw = json.loads((ckpt / "config.json").read_text())
    raw["model_type"] = "llama"
    (ckpt / "config.json").write_text(json.dumps(raw))
    assert "unsupported model_type 'llama'" in load_error(ckpt)


def test_malformed_config_json(ckpt):
    (ckpt / "config.json").write_text("{ not json")
    assert "unreadable config" in load_error(ckpt)


def test_config_missing_field(ckpt):
    raw = json.loads((ckpt / "config.json").read_text())
    del raw["text_config"]["num_experts"]
    (ckpt / "config.json").write_text(json.dumps(raw))
    assert "text_config.num_experts is missing" in load_error(ckpt)


def test_missing_tokenizer(ckpt):
    (ckpt / "tokenizer.json").unlink()
    assert "no tokenizer.json" in load_error(ckpt)


def test_nonexistent_model(tmp_path):
    assert "neither a directory nor in the local Hugging Face cache" in load_error(tmp_path / "nope")
    assert "neither a directory nor in the local Hugging Face cache" in load_error("no-such-org/no-such-model")


def test_sharded_checkpoint_loads_the_same(ckpt, random_checkpoint):
    tensors = load_file(ckpt / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, ckpt / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    a = loader.load(ckpt, device="cpu").model
    b = loader.load(random_checkpoint, device="cpu").model
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_index_naming_a_missing_shard(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": dict.fromkeys(tensors, "model-00001-of-00009.safetensors")}))
    assert "weight file is missing" in load_error(ckpt)


def test_generation_config_sets_sampler(ckpt):
    gen = json.loads((ckpt / "generation_config.json").read_text())
    gen.update(max_denoising_steps=7, t_min=0.2, eos_token_id=[1, 9])
    (ckpt / "generation_config.json").write_text(json.dumps(gen))
    loaded = loader.load(ckpt, device="cpu")
    assert loaded.sampler.max_steps == 7 and loaded.sampler.t_min == 0.2
    assert loaded.model.cfg.eos_ids == (1, 9)


def set_fim_order(directory, order) -> None:
    path = directory / "generation_config.json"
    gen = json.loads(path.read_text())
    gen["dgls_fim_order"] = order
    path.write_text(json.dumps(gen))


def test_a_model_trained_suffix_first_gets_its_prompts_suffix_first(ckpt):
    from dgls.model.api import InfillRequest
    from dgls.model.engine import Engine

    set_fim_order(ckpt, "spm")
    engine = Engine.load(ckpt, device="cpu")
    assert engine.loaded.family == "fim-spm"
    tok = engine.tokenizer
    ids = engine.prompt_ids(InfillRequest("def f(x):\n    return ", "\n\nprint(f(1))\n", "python", "a.py"))
    pre, suf, mid = (tok.token_id(t) for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
    assert ids[:2] == [2, suf] and ids[-1] == mid
    text = tok.decode(ids[2:ids.index(pre)])
    assert text.startswith("# path: a.py\n") and "print(f(1))" in text  # path and suffix first
    assert tok.decode(ids[ids.index(pre) + 1:-1]) == "def f(x):\n    return "  # the prefix touches the canvas


def test_an_unknown_fim_order_is_one_line(ckpt):
    set_fim_order(ckpt, "middle-first")
    assert "dgls_fim_order" in load_error(ckpt)
