"""Kernel tests: on a machine without CUDA the Triton kernels run in Triton's CPU interpreter
(fp32, small odd shapes); with CUDA they compile for real, and the bf16 GPU tests run too."""

from __future__ import annotations

import os

import torch

# Read when a @triton.jit function is defined, so before any kernel module is imported. Only
# without CUDA: on a GPU machine the interpreter would hide the compiled kernels from the tests.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture
def device() -> str:
    """Where the fp32 kernel tests run: the GPU when there is one, else the interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def kernel_backend(monkeypatch):
    """use("torch" | "triton" | None): set DGLS_KERNELS and re-probe; restored afterwards."""
    from dgls.kernels import dispatch

    def use(name: str | None) -> str:
        if name is None:
            monkeypatch.delenv("DGLS_KERNELS", raising=False)
        else:
            monkeypatch.setenv("DGLS_KERNELS", name)
        dispatch.probe.cache_clear()
        return dispatch.probe()

    yield use
    dispatch.probe.cache_clear()
