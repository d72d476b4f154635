"""Every launch the launchers make compiles for sm_90 with Triton's compiler and ptxas, GPU or
not: the interpreter alone would let through programs the compiler rejects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")


def test_launches_compile_for_h100():
    pytest.importorskip("triton.backends.nvidia", reason="triton without its CUDA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("compile_sm90.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = done.stdout.splitlines()
    kernels = {line.split("(")[0] for line in compiled}
    assert kernels == {"_gate_up_kernel", "_down_kernel", "_sum_topk_kernel", "_rms_norm_kernel", "_logit_stats_kernel",
                       "_canvas_attention_kernel"}
    assert len(compiled) >= 20
