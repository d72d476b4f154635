"""bf16 runs (the CUDA default) agree with fp32 within bf16's precision; CUDA cases skip without a GPU."""

from __future__ import annotations

import pytest
import torch

from dgls.model import loader
from dgls.model.config import SamplerConfig
from dgls.model.sampler import denoise

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])]


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_logits_track_float32(random_checkpoint, device):
    ref, _ = loader.load_network(random_checkpoint, dtype="float32", device="cpu")
    low, _ = loader.load_network(random_checkpoint, dtype="bfloat16", device=device)
    prompt = torch.randint(4, 512, (1, 40), generator=torch.Generator().manual_seed(0))
    canvas = torch.randint(4, 512, (2, 16), generator=torch.Generator().manual_seed(1))
    expected = ref.decode(canvas, ref.encode(prompt))
    got = low.decode(canvas.to(device), low.encode(prompt.to(device))).float().cpu()
    assert got.dtype == torch.float32  # logits always come back in fp32
    # Stated tolerance for bf16 (8-bit mantissa) through 3 layers: logits within 0.25 of fp32
    # on a soft-capped scale of +-30, and bf16's top token is within 0.25 of fp32's best logit
    # (random weights give near-ties, so the exact argmax may differ).
    assert (got - expected).abs().max() < 0.25
    chosen = expected.gather(-1, got.argmax(-1, keepdim=True)).squeeze(-1)
    assert (expected.max(-1).values - chosen).max() < 0.25


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_sampler_runs_to_completion(random_checkpoint, device):
    model, _ = loader.load_network(random_checkpoint, dtype="bfloat16", device=device)
    result = denoise(model, model.encode(torch.tensor([[5, 6, 7]], device=device)), 2,
                     SamplerConfig(max_steps=3), seed=0)
    assert result.tokens.shape == (2, 16) and result.steps == [3, 3]
