"""The backend probe (DGLS_KERNELS) and the dispatch of the exported ops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dgls import kernels
from dgls.kernels import dispatch, ops


def test_invalid_value_is_a_one_line_error(kernel_backend):
    with pytest.raises(dispatch.KernelChoiceError) as err:
        kernel_backend("cuda-please")
    assert str(err.value) == "DGLS_KERNELS='cuda-please' is not a kernel backend; use one of torch, triton"


def test_default_is_triton_only_with_cuda_and_triton(kernel_backend):
    expected = "triton" if torch.cuda.is_available() and dispatch.has_triton() else "torch"
    assert kernel_backend(None) == expected
    assert kernel_backend(" Torch ") == "torch"


def test_probed_once(kernel_backend, monkeypatch):
    kernel_backend("torch")
    monkeypatch.setenv("DGLS_KERNELS", "nonsense")  # not re-read until the cache is cleared
    assert dispatch.probe() == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without CUDA")
def test_triton_without_cuda_needs_the_interpreter(kernel_backend, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(dispatch.KernelChoiceError, match="needs a CUDA device, or TRITON_INTERPRET=1"):
        kernel_backend("triton")


def spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_exported_ops_dispatch_by_backend(kernel_backend, monkeypatch, device):
    pytest.importorskip("triton")
    from dgls.kernels import moe_triton, rmsnorm_triton, sampler_triton

    norm_calls = spy(monkeypatch, rmsnorm_triton, "rms_norm")
    add_calls = spy(monkeypatch, rmsnorm_triton, "rms_norm_add")
    moe_calls = spy(monkeypatch, moe_triton, "fused_moe")
    stat_calls = spy(monkeypatch, sampler_triton, "logit_stats")
    x = torch.randn(5, 16, device=device)
    w = torch.ones(16, device=device)
    gate_up, down = torch.randn(3, 32, 16, device=device), torch.randn(3, 16, 16, device=device)
    weights, ids = torch.full((5, 2), 0.5, device=device), torch.tensor([[0, 1], [1, 2], [0, 2], [2, 1], [1, 0]], device=device)

    def run_all():
        kernels.rms_norm(x, w, 1e-6)
        kernels.rms_norm_add(x, w, 1e-6, x)
        kernels.moe(x, gate_up, down, weights, ids, "gelu")
        kernels.logit_stats(x, 0.5, 30.0)

    kernel_backend("torch")
    run_all()
    assert norm_calls == add_calls == moe_calls == stat_calls == []
    kernel_backend("triton")
    run_all()
    assert len(norm_calls) == len(add_calls) == len(moe_calls) == len(stat_calls) == 1
    # autograd goes to the reference: the kernels have no backward
    kernels.rms_norm(x, w.clone().requires_grad_(), 1e-6).sum().backward()
    # so do dtypes the kernels do not take
    kernels.rms_norm(x.double(), None, 1e-6)
    assert len(norm_calls) == 1


def test_attention_stays_sdpa(kernel_backend):
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 5, 8)
    kernel_backend("torch")
    expected = ops.attention(q, k, k)
    if dispatch.has_triton() and (torch.cuda.is_available() or dispatch.interpreting()):
        kernel_backend("triton")
    torch.testing.assert_close(kernels.attention(q, k, k), expected, rtol=0, atol=0)


# A None entry in sys.modules makes `import triton` fail and find_spec report it missing.
BLOCK_TRITON = """
import sys
sys.modules["triton"] = None
"""


def run_without_triton(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DGLS_KERNELS"} | env
    return subprocess.run([sys.executable, "-c", BLOCK_TRITON + code], capture_output=True, text=True,
                          env=environment, timeout=120)


def test_works_without_triton_installed():
    code = """
import torch
from dgls import kernels
from dgls.kernels import dispatch
assert not dispatch.has_triton() and dispatch.probe() == "torch"
out = kernels.rms_norm(torch.ones(2, 4), None, 1e-6)
assert sys.modules["triton"] is None  # never imported for real
print("ok")
"""
    done = run_without_triton(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_asking_for_triton_without_it_says_so():
    done = run_without_triton("from dgls.kernels import dispatch\ndispatch.probe()", DGLS_KERNELS="triton")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].endswith(
        "KernelChoiceError: DGLS_KERNELS=triton but triton is not installed (pip install triton)")


def test_importing_the_kernels_does_not_import_triton():
    code = "import sys\nimport dgls.kernels\nprint('triton' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
