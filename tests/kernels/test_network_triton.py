"""The whole network through the Triton kernels (DGLS_KERNELS=triton; the interpreter without
a GPU) against the torch path, same weights: network.py picks the kernels up unedited."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from dgls.model import loader  # noqa: E402

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def count_calls(monkeypatch) -> dict[str, int]:
    from dgls.kernels import attention_triton, moe_triton, rmsnorm_triton

    counts = {"rms_norm": 0, "fused_moe": 0, "canvas_attention": 0}
    for module, name in ((rmsnorm_triton, "rms_norm"), (moe_triton, "fused_moe"),
                         (attention_triton, "canvas_attention")):
        original = getattr(module, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
    return counts


def run(model, device):
    prompt = torch.randint(4, 512, (1, 23), generator=torch.Generator().manual_seed(0)).to(device)
    canvas = torch.randint(4, 512, (2, 16), generator=torch.Generator().manual_seed(1)).to(device)
    cache = model.encode(prompt)
    first = model.decode(canvas, cache)
    second = model.decode(canvas, cache, sc_logits=first)  # the self-conditioning path too
    return cache, first, second


def test_network_through_triton_matches_torch_fp32(random_checkpoint, kernel_backend, monkeypatch, device):
    model, _ = loader.load_network(random_checkpoint, dtype="float32", device=device)
    kernel_backend("torch")
    cache, first, second = run(model, device)
    assert kernel_backend("triton") == "triton"
    counts = count_calls(monkeypatch)
    cache_t, first_t, second_t = run(model, device)
    layers = model.cfg.num_layers
    assert counts["fused_moe"] == 3 * layers  # encode + two decodes, one MoE per layer
    assert counts["canvas_attention"] == 2 * layers  # the decodes' attention
    assert counts["rms_norm"] > 10 * counts["fused_moe"]
    # fp32 through 3 layers, reduction orders differ: logits on a +-30 scale within 1e-4.
    for a, b in zip(cache.keys + cache.values, cache_t.keys + cache_t.values):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first_t, first, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second_t, second, rtol=1e-4, atol=1e-4)


def run_padded(model, device):
    """Two prompts of 23 and 6 tokens left-padded into one batch: test-tiny's window of 16
    cuts the long one in sliding layers and the padding of the short one partly, while its
    global layers read the whole padded prompt. Two canvases per prompt (the cache expanded
    per canvas, as the engine does), and one canvas of each over the [2, P] cache itself."""
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(4, 512, (2, 23), generator=g)
    mask = torch.ones(2, 23, dtype=torch.bool)
    mask[1, :17] = False
    prompt[1, :17] = 0
    cache = model.encode(prompt.to(device), mask.to(device))
    owner = torch.tensor([0, 0, 1, 1], device=device)
    per_canvas = type(cache)([k.index_select(0, owner) for k in cache.keys],
                             [v.index_select(0, owner) for v in cache.values], cache.length, cache.mask[owner])
    canvas = torch.randint(4, 512, (4, 16), generator=g).to(device)
    return model.decode(canvas, per_canvas), model.decode(canvas[::2], cache)


def test_left_padded_batch_through_triton_matches_torch_fp32(random_checkpoint, kernel_backend, monkeypatch, device):
    model, _ = loader.load_network(random_checkpoint, dtype="float32", device=device)
    kernel_backend("torch")
    expected = run_padded(model, device)
    kernel_backend("triton")
    counts = count_calls(monkeypatch)
    got = run_padded(model, device)
    assert counts["canvas_attention"] == 2 * model.cfg.num_layers
    # Same tolerance as above: fp32 logits on the +-30 scale within 1e-4.
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1], got[0][::2], rtol=1e-5, atol=1e-5)  # per-canvas copy = shared rows


def test_prompt_cache_refuses_a_mask_that_is_not_left_padding(random_checkpoint):
    model, _ = loader.load_network(random_checkpoint, dtype="float32")
    prompt = torch.randint(4, 512, (2, 8))
    right_padded = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    with pytest.raises(ValueError, match="^prompt mask must be left padding over the 8 prompt positions$"):
        model.encode(prompt, right_padded)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=GPU)])
def test_network_through_triton_bf16_on_gpu(random_checkpoint, kernel_backend, device):
    # Stated tolerance, as tests/model/test_dtypes.py states it for bf16 against fp32: logits
    # within 0.25 on the soft-capped +-30 scale after 3 layers.
    reference, _ = loader.load_network(random_checkpoint, dtype="float32", device="cpu")
    model, _ = loader.load_network(random_checkpoint, dtype="bfloat16", device=device)
    kernel_backend("torch")
    _, expected, _ = run(reference, "cpu")
    kernel_backend("triton")
    _, got, _ = run(model, device)
    assert (got.float().cpu() - expected).abs().max() < 0.25
