"""`dgls export-hf`: any model dgls runs, written as a Hugging Face DiffusionGemma checkpoint.

What transformers' `DiffusionGemmaForBlockDiffusion.from_pretrained` and vLLM (>= 0.33,
`vllm serve OUT`) load:
- config.json: `architectures` ["DiffusionGemmaForBlockDiffusion"], `canvas_length`, the text
  geometry under the names both transformers >= 5.21 and vLLM read (config.to_hf_config);
- generation_config.json: the sampler settings vLLM reads server-wide, and only keys that
  transformers' DiffusionGemmaGenerationConfig accepts (it refuses unknown ones);
- model.safetensors: the reference's tensor names (checkpoint.layout, the one name table,
  read backwards by loader.save), plus a zero vision tower, whose weights both expect;
- tokenizer.json and tokenizer_config.json, so AutoTokenizer (and so vLLM) encodes as dgls does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import processors

from . import checkpoint, loader
from .config import ModelConfig, SamplerConfig, uniform_geometry
from .network import DiffusionGemma
from .paths import resolve

DTYPES = ("source", "float32", "bfloat16", "float16")
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
# Tokenizer files a checkpoint may carry beside tokenizer.json; copied unchanged when present.
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")
# What an export writes into OUT; --force replaces exactly these and leaves the rest alone.
_OWNED_NAMES = {"config.json", "generation_config.json", "tokenizer.json", loader.INDEX, *TOKENIZER_EXTRAS}


class ExportError(ValueError):
    """An export that cannot be written; the message is one line."""


@dataclass
class Exported:
    path: Path
    dtype: str
    warnings: list[str]  # one line each: what serving the export elsewhere will not reproduce


def source_dtype(directory: Path) -> str:
    """The dtype the checkpoint's weights are stored in (float32 when unknown)."""
    files = loader.weight_files(directory)
    name = checkpoint.DECODER + "embed_tokens.weight"
    found = next((n for n in (name, *checkpoint.aliases(name)) if n in files), None)
    if found is None:
        return "float32"  # loading names what is missing
    try:
        with safe_open(str(files[found]), framework="pt", device="cpu") as handle:
            return _SAFETENSORS_DTYPES.get(handle.get_slice(found).get_dtype(), "float32")
    except (SafetensorError, OSError, ValueError):
        return "float32"  # loading reports the corrupt file


def check_sampler(s: SamplerConfig) -> None:
    """Settings dgls runs but transformers' generation config refuses."""
    if s.confidence_threshold <= 0:
        raise ExportError(f"confidence_threshold must be > 0 to export, got {s.confidence_threshold}")
    if s.stability_threshold < 0:
        raise ExportError(f"stability_threshold must be >= 0 to export, got {s.stability_threshold}")


def serving_warnings(model: DiffusionGemma) -> list[str]:
    """What vLLM 0.33 runs differently from dgls and transformers for this model."""
    out = []
    if uniform_geometry(model.cfg) is None:
        out.append("vLLM 0.33 cannot serve this model: it needs one head geometry for all sliding layers "
                   "and one for all global layers (transformers loads it)")
    # vLLM maps the encoder's and the decoder's layer_scalar onto one buffer per layer.
    differ = [i for i, layer in enumerate(model.layers) if not torch.equal(layer.encoder_scalar, layer.decoder_scalar)]
    if differ:
        out.append(f"layers {', '.join(map(str, differ))} have different encoder and decoder layer scalars; "
                   "vLLM 0.33 keeps one per layer, so its output will differ from dgls and transformers")
    return out


def vision_zeros(cfg: ModelConfig, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(shape, dtype=dtype) for name, shape in checkpoint.vision_placeholder(cfg).items()}


def tokenizer_config(tk: HFTokenizer, cfg: ModelConfig) -> dict:
    """A tokenizer_config.json for a checkpoint that has none: the fast tokenizer over
    tokenizer.json, its special tokens named from the model config's ids."""
    out: dict = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.max_position_embeddings,
        "clean_up_tokenization_spaces": False,  # decode must give back exactly the text dgls decodes
    }
    ids = {"bos_token": cfg.bos_id, "eos_token": cfg.eos_ids[0] if cfg.eos_ids else None, "pad_token": cfg.pad_id}
    for key, tid in ids.items():
        token = tk.id_to_token(tid) if tid is not None else None
        if token is not None:
            out[key] = token
    if tk.token_to_id("<unk>") is not None:
        out["unk_token"] = "<unk>"
    return out


def write_tokenizer(source: Path, out: Path, cfg: ModelConfig) -> None:
    tk = HFTokenizer.from_file(str(source / "tokenizer.json"))
    bos = tk.id_to_token(cfg.bos_id) if cfg.bos_id is not None else None
    if tk.post_processor is None and bos is not None:
        # dgls starts every prompt with BOS; servers tokenize a text prompt with the tokenizer's
        # own special tokens, so the exported tokenizer adds it as dgls does.
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, cfg.bos_id)])
    tk.save(str(out / "tokenizer.json"))
    for name in TOKENIZER_EXTRAS:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    if not (out / "tokenizer_config.json").exists():
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tk, cfg), indent=2) + "\n")


def _prepare_out(out: Path, source: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a directory to export into")
    if out.exists() and out.resolve() == source.resolve():
        raise ExportError(f"{out} is the model's own directory; export into another one")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; pass --force to replace the checkpoint files in it")


def _owned(path: Path) -> bool:
    return path.is_file() and (path.name in _OWNED_NAMES or path.suffix == ".safetensors")


def _move_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    for old in [p for p in out.iterdir() if _owned(p)]:  # stale shards must not mix with the new file
        old.unlink()
    for new in tmp.iterdir():
        new.rename(out / new.name)
    tmp.rmdir()


def export(model: str | Path, out: str | Path, *, dtype: str = "source", force: bool = False) -> Exported:
    """Write the model at `model` (directory or local HF cache id) as a checkpoint in `out`."""
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    source = resolve(model)
    out = Path(out).expanduser()
    _prepare_out(out, source, force)
    chosen = source_dtype(source) if dtype == "source" else dtype
    loaded = loader.load(source, dtype=chosen, device="cpu")
    check_sampler(loaded.sampler)
    net, cfg = loaded.model, loaded.model.cfg

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # a failed export leaves nothing
    try:
        loader.save(net, tmp, loaded.sampler, extra=vision_zeros(cfg, net.dtype))
        config = json.loads((tmp / "config.json").read_text())
        config["dtype"] = chosen
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        gen = json.loads((tmp / "generation_config.json").read_text())
        if cfg.bos_id is not None:
            gen["bos_token_id"] = cfg.bos_id
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        write_tokenizer(source, tmp, cfg)
        _move_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Exported(out, chosen, serving_warnings(net))
